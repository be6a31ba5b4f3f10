"""The post-processing unit (SPEC §3): per token and column, the K-group partial sum ``P`` and the
saturating MX accumulator with its sticky overflow flag; raw mode emits ``P`` and ``S``.

Tokens arrive from the array with their column sums over one K-tile and a tag naming the token
``m`` and the tile's place in its K-group and in the layer. Two token memories of ``max_tokens``
entries keep, per token, ``P`` per column (``FormatConfig.group_sum_bits()``) and ``S`` (the sum
column), and the accumulator per column (``acc_bits``) with the overflow flags.

At a token of the last K-tile of a group, MicroScopiQ mode computes
``acc ← sat(acc + (P << d[c]))`` (``golden.mx_accumulate``); the shifts ``d = E - E_min`` come
per tile from the host (double-buffered: loaded for the next tile, active from its first token).
At the last K-tile of the layer the token's ``(acc, overflow)`` row is emitted. Raw mode emits
``(P, S)`` at the last K-tile of every group (``golden.uniform_raw``).

The work is a seven-stage pipeline (:class:`PPU`); each memory (LUT RAM) is read into a register
(:func:`read_registered`), the accumulator's also taking the memory's write of the same cycle, so
a token sees every earlier token's update of its entries as long as the same ``m`` does not arrive
in two consecutive cycles (the array's schedule brings a token back only after a whole tile, at
least ``2R + 6`` cycles).
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from .array import act_sum_bits, result_layout
from .bits import at_least, replicas
from .layouts import SHIFT_BITS, StreamLayouts, axis_signature

__all__ = ["PPU", "token_tag_layout", "read_registered", "read_ahead", "narrow_shift", "fit_mask",
           "shift_beyond", "saturate"]

#: Low bits of the shift ``d``, applied after the rest (:func:`narrow_shift`'s second step).
FINE_BITS = 3


def token_tag_layout(cfg: AccelConfig) -> data.StructLayout:
    """The tag a token carries through the array to the PPU.

    ``m``: token index in the pass; ``group_first``/``group_last``: the tile is the first/last
    K-tile of its K-group; ``k_first``/``k_last``: first/last K-tile of the layer; ``last``: the
    pass's final token (its result beat carries ``tlast``).
    """
    return data.StructLayout({
        "m": range(cfg.max_tokens), "group_first": 1, "group_last": 1,
        "k_first": 1, "k_last": 1, "last": 1,
    })


def read_registered(m: Module, en, memory: Memory, addr, clear, name: str):
    """A register loaded (when ``en``) with ``memory[addr]`` (LUT RAM, read combinationally), or 0
    when ``clear``: a synchronous read port that does not see the write of the same cycle."""
    port = memory.read_port(domain="comb")
    m.d.comb += port.addr.eq(addr)
    entry = Signal(memory.shape, name=name)
    with m.If(en):
        m.d.sync += entry.eq(Mux(clear, 0, Value.cast(port.data)))
    return entry


def read_ahead(m: Module, en, memory: Memory, write, writing, next_writer, early_addr, clear, name: str):
    """A register loaded (when ``en``) with the entry a token read at ``early_addr`` one enabled
    cycle before (it moves one stage per enabled cycle), as updated by every write up to and
    including this cycle's, or 0 when ``clear``.

    The memory is read a cycle early (at ``early_addr``) into a register, so the LUT RAM's read
    tree ends in a flip-flop; the write of that cycle (its data kept in a register) and the write
    of this one are forwarded in front of the result register. ``writing`` is the writer's valid
    without ``en`` (``write.en`` is ``en & writing``); ``next_writer = (valid, addr)`` is the token
    that writes in the next enabled cycle. Both forwarding selects are registers, compared a cycle
    early: each drives a multiplexer per memory bit, and a select computed in the same cycle
    lands anywhere on the die.
    """
    early = read_registered(m, en, memory, early_addr, 0, f"{name}_early")
    next_valid, next_addr = next_writer
    before = Signal(memory.shape, name=f"{name}_write")           # the write of the read's cycle
    from_before = Signal(name=f"{name}_from_write")
    from_now = Signal(name=f"{name}_from_writer")
    with m.If(en):
        m.d.sync += [before.eq(write.data), from_before.eq(writing & (write.addr == early_addr)),
                     from_now.eq(next_valid & (next_addr == early_addr))]
    fresh = Mux(from_now, Value.cast(write.data), Mux(from_before, Value.cast(before), Value.cast(early)))
    entry = Signal(memory.shape, name=name)
    with m.If(en):
        m.d.sync += entry.eq(Mux(clear, 0, fresh))
    return entry


def narrow_shift(m: Module, partial, small, wide: int):
    """``partial << small`` in its low ``wide`` bits (signed), ``small < wide``: by ``small`` but its
    low :data:`FINE_BITS`, then by those. Only ``partial``'s low ``wide`` bits (sign-extended if
    it is narrower) reach the result; whether the bits above them are copies of its sign is
    :func:`shift_beyond`'s question."""
    low = Signal(wide, name="low")
    coarse = Signal(wide, name="coarse")
    m.d.comb += [low.eq(partial.as_signed()),
                 coarse.eq(low << Cat(C(0, FINE_BITS), small[FINE_BITS:]))]
    shifted = Signal(signed(wide), name="shifted")
    m.d.comb += shifted.eq(coarse << small[:FINE_BITS])
    return shifted


def fit_mask(m: Module, small, huge, partial_bits: int, wide: int):
    """The bits of a ``partial_bits``-bit ``P`` (sign-extended to ``wide`` if narrower) that must
    all be copies of its sign for ``P << d`` to fit ``wide`` signed bits, for ``d`` given as
    ``huge = d ≥ wide`` and ``small = d`` otherwise: bit ``j`` is set where ``j ≥ wide - 1 - d``
    (every bit when ``huge``). A function of the shift alone, so the PPU forms it a stage before
    ``P`` is known."""
    mask = Signal(max(partial_bits, wide), name="fit_mask")
    m.d.comb += mask.eq(Cat(*(huge | at_least(small, max(wide - 1 - j, 0)) for j in range(len(mask)))))
    return mask


def shift_beyond(m: Module, partial, mask, huge):
    """Whether a nonzero ``partial << d`` cannot be added exactly into ``wide = acc_bits + 1``
    signed bits, with ``mask`` = :func:`fit_mask` of ``d``: a bit under the mask differs from the
    sign, or ``d ≥ wide`` and ``P`` is -1 (every bit a copy of a sign bit 1). Instead of a 300-bit
    shifter, such a value's magnitude is at least ``2^acc_bits``, more than any accumulator can
    cancel, so the sum saturates in its direction. One AND tree of ``len(mask)`` bits: written as
    a chain of runs per shift, ABC kept it a chain (eight LUT levels for 33 bits)."""
    extended = Signal(len(mask), name="extended")
    m.d.comb += extended.eq(partial.as_signed())
    sign = extended[-1]
    fits = (~(extended ^ sign.replicate(len(mask))) | ~mask).all() & ~(huge & sign)
    return ~fits


def saturate(m: Module, total, beyond, negative, acc_bits: int):
    """``total`` (an accumulator plus a shifted ``P``, formed ``acc_bits + 2`` bits wide) clamped to
    signed ``acc_bits`` (or to the bound on the side of ``negative`` when ``beyond``, see
    :func:`shift_beyond`), and whether it clamped. ``total`` is in range when its top three bits agree.
    """
    top_bits = total[acc_bits - 1:]
    in_range = ~top_bits.any() | top_bits.all()
    top, bottom = (1 << (acc_bits - 1)) - 1, -(1 << (acc_bits - 1))
    result = Signal(signed(acc_bits), name="saturated")
    clamped = Signal(name="clamped")
    towards_bottom = Mux(beyond, negative, total[-1])
    m.d.comb += [
        clamped.eq(beyond | ~in_range),
        result.eq(Mux(clamped, Mux(towards_bottom, bottom, top), total[:acc_bits])),
    ]
    return result, clamped


class PPU(wiring.Component):
    """Post-processing unit: K-group accumulation, MX shift-accumulate with saturation, raw mode.

    Latency :attr:`latency` (7) enabled cycles from ``inp`` to
    ``result``, throughput one token per cycle, any token order in which the same ``m`` is not
    in two consecutive enabled cycles:

    0. input register: the token; the tile's shifts split into ``small``/``huge``;
    1. the ``P``/``S`` entry is read at ``tag.m`` (0 at ``group_first``);
    2. ``P ← P + sums``, ``S`` likewise, written back; the bits of ``P`` that ``d`` needs to be
       sign copies (:func:`fit_mask`);
    3. ``P << d`` in ``acc_bits + 1`` bits (:func:`narrow_shift`) and whether it fits them
       (:func:`shift_beyond`); the accumulator entry is read at the token's ``m`` into a
       register (:func:`read_ahead`);
    4. the accumulator entry completed by the writes since its read (0 at ``k_first``);
    5. ``acc + (P << d)`` at a group's last K-tile (``acc + 0`` else), ``acc_bits + 2`` bits wide;
    6. its saturation (:func:`saturate`) and the sticky flags, written back; the result beat is
       registered.

    A token in stage 4 sees the accumulator write of the token two stages ahead (forwarded by
    :func:`read_ahead`) and every older write, so the same ``m`` must not follow itself in the
    next cycle (the token one stage ahead has not written yet). Stage 1 sees every ``P`` write
    but the one of the token one stage ahead, made in the same cycle: by the same rule that token
    has another ``m``, so the ``P`` read needs no forwarding multiplexer.
    Everything (stages, reads, writes) advances only when ``en`` is 1. ``result`` is
    ``always_ready``: the PPU cannot stall on its output, a beat stays in the result register only
    until the next enabled edge, so a controller whose consumer can refuse a beat holds ``en`` low
    while it does (``en = ~result.valid | ready``). The accelerator's core ties ``en`` to 1 and
    keeps room for every beat in its result FIFO.

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    en : In(1)
        Global clock enable.
    raw : In(1)
        Raw (uniform) mode.
    inp : In(stream.Signature(result_layout(cfg, token_tag_layout(cfg)), always_ready=True))
        The array's ``out``: ``first`` (first token of a tile: the loaded shifts become active),
        ``tag`` (:func:`token_tag_layout`), ``sums`` (C signed ``column_sum_bits``), ``act_sum``.
    shift_load : In(StructLayout)
        ``valid`` and ``d`` (C × 8 bits): the next tile's shifts.
    result : Out(axis_signature(body_width, always_ready=True))
        Result beats, :attr:`~.layouts.StreamLayouts.msq_result` or
        :attr:`~.layouts.StreamLayouts.raw_result` (the ``body`` of
        :attr:`~.layouts.StreamLayouts.result`; the core adds the pass's fault).
    result_valid_copies : Out(C)
        ``result.valid`` again, one register per column (:data:`~.bits.REPLICA`): each drives the
        write enable of one lane of the core's result FIFO, beside it.
    """

    #: Enabled cycles from a token at ``inp`` to its result beat (the seven stages).
    latency = 7

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.format = sf = StreamLayouts(cfg)
        super().__init__({
            "en": In(1),
            "raw": In(1),
            "inp": In(stream.Signature(result_layout(cfg, token_tag_layout(cfg)), always_ready=True)),
            "shift_load": In(data.StructLayout({
                "valid": 1, "d": data.ArrayLayout(unsigned(SHIFT_BITS), cfg.cols)})),
            "result": Out(axis_signature(sf.result.members["body"].size, always_ready=True)),
            "result_valid_copies": Out(cfg.cols),
        })

    def _layouts(self) -> dict[str, data.StructLayout]:
        """Memory entries and the stage registers."""
        cfg, sf = self.cfg, self.format
        cols, wide = cfg.cols, cfg.acc_bits + 1
        partial = {"p": data.ArrayLayout(signed(sf.partial_bits), cols), "s": signed(sf.sum_bits)}
        token = {"valid": 1, "tag": token_tag_layout(cfg)}
        return {
            "partial": data.StructLayout(partial),
            "acc": data.StructLayout({"acc": signed(cfg.acc_bits), "ovf": 1}),     # (per column)
            "sum": data.StructLayout({**token,
                                      "sums": data.ArrayLayout(signed(cfg.column_sum_bits), cols),
                                      "act_sum": signed(act_sum_bits(cfg)),
                                      "small": data.ArrayLayout(range(wide), cols), "huge": cols}),
            "shift": data.StructLayout({**token, **partial,
                                        "small": data.ArrayLayout(range(wide), cols), "huge": cols,
                                        "mask": data.ArrayLayout(unsigned(max(sf.partial_bits, wide)), cols)}),
            "fit": data.StructLayout({**token, **partial,
                                      "shifted": data.ArrayLayout(signed(wide), cols), "beyond": cols}),
            "add": data.StructLayout({**token, **partial,
                                      "shifted": data.ArrayLayout(signed(wide), cols),
                                      "beyond": cols}),
            "saturate": data.StructLayout({**token, **partial,
                                           "total": data.ArrayLayout(signed(cfg.acc_bits + 2), cols),
                                           "beyond": cols, "negative": cols, "ovf": unsigned(cols)}),
        }

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        layouts = self._layouts()
        # LUT RAM: Yosys would fold the forwarding registers into block-RAM read ports, whose
        # clock-to-output delay leaves too little of the cycle for the next stage's logic. One
        # memory per column (and one for ``S``), each addressed by its own copies of the stages'
        # token registers (:meth:`_per_column`): one address register reaching every LUT-RAM cell
        # of a C-column entry was a net across the die (the read of stage 3, a critical path).
        def memory(name, shape):
            m.submodules[name] = mem = Memory(shape=shape, depth=cfg.max_tokens, init=[],
                                              attrs={"ram_style": "distributed"})
            return mem
        partials = [memory(f"partials_{c}", layouts["partial"].members["p"].elem_shape)
                    for c in range(cfg.cols)] + [memory("partials_s", layouts["partial"].members["s"])]
        accs = [memory(f"accumulators_{c}", layouts["acc"]) for c in range(cfg.cols)]
        a_wr = [acc.write_port() for acc in accs]
        s5 = Signal(layouts["saturate"])
        s1, s1_cols = self._stage_input(m, layouts)
        s3, s3_cols = self._stage_partial(m, layouts, partials, s1, s1_cols)
        s3b = self._stage_shift(m, layouts, s3)
        s5_cols = self._stage_accumulate(m, layouts, accs, a_wr, s3, s3_cols, s3b, s5)
        self._stage_saturate(m, layouts, a_wr, s5, s5_cols)
        return m

    def _per_column(self, m, name, **fields):
        """Per column, copies of some of a stage's token fields (``valid``, ``addr`` for ``tag.m``,
        a ``clear`` flag), loaded at enabled edges from the values the stage loads: each copy
        drives one column's memory ports (:data:`~.bits.REPLICA`, placed next to them)."""
        per_field = {key: replicas(m, self.en, value, self.cfg.cols, f"{name}_{key}_")
                     for key, value in fields.items()}
        return [{key: copies[c] for key, copies in per_field.items()} for c in range(self.cfg.cols)]

    def _advance(self, m, stage, **fields):
        """Load the stage register ``stage``'s ``fields`` at enabled edges."""
        with m.If(self.en):
            m.d.sync += [getattr(stage, name).eq(value) for name, value in fields.items()]

    def _stage_input(self, m, layouts):
        """Stage 0: the input register and the tile's shifts (split into ``small``/``huge``).

        The token is registered here, next to the memories, before anything reads them: the
        address then comes from a local register, not from the array's last stage across the die."""
        cols, en, inp, wide = self.cfg.cols, self.en, self.inp.payload, self.cfg.acc_bits + 1
        shadow = Signal(data.ArrayLayout(unsigned(SHIFT_BITS), cols))
        shifts = Signal(data.ArrayLayout(unsigned(SHIFT_BITS), cols))
        with m.If(en & self.shift_load.valid):
            m.d.sync += shadow.eq(self.shift_load.d)
        with m.If(en & self.inp.valid & inp.first):
            m.d.sync += shifts.eq(shadow)
        # The tile's first token already uses the shifts it makes active.
        current = Signal(data.ArrayLayout(unsigned(SHIFT_BITS), cols))
        m.d.comb += current.eq(Mux(inp.first, shadow.as_value(), shifts.as_value()))
        s1 = Signal(layouts["sum"])
        self._advance(m, s1, valid=self.inp.valid, tag=inp.tag, sums=inp.sums, act_sum=inp.act_sum,
                      small=Cat(*(current[c][:len(s1.small[c])] for c in range(cols))),
                      huge=Cat(*(current[c] >= wide for c in range(cols))))
        return s1, self._per_column(m, "s1", addr=inp.tag.m, clear=inp.tag.group_first)

    def _stage_partial(self, m, layouts, partials, s1, s1_cols):
        """Stage 1, the P/S read, and stage 2, ``P ← P + sums`` (``S`` likewise) written back.
        ``partials``: the memories of the columns' ``P`` and of ``S`` (at column 0's ports)."""
        cols, en = self.cfg.cols, self.en
        s2 = Signal(layouts["sum"])
        s2_cols = self._per_column(m, "s2", valid=s1.valid, addr=s1.tag.m)
        with m.If(en):
            m.d.sync += s2.eq(s1)
        new = Signal(layouts["partial"])
        # Per memory: its entry of ``new``, the sum it adds, its readers' and writers' copies (``S``
        # at column 0's).
        entries = [new.p[c] for c in range(cols)] + [new.s]
        addends = [s2.sums[c] for c in range(cols)] + [s2.act_sum]
        for c, (memory, entry, addend, reader, writer) in enumerate(
                zip(partials, entries, addends, s1_cols + s1_cols[:1], s2_cols + s2_cols[:1])):
            old = read_registered(m, en, memory, reader["addr"], reader["clear"], f"old_partial_{c}")
            write = memory.write_port()
            m.d.comb += [entry.eq(old + addend),
                         write.addr.eq(writer["addr"]), write.data.eq(entry), write.en.eq(en & writer["valid"])]
        s3 = Signal(layouts["shift"])
        mask = [fit_mask(m, s2.small[c], s2.huge[c], len(new.p[c]), self.cfg.acc_bits + 1) for c in range(cols)]
        self._advance(m, s3, valid=s2.valid, tag=s2.tag, p=new.p, s=new.s, huge=s2.huge, small=s2.small,
                      mask=Cat(*mask))
        return s3, self._per_column(m, "s3", addr=s2.tag.m)

    def _stage_shift(self, m, layouts, s3):
        """Stage 3: ``P << d`` in ``acc_bits + 1`` bits (:func:`narrow_shift`) and whether it fits
        them (:func:`shift_beyond`)."""
        wide = self.cfg.acc_bits + 1
        s3b = Signal(layouts["fit"])
        cols = range(self.cfg.cols)
        self._advance(m, s3b, valid=s3.valid, tag=s3.tag, p=s3.p, s=s3.s,
                      shifted=Cat(*(narrow_shift(m, s3.p[c], s3.small[c], wide) for c in cols)),
                      beyond=Cat(*(shift_beyond(m, s3.p[c], s3.mask[c], s3.huge[c]) for c in cols)))
        return s3b

    def _stage_accumulate(self, m, layouts, accs, a_wr, s3, s3_cols, s3b, s5):
        """Stage 4, the accumulator entry completed, and stage 5, the wide accumulate into
        ``s5``. Outside a group's last K-tile the accumulator adds 0 (and so cannot saturate).
        Returns stage 5's per-column token copies (the accumulators' writers)."""
        cols = self.cfg.cols
        s4 = Signal(layouts["add"])
        s3b_cols = self._per_column(m, "s3b", clear=s3.tag.k_first)
        s5_cols = self._per_column(m, "s5", valid=s4.valid, addr=s4.tag.m)
        stored = []
        for c, (memory, write) in enumerate(zip(accs, a_wr)):
            stored.append(read_ahead(m, self.en, memory, write, s5_cols[c]["valid"], (s4.valid, s4.tag.m),
                                     s3_cols[c]["addr"], s3b_cols[c]["clear"], f"old_acc_{c}"))
        self._advance(m, s4, valid=s3b.valid, tag=s3b.tag, p=s3b.p, s=s3b.s, shifted=s3b.shifted,
                      beyond=Cat(*(s3b.tag.group_last & s3b.beyond[c] for c in range(cols))))
        addend = [Mux(s4.tag.group_last, s4.shifted[c], 0) for c in range(cols)]
        self._advance(m, s5, valid=s4.valid, tag=s4.tag, p=s4.p, s=s4.s, beyond=s4.beyond,
                      ovf=Cat(*(entry.ovf for entry in stored)),
                      total=Cat(*(entry.acc + addend[c] for c, entry in enumerate(stored))),
                      negative=Cat(*(s4.p[c] < 0 for c in range(cols))))
        return s5_cols

    def _stage_saturate(self, m, layouts, a_wr, s5, s5_cols):
        """Stage 6: saturation and the sticky flags, written back (each column at its copy of the
        token's index); the result register."""
        cols, en = self.cfg.cols, self.en
        tag = s5.tag
        accs = [Signal(layouts["acc"], name=f"acc_{c}") for c in range(cols)]
        for c, (acc, write, writer) in enumerate(zip(accs, a_wr, s5_cols)):
            summed, clamped = saturate(m, s5.total[c], s5.beyond[c], s5.negative[c], self.cfg.acc_bits)
            m.d.comb += [acc.acc.eq(summed), acc.ovf.eq(s5.ovf[c] | clamped),
                         write.addr.eq(writer["addr"]), write.data.eq(acc), write.en.eq(en & writer["valid"])]
        raw_word = Cat(*(s5.p[c] for c in range(cols)), s5.s)
        msq_word = Cat(*(acc.acc for acc in accs), *(acc.ovf for acc in accs))
        emit = s5.valid & Mux(self.raw, tag.group_last, tag.k_last)
        m.d.comb += self.result_valid_copies.eq(
            Cat(*replicas(m, en, emit, cols, "result_valid_copy", original=self.result.valid)))
        with m.If(en):
            m.d.sync += self.result.valid.eq(emit)
            with m.If(emit):
                m.d.sync += [self.result.payload.data.eq(Mux(self.raw, raw_word, msq_word)),
                             self.result.payload.last.eq(tag.last)]
