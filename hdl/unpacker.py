"""The packed weight stream's unpacker: ``W``-bit bus beats in, the pass header, the exponents and
one PE row's codes and micro-block records per cycle out (``docs/format.md``, "Streaming format").

The stream is a bit stream without alignment inside a pass (:mod:`~microscopiq.host.packed_stream`
writes it). The unpacker keeps the bits it has taken in a buffer of :attr:`Unpacker.capacity` bits,
bit 0 the oldest, and parses one **item** per cycle off its front:

* the 64-bit pass header (:data:`~.layouts.PACKED_HEADER`), checked field by field;
* (MicroScopiQ mode) at every N-tile's first K-tile the row minima ``E_min``, ``C × 8`` bits, and at
  every K-group's last K-tile its exponents ``E``, ``C × 8`` bits;
* (MicroScopiQ mode) after the header the **prologue**: the first tiles' maps;
* a PE row: its ``C`` codes and the records of its present micro-blocks. A MicroScopiQ row may open
  with map fields of tiles ahead (:class:`MapPlacement`): row 0 of tile ``t`` with tile
  ``t + ahead``'s presence bits, row ``2 mod R`` with a later tile's counts. A tile's map therefore
  reaches the map queue's registers before the item in front of the tile's first row is parsed,
  so every item's length is a function of registers when the item before it is parsed and a tile
  is ``R`` items, ``R`` cycles, however its outliers fall.

An item is parsed once the buffer holds all its bits and its output register is free; a beat is taken
while the buffer has room for it. A pass starts at a beat boundary and ends in the beat that carries
``tlast`` (the bits after its last field up to that beat's end are zero padding); after a ``tlast``
beat no beat is taken until the pass has been parsed.

Malformed streams: a header whose fields the instance cannot take or that ``tlast`` cuts short
goes out as a header beat carrying its :class:`~.layouts.Fault` code; a ``tlast`` before the pass's
last field (truncated) or a pass whose last field is not in its ``tlast`` beat (overrun, nonzero
padding) raise ``fault`` for one cycle. The unpacker then drops beats up to and including the next
``tlast`` and waits for a header: the codes of a pass are never misread as the next pass's header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from .bits import REPLICA, below, field_at, mirrored, mux_tree, or_tree
from .exp_decoder import ExpDecoder
from .layouts import EXP_BITS, PACKED_HEADER, STREAM_VERSION, Fault, Mode, StreamLayouts, axis_signature
from .layouts import group_last as layouts_group_last
from .meta_decoder import MetaDecoder, RecordGeometry

__all__ = ["Unpacker", "UnpackerSizes", "MapPlacement"]


class _Next(enum.Enum):
    """The candidate lengths of the item after the front one: the next PE row's (``body + prefix``
    of the map queue, or ``C·b`` without ReCoN), an exponent vector, a uniform pass's first row of
    codes, the prologue."""
    ROW = 0
    EXPS = 1
    CODES = 2
    PROLOGUE = 3


def _one_hot(flags: dict, values: dict):
    """``values[k]`` for the one ``flags[k]`` that is set (0 if none), as an OR of ANDs."""
    return or_tree([Mux(flags[kind], value, 0) for kind, value in values.items()])


class _Item(enum.Enum, shape=3):
    HEADER = 0
    EMIN = 1
    EXPS = 2
    ROW = 3
    END = 4
    DRAIN = 5
    PROLOGUE = 6  # a MicroScopiQ pass's first tiles' maps (MapPlacement)


def _shifted(value, amount, width: int, *, left: bool):
    """``value`` shifted by ``amount`` bits (left or right), ``width`` bits, as a tree of 2:1
    multiplexers: Yosys's ``share`` pass does not fold such trees together as it folds shift cells
    used in exclusive cases, which would put the selection between them in front of the shift."""
    value = Value.cast(value)
    out = Cat(value, Const(0, max(0, width - len(value))))[:max(width, len(value))]
    for i, bit in enumerate(Value.cast(amount)):
        step = 1 << i
        if step >= len(out):
            out = Mux(bit, 0, out)
            continue
        moved = Cat(Const(0, step), out[:-step]) if left else Cat(out[step:], Const(0, step))
        out = Mux(bit, moved, out)
    return out[:width]


def _times(value, factor: int):
    """``value · factor`` as a sum of shifted constants (no multiplier cell: a DSP block would sit
    in the length paths); a power of two is a plain shift (wires, no adder in the length paths)."""
    value = Value.cast(value)
    if factor and factor & (factor - 1) == 0:
        return value << (factor.bit_length() - 1)
    return sum((Mux(value[i], factor << i, 0) for i in range(len(value))), Const(0, 1))


#: Input bits up to which a row's body length is one table of its map fields (LUTs of them, at
#: most two levels), not a sum of its blocks' record lengths.
_TABLE_BITS = 8


def _lookup(values, index):
    """``values[index]``, a table of constants: for an ``index`` of a few bits, LUTs where a sum of
    its fields would be adders (Yosys maps each to a carry chain, which ABC cannot merge with the
    LUTs around it)."""
    width = max(max(values).bit_length(), 1)
    return mux_tree([Const(value, width) for value in values], index)


def _widened(value, width: int):
    """``value`` zero-extended or cut to ``width`` bits."""
    return Cat(Value.cast(value), Const(0, width))[:width]


def _add_all(m, values, width: int):
    """``Σ values`` modulo ``2**width`` with one carry chain: carry-save layers (a LUT level each)
    take the operands down to two, so that a sum of several is not a chain of adders one behind
    the other."""
    values = [_widened(value, width) for value in values] or [Const(0, width)]
    while len(values) > 2:
        a, b, c, *values = values
        total, carries = _full_add(m, a, b, c)
        values += [total, Cat(Const(0, 1), carries)[:width]]
    return (values[0] + values[1])[:width] if len(values) == 2 else values[0]


def _difference(m, constant: int, terms, width: int):
    """``constant - Σ terms`` modulo ``2**width`` with one carry chain (:func:`_add_all`): ``-t``
    is ``~t + 1``."""
    return _add_all(m, [Const((constant + len(terms)) % (1 << width), width)]
                    + [~_widened(term, width) for term in terms], width)


def _full_add(m, a, b, c):
    """Bitwise sum and carry of ``a + b + c`` (a carry-save layer), as logic: Yosys maps an adder
    cell to a carry chain, which ABC cannot merge with the LUTs around it. Both are signals: an
    expression used by several others is written out again in each, so layers of them as
    expressions grow the Verilog exponentially."""
    width = max(len(Value.cast(term)) for term in (a, b, c))
    total, carry = Signal(width, name="csa_sum"), Signal(width, name="csa_carry")
    m.d.comb += [total.eq(a ^ b ^ c), carry.eq((a & b) | (a & c) | (b & c))]
    return total, carry


def _popcount(m, bits) -> Value:
    """The number of set ``bits``, by layers of full and half adders as logic (a Wallace tree, no
    adder cell): a tree of adder cells is a chain of carry chains, one routed hop each."""
    columns = [[Value.cast(bit) for bit in bits]]   # per weight 2**i, the bits still to add
    while any(len(column) > 1 for column in columns):
        reduced = [[] for _ in range(len(columns) + 1)]
        for weight, column in enumerate(columns):
            for at in range(0, len(column), 3):
                group = column[at:at + 3]
                if len(group) == 1:
                    reduced[weight] += group
                    continue
                total, carry = _full_add(m, *group, Const(0, 1)) if len(group) == 2 else _full_add(m, *group)
                reduced[weight].append(total)
                reduced[weight + 1].append(carry)
        columns = reduced if reduced[-1] else reduced[:-1]
    return Cat(*(column[0] for column in columns)) if columns[0] else Const(0, 1)


@dataclass(frozen=True)
class MapPlacement:
    """Where a MicroScopiQ pass carries each tile's map, for ``R`` = ``rows`` (docs/format.md,
    "Streaming format"). Rows are counted across the pass (row ``g`` is row ``g mod R`` of tile
    ``g div R``); the map of tile ``σ`` travels ahead of it:

    * its presence bits open row 0 of tile ``σ − ahead`` (the prologue for ``σ < ahead``);
    * its counts open row ``(σ − ahead)·R + 2`` (:meth:`counts_row`), after that row's own presence
      bits where it is a row 0 (``R <= 2``); the prologue, every count field written, for
      ``σ < prologue_counts``.

    Why two rows and ``ahead·R >= 4``: the unpacker registers the presence bits as their row is
    parsed (row ``g``), so the counts' length, ``log2(U/2)`` times their number, is a register
    from row ``g + 1`` on, when row ``g + 2``'s length is set; the counts are registered as row
    ``g + 2`` is parsed, so tile ``σ``'s first row, whose length they fix, may be ``g + 4`` at the
    earliest. Every item's length is then a function of registers when the item before it is parsed.
    """

    rows: int

    @property
    def ahead(self) -> int:
        """Tiles between a tile and the one whose presence bits its row 0 carries: ``ceil(4/R)``."""
        return -(-4 // self.rows)

    @property
    def prologue_counts(self) -> int:
        """Tiles whose counts are in the prologue: those whose carrier row would precede the pass."""
        return self.ahead - 2 // self.rows

    @property
    def counts_slot(self) -> int:
        """The row of a tile that opens with (another tile's) counts: ``2 mod R``."""
        return 2 % self.rows

    def counts_row(self, tile):
        """The pass row (across tiles) that carries ``tile``'s counts (``tile >= prologue_counts``)."""
        return (tile - self.ahead) * self.rows + 2


@dataclass(frozen=True)
class _RowLength:
    """The next PE row's length as registers (the map queue's entry 1's ``body + prefix``):
    ``length`` for ``need``, and in ``changes`` per bits ``added`` with the row (0, or a beat's
    ``W``) ``added - length`` modulo ``2**spare_bits``, what ``spare`` changes by as the row before
    is parsed: so that ``spare``'s next value is one adder of two registers."""

    length: Signal
    changes: dict

    @classmethod
    def load(cls, m, enable, terms, sizes: UnpackerSizes, init: int) -> _RowLength:
        """Registers loaded with the length ``Σ terms`` (from ``init``) under ``enable``."""
        bits = sizes.spare_bits
        length = Signal(range(sizes.item_bits + 1), init=init, name="row_length")
        changes = {added: Signal(bits, init=(added - init) % (1 << bits), name=f"row_change_{added}")
                   for added in (0, sizes.bus_bits)}
        with m.If(enable):
            m.d.sync += [length.eq(_add_all(m, terms, len(length)))] + [
                change.eq(_difference(m, added, terms, bits)) for added, change in changes.items()]
        return cls(length, changes)


@dataclass(frozen=True)
class UnpackerSizes:
    """The :class:`Unpacker`'s item and buffer sizes for ``cfg`` and a ``bus_bits`` bus (the host's
    cycle model reads them too)."""

    cfg: AccelConfig
    bus_bits: int

    @property
    def record(self) -> RecordGeometry | None:
        return RecordGeometry(self.cfg.fmt) if self.cfg.has_recon else None

    @property
    def blocks(self) -> int:
        """Micro-blocks per PE row, ``B = C/U`` (0 without ReCoN)."""
        return self.cfg.cols // self.cfg.fmt.ublock if self.record else 0

    @property
    def map_entries(self) -> int:
        """Presence bits of a tile map, ``R·B``."""
        return self.cfg.rows * self.blocks

    @property
    def record_bits(self) -> int:
        """Longest record of one micro-block: ``X`` and ``U/2`` pairs."""
        return self.cfg.fmt.xbits + self.record.max_pairs * self.record.pair_bits if self.record else 0

    @property
    def row_bits(self) -> int:
        """Longest PE row: ``C`` codes and every micro-block's longest record."""
        return self.cfg.cols * self.cfg.fmt.wbits + self.blocks * self.record_bits

    @property
    def placement(self) -> MapPlacement:
        return MapPlacement(self.cfg.rows)

    @property
    def count_bits(self) -> int:
        """Bits of one count field, ``log2(U/2)`` (0 without ReCoN)."""
        return self.record.count_bits if self.record else 0

    @property
    def prologue_bits(self) -> int:
        """The prologue: ``ahead`` tiles' presence bits, every count field of ``prologue_counts``."""
        place = self.placement
        return self.map_entries * (place.ahead + place.prologue_counts * self.count_bits)

    @property
    def prefix_bits(self) -> int:
        """Longest run of map fields in front of a row's codes: presence bits (row 0), counts
        (row ``2 mod R``), both when that is row 0."""
        presence, counts = self.map_entries, self.map_entries * self.count_bits
        return presence + counts if self.placement.counts_slot == 0 else max(presence, counts)

    @property
    def item_bits(self) -> int:
        """Longest item: the header, an exponent vector, the prologue or a row with its map fields."""
        return max(PACKED_HEADER.size, self.cfg.cols * EXP_BITS, self.prologue_bits, self.prefix_bits + self.row_bits)

    @property
    def capacity(self) -> int:
        """Bits of the buffer: the longest item and one beat, so a beat is taken whenever the next
        item is still incomplete."""
        return self.item_bits + self.bus_bits

    @property
    def granule(self) -> int:
        """The largest power of two that divides the bus width and every length an item is made
        of: so every value of ``fill``, ``need``, ``spare`` and a row's code offset is a multiple of
        it (2 on the default build, whose fields are all an even number of bits), and the buffer's
        shifters leave out the select bits below it, always zero (Yosys cannot see that)."""
        cfg = self.cfg
        code_bits = cfg.cols * cfg.fmt.wbits
        lengths = [self.bus_bits, PACKED_HEADER.size, cfg.cols * EXP_BITS, code_bits, self.prologue_bits]
        if cfg.multi_precision:
            lengths.append(code_bits // 2)      # a narrow (b/2-bit) row's codes
        if self.record:
            lengths += [self.map_entries, self.count_bits, cfg.fmt.xbits, self.record.pair_bits]
        common = math.gcd(*lengths)
        return common & -common

    @property
    def spare_bits(self) -> int:
        """Bits of ``spare``, the buffer's bits past the front item: ``fill``'s and a sign."""
        return self.capacity.bit_length() + 1


class Unpacker(wiring.Component):
    """Packed weight stream -> pass header, exponents, PE rows.

    Latency: an item whose last bit arrives in a beat taken in cycle ``t`` is parsed in cycle
    ``t + 1`` (if its output register is free) and is on its output from cycle ``t + 2``.
    Throughput: ``W`` bits and one item per cycle.

    Parameters
    ----------
    cfg : AccelConfig
        ``cfg.weight_bus`` is ``W``, the width of ``i.data`` (``s_axis_weights_tdata``).

    Members
    -------
    i : In(axis_signature(W))
        The stream's beats; ``last`` ends a pass.
    header : Out(stream.Signature(Unpacker.header_layout(cfg)))
        A checked pass header (``mode``, ``tokens``, ``k_tiles``, ``n_tiles``), or a pass that cannot
        run (``fault`` HEADER, or TRUNCATED inside the header). The pass's exponents and rows
        follow only once it has been taken.
    exps : Out(stream.Signature(ExpDecoder.in_layout(C)))
        ``E_min`` (``minimum`` 1) or a K-group's ``E`` (MicroScopiQ mode).
    rows : Out(stream.Signature(Unpacker.row_layout(cfg)))
        One PE row: codes, and with ReCoN its micro-block records and ``raw``
        (:meth:`MetaDecoder.row_layout <.meta_decoder.MetaDecoder.row_layout>`).
    fault : Out(Fault)
        Nonzero for one cycle when a pass whose header was good turns out malformed (TRUNCATED,
        OVERRUN); nothing more of that pass follows.
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        # The width is AccelConfig.weight_bus, checked there (whole bytes, 8 … MAX_BUS_BITS).
        self.cfg = cfg
        self.bus_bits = bus_bits = cfg.weight_bus
        self.layouts = StreamLayouts(cfg)
        self.sizes = UnpackerSizes(cfg, bus_bits)
        self.record = self.sizes.record
        # MicroScopiQ rows at b/2 (a multi-precision instance with ReCoN): ``_header_check``, ``_row``.
        self._narrow_rows = cfg.multi_precision and cfg.has_recon
        # MicroScopiQ pair passes (per-row ReCoN besides): rows of C·b-bit codes, 2R-deep K-tiles.
        self._msq_pairs = self._narrow_rows and cfg.recon_share == 1
        super().__init__({
            "i": In(axis_signature(bus_bits)),
            "header": Out(stream.Signature(self.header_layout(cfg))),
            "exps": Out(stream.Signature(ExpDecoder.in_layout(cfg.cols))),
            "rows": Out(stream.Signature(self.row_layout(cfg))),
            "fault": Out(Fault),
        })

    @staticmethod
    def header_layout(cfg: AccelConfig) -> data.StructLayout:
        """A pass header beat: the fields the core keeps, and why the pass cannot run (``fault``
        HEADER or TRUNCATED; the fields are then meaningless)."""
        return data.StructLayout({"fields": StreamLayouts(cfg).header, "fault": Fault})

    @staticmethod
    def row_layout(cfg: AccelConfig) -> data.StructLayout:
        if cfg.has_recon:
            return MetaDecoder.row_layout(cfg.fmt, cfg.cols, cfg.multi_precision)
        return data.StructLayout({"codes": data.ArrayLayout(unsigned(cfg.fmt.wbits), cfg.cols)})

    # -- logic -------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        width, capacity = self.bus_bits, self.sizes.capacity
        buffer = Signal(capacity)      # bits at and above ``fill`` are zero
        fill = Signal(range(capacity + 1))
        # The beat's shifter has a copy of ``fill`` of its own: its select lines reach every bit of
        # the buffer, the other users of ``fill`` are the count logic's adders.
        fill_next, (beat_fill,) = mirrored(m, fill, 1)
        state = Signal(_Item)
        # The map queue's updates (a thousand clock enables) are chosen from copies of the
        # registers that decide ``parse`` (the state one-hot, :meth:`_state_flags`), so that its
        # logic is placed by the queue and the rest of the unpacker's by the buffer: ``state`` and
        # ``spare`` are assigned through their next values.
        state_next, _ = mirrored(m, state, 0)
        flags = self._state_flags(m, state, state_next, "state_is")
        queue_flags = self._state_flags(m, state, state_next, "queue_in")
        last_taken = Signal()          # this pass's tlast beat is in the buffer
        pass_regs = self._pass_registers(m)
        # The length of the item at the front, a register: set as the item before is parsed, from
        # registers (the map queue's, for a MicroScopiQ row).
        need = Signal(range(self.sizes.item_bits + 1), init=PACKED_HEADER.size)
        # ``spare = fill - need`` is a register too (negative while the item is incomplete), so
        # that ``have`` is its sign and a beat's place below a parsed item is a register.
        spare = Signal(signed(self.sizes.spare_bits), init=-PACKED_HEADER.size)
        # Two copies for the beat's shifter and the map queue, each computing its own next value
        # from itself (copies loading ``spare``'s next value would carry the loop to them).
        spares = [spare, Signal.like(spare, name="beat_spare"), Signal.like(spare, name="queue_spare")]
        spare_nexts = [Signal.like(copy, name=f"{copy.name}_next") for copy in spares]
        for copy, following in zip(spares, spare_nexts):
            copy.attrs[REPLICA] = 1
            m.d.sync += copy.eq(following)
        _, beat_spare, queue_spare = spares
        # Which of the candidate lengths (``_Next``) is the next item's if the front item is parsed
        # in this cycle: one flag, set by the state from registers (none in END and DRAIN).
        chosen = {kind: Signal(name=f"next_{kind.name.lower()}") for kind in _Next}
        # ``room``: the buffer has room for a beat, a register (``fill <= capacity - W`` for the
        # current ``fill``), so that a beat's ``ready`` depends on no comparator.
        room = Signal(init=1)
        ready, parse = Signal(), Signal()
        have = ~spare[-1]

        # Beats: taken while the buffer has room and the pass's tlast beat has not been taken.
        beat = self.i
        take = Signal()
        m.d.comb += [beat.ready.eq(~last_taken & room), take.eq(beat.valid & beat.ready)]
        # ``need`` and ``spare`` are registers, so the shifters start from registers and ports, and
        # ``parse`` and ``take`` only select among their results: a beat lands at ``fill``, or at
        # ``spare = fill - need`` below the parsed item's bits.
        beat_kept = beat_spare[:len(fill)]
        appended, consumed = Signal(capacity), Signal(capacity)
        at_fill, at_kept = Signal(capacity), Signal(capacity)
        m.d.comb += [at_fill.eq(_shifted(beat.payload.data, self._in_granules(beat_fill), capacity, left=True)),
                     at_kept.eq(_shifted(beat.payload.data, self._in_granules(beat_kept), capacity, left=True)),
                     appended.eq(buffer | Mux(take, at_fill, 0)),
                     consumed.eq(_shifted(buffer, self._in_granules(need), capacity, left=False) | Mux(take, at_kept, 0))]
        m.d.sync += buffer.eq(Mux(parse, consumed, appended))
        with m.If(take & beat.payload.last):
            m.d.sync += last_taken.eq(1)

        # A fault in the header (bad fields, or tlast inside it) goes out as the pass's header beat,
        # in order; one later in the pass pulses ``fault``. Either way the rest of the pass is dropped.
        fault, header_truncated = Signal(Fault), Signal()
        m.d.comb += self.fault.eq(fault)
        # ``drain``: drop the rest of the pass from the next cycle (a function of registers: no
        # test of the buffer reaches the state).
        drain = Signal()
        # ``refused``: the header parsed in the cycle before was refused. The state moved on as for
        # a good header (so that the header check reaches only the header beat's ``fault`` and this
        # register, not ``state``), and nothing is parsed now (the refused beat is on ``header``):
        # the pass drains from the next cycle.
        refused = Signal()
        parsing = (state != _Item.END) & (state != _Item.DRAIN) & ~refused
        m.d.comb += parse.eq(have & ready)          # (``ready`` is 0 in the states that do not parse)
        # (``fault`` is a function of registers only: nothing downstream's ready reaches it, so the
        # front end's output payload never depends on its own ready.)
        with m.If(parsing & last_taken & ~have):
            with m.If(state != _Item.HEADER):
                m.d.comb += [fault.eq(Fault.TRUNCATED), drain.eq(1)]
            with m.Elif(ready):
                m.d.comb += [header_truncated.eq(1), drain.eq(1)]

        row_length, queue_parse, refusing = self._items(
            m, (state, state_next, flags, queue_flags), buffer, chosen, ready, parse, (have, ~queue_spare[-1]),
            header_truncated, pass_regs)
        m.d.sync += refused.eq(refusing)
        cfg = self.cfg
        lengths = {_Next.ROW: row_length, _Next.EXPS: cfg.cols * EXP_BITS,
                   _Next.CODES: cfg.cols * cfg.fmt.wbits, _Next.PROLOGUE: self.sizes.prologue_bits}
        loops = [(spare, parse), (beat_spare, ~beat_spare[-1] & ready), (queue_spare, queue_parse)]
        self._next_counts(m, take, (fill, fill_next), need, room, chosen, lengths,
                          [(*loop, following) for loop, following in zip(loops, spare_nexts)])

        def restart():
            """Drop what is left of the pass (its tlast beat is in) and wait for a header."""
            # (Set here, not through ``chosen``: END and DRAIN are no parsing states. The buffer
            # is cleared in both.)
            m.d.sync += [last_taken.eq(0), room.eq(1), need.eq(PACKED_HEADER.size)]
            m.d.comb += [fill_next.eq(0), state_next.eq(_Item.HEADER), *(following.eq(-PACKED_HEADER.size) for following in spare_nexts)]

        with m.If(state == _Item.END):
            # The pass's last field must lie in its tlast beat (``fill < W`` once it is in), padded
            # with zeros: nonzero padding raises ``fault`` as the unpacker restarts, so that the
            # buffer's test reaches ``fault`` alone (END lasts one cycle: it restarts or drains).
            m.d.sync += buffer.eq(0)
            with m.If(last_taken & (fill < width)):
                restart()
                with m.If(buffer != 0):
                    m.d.comb += fault.eq(Fault.OVERRUN)
            with m.Else():
                m.d.comb += [fault.eq(Fault.OVERRUN), drain.eq(1)]
        with m.If(drain | refused):
            m.d.comb += state_next.eq(_Item.DRAIN)
        with m.If(state == _Item.DRAIN):
            m.d.comb += beat.ready.eq(~last_taken)
            m.d.sync += [buffer.eq(0), room.eq(1)]
            m.d.comb += fill_next.eq(0)
            m.d.comb += [following.eq(-need) for following in spare_nexts]
            with m.If(last_taken):
                restart()
        return m

    def _in_granules(self, count):
        """A bit count (``fill``, ``need``, ``spare``, a code offset) whose bits below the granule
        (:attr:`UnpackerSizes.granule`) are written as the constant zeros they always are, so that a
        shifter it selects leaves out those stages."""
        low = self.sizes.granule.bit_length() - 1
        return Cat(Const(0, low), Value.cast(count)[low:])

    def _next_counts(self, m, take, fills, need, room, chosen, lengths, loops):
        """The next ``fill``, ``need``, ``spare = fill - need`` and ``room``. Every candidate (the
        front item parsed or not, a beat taken or not, and if parsed each next length of
        ``lengths``, per :class:`_Next` a constant or the map queue's :class:`_RowLength`) is
        computed from registers; the state's ``chosen`` flag, then ``parse`` and ``take``, which
        depend on the handshakes, only select among them, so no adder or comparator sits behind a
        ``ready`` or behind another adder. ``loops``: per copy of ``spare`` (``spare`` first) the
        copy, its ``parse`` and its next value; ``fill`` (``fills``: the register and its next
        value), ``room`` and ``need`` follow the first."""
        width, capacity, bits = self.bus_bits, self.sizes.capacity, self.sizes.spare_bits
        fill, fill_next = fills

        def change(length, added: int):
            """What ``spare`` changes by for a next item of ``length`` with ``added`` bits."""
            return (added - length) % (1 << bits) if isinstance(length, int) else length.changes[added]

        def room_after(base, added: int):
            return base <= capacity - width - added

        need_parsed = _one_hot(chosen, {kind: length if isinstance(length, int) else length.length
                                        for kind, length in lengths.items()})
        for index, (copy, parse, following) in enumerate(loops):
            # Parsed, ``copy`` (then ``fill - need``, not negative) is the bits kept; not parsed,
            # ``spare`` moves by the beat only.
            kept = copy[:len(fill)]
            parsed = {added: _one_hot(chosen, {kind: (kept + change(length, added))[:bits]
                                               for kind, length in lengths.items()})
                      for added in (width, 0)}
            m.d.comb += following.eq(Mux(parse, Mux(take, parsed[width], parsed[0]),
                                         Mux(take, (copy + width)[:bits], copy)))
            if index == 0:
                m.d.comb += fill_next.eq(Mux(parse, Mux(take, kept + width, kept), Mux(take, fill + width, fill)))
                m.d.sync += room.eq(Mux(parse, Mux(take, room_after(kept, width), room_after(kept, 0)),
                                        Mux(take, room_after(fill, width), room_after(fill, 0))))
                with m.If(parse):
                    m.d.sync += need.eq(need_parsed)

    def _pass_registers(self, m) -> dict:
        header = self.layouts.header.members
        return {"raw": Signal(), "narrow": Signal(), "msq_pairs": Signal(),
                "k_tiles": Signal(header["k_tiles"]), "n_tiles": Signal(header["n_tiles"]),
                "k_before_last": Signal(header["k_tiles"]),
                "tile_k": Signal(header["k_tiles"]), "tile_n": Signal(header["n_tiles"]),
                "row": Signal(range(self.cfg.rows))}

    def _outputs(self, m, port, load, value):
        """A one-beat output register on ``port``; returns a copy of its ``valid`` register
        (:func:`.bits.mirrored`, the map queue's)."""
        valid_next, (copy,) = mirrored(m, port.valid, 1)
        with m.If(load):
            m.d.sync += port.payload.eq(value)
            m.d.comb += valid_next.eq(1)
        with m.Elif(port.ready):
            m.d.comb += valid_next.eq(0)
        return copy

    #: The states that parse an item (:meth:`_state_flags`).
    _PARSING = (_Item.HEADER, _Item.PROLOGUE, _Item.EMIN, _Item.EXPS, _Item.ROW)

    @classmethod
    def _state_flags(cls, m, state, state_next, name: str) -> dict:
        """The state one-hot, per parsing state a register equal to ``state == kind`` (loaded from
        the state's next value), marked :data:`.bits.REPLICA`: each user has its own set."""
        reset = _Item(Value.cast(state).init)
        flags = {kind: Signal(name=f"{name}_{kind.name.lower()}", init=kind == reset, attrs={REPLICA: 1})
                 for kind in cls._PARSING}
        m.d.sync += [flag.eq(state_next == kind) for kind, flag in flags.items()]
        return flags

    def _ready(self, flags, valids):
        """Whether the front item's output register can take it, the state given as ``flags``
        (one per parsing state), with the output registers' ``valids`` (header, exps, rows): a
        pass's items wait until its header has been taken, so whatever follows the header on the
        outputs belongs to the pass its taker started."""
        header_valid, exps_valid, rows_valid = valids
        after_header = ~header_valid
        exps_free = (~exps_valid | self.exps.ready) & after_header
        free = {_Item.HEADER: ~header_valid | self.header.ready, _Item.PROLOGUE: after_header,
                _Item.EMIN: exps_free, _Item.EXPS: exps_free,
                _Item.ROW: (~rows_valid | self.rows.ready) & after_header}
        return _one_hot(flags, free)

    @staticmethod
    def _to_row(flags, group_last, tile_row):
        """Whether the item after the front one is a PE row, the state given as ``flags`` (the
        K-group's and the tile's ends are registers): after E_min unless an E follows, after E,
        after a row but a tile's last that an E_min, E or the end follows."""
        return _one_hot({kind: flags[kind] for kind in (_Item.EMIN, _Item.EXPS, _Item.ROW)},
                        {_Item.EMIN: ~group_last, _Item.EXPS: Const(1, 1), _Item.ROW: tile_row})

    def _items(self, m, states, buffer, chosen, ready, parse, haves, header_truncated, regs):
        """The items' parsing; sets ``ready`` and ``chosen``, which length (:class:`_Next`) the next
        item has if the front item is parsed in this cycle (from registers, by state), and returns
        the next PE row's length (:meth:`_row`), the queue's ``parse`` and whether a header is
        refused in this cycle. ``states``: the state register, its next value, its one-hot flags
        and the map queue's; ``haves``: the front item is complete, and the queue's copy;
        ``header_truncated``: ``tlast`` cut the header short."""
        cfg = self.cfg
        exp_bits = cfg.cols * EXP_BITS
        state, state_next, flags, queue_flags = states
        header_ok, header_value = self._header_check(m, buffer)
        # The map queue's own ``parse`` and ``moving`` (the item after the front one is a PE row
        # and the pass is MicroScopiQ: the queue moves on as the front item is parsed), from copies.
        queue_parse, moving = Signal(), Signal()
        row_value, row_length = self._row(m, buffer, queue_flags, queue_parse, moving, regs)
        exps_value = Signal(ExpDecoder.in_layout(cfg.cols))
        m.d.comb += [exps_value.minimum.eq(state == _Item.EMIN), exps_value.exps.as_value().eq(buffer[:exp_bits])]
        refusing = (state == _Item.HEADER) & parse & ~header_ok
        header_beat = Signal(self.header_layout(cfg))
        m.d.comb += [header_beat.fields.eq(header_value),
                     header_beat.fault.eq(Mux(header_truncated, Fault.TRUNCATED, Mux(refusing, Fault.HEADER, Fault.NONE)))]
        valid_copies = [
            self._outputs(m, self.header, (parse & (state == _Item.HEADER)) | header_truncated, header_beat),
            self._outputs(m, self.exps, parse & ((state == _Item.EMIN) | (state == _Item.EXPS)), exps_value),
            self._outputs(m, self.rows, parse & (state == _Item.ROW), row_value)]
        m.d.comb += [ready.eq(self._ready(flags, (self.header.valid, self.exps.valid, self.rows.valid))),
                     queue_parse.eq(haves[1] & self._ready(queue_flags, valid_copies))]

        tile_row, group_last = self._next_row(m, states, regs, parse, header_value)
        m.d.comb += moving.eq(self._to_row(queue_flags, group_last, tile_row) & ~regs["raw"])
        with m.Switch(state):
            with m.Case(_Item.HEADER):
                header = data.View(PACKED_HEADER, buffer[:PACKED_HEADER.size])
                # Whatever ``header_ok``: a refused header's pass drains from the cycle after next,
                # and what is loaded now for it is never read.
                m.d.comb += [chosen[_Next.CODES].eq(header.mode == Mode.RAW),
                             chosen[_Next.PROLOGUE].eq(header.mode != Mode.RAW)]
                with m.If(parse):
                    if self._narrow_rows:
                        # ``narrow``: rows of C·b/2-bit codes (one slot per PE).
                        m.d.sync += [regs["narrow"].eq(header_value.narrow & ~header_value.pairs),
                                     regs["msq_pairs"].eq(header_value.narrow & header_value.pairs)]
                    m.d.sync += [regs["raw"].eq(header.mode == Mode.RAW),
                                 regs["k_tiles"].eq(header.k_tiles), regs["n_tiles"].eq(header.n_tiles),
                                 regs["k_before_last"].eq(header.k_tiles - 1),
                                 regs["tile_k"].eq(0), regs["tile_n"].eq(0), regs["row"].eq(0)]
                    m.d.comb += state_next.eq(Mux(header.mode == Mode.RAW, _Item.ROW, _Item.PROLOGUE))
            with m.Case(_Item.PROLOGUE):
                m.d.comb += chosen[_Next.EXPS].eq(1)
                with m.If(parse):
                    m.d.comb += state_next.eq(_Item.EMIN)
            with m.Case(_Item.EMIN):
                m.d.comb += [chosen[_Next.EXPS].eq(group_last), chosen[_Next.ROW].eq(~group_last)]
                with m.If(parse):
                    m.d.comb += state_next.eq(Mux(group_last, _Item.EXPS, _Item.ROW))
            with m.Case(_Item.EXPS):
                m.d.comb += chosen[_Next.ROW].eq(1)
                with m.If(parse):
                    m.d.comb += state_next.eq(_Item.ROW)
            with m.Case(_Item.ROW):
                # The next item: the tile's next row, or after its last the next tile's E_min, E or
                # row 0 (uniform: always a row of codes).
                m.d.comb += [chosen[_Next.ROW].eq(tile_row), chosen[_Next.EXPS].eq(~tile_row)]
        return row_length, queue_parse, refusing

    def _next_row(self, m, states, regs, parse, header_value):
        """After a row: the next row, tile (K-tiles inner), or the pass's end; a MicroScopiQ tile
        opens with ``E_min`` at an N-tile's start and ``E`` at a K-group's last K-tile (``G/R``
        K-tiles per K-group, ``G/2R`` in a MicroScopiQ pair pass). Returns two registers: whether
        the item after the front row is a row, and whether the current K-tile is its K-group's last
        (an ``E`` follows ``E_min``)."""
        state, state_next, _, _ = states
        row, tile_k, tile_n = regs["row"], regs["tile_k"], regs["tile_n"]
        last_row = row == self.cfg.rows - 1
        per_group = self.cfg.fmt.group // self.cfg.rows
        pass_pairs = regs["msq_pairs"] if self._msq_pairs else None

        def group_last(ahead: int):
            """Whether K-tile ``tile_k + ahead`` is its K-group's last (no adder: a residue test)."""
            return layouts_group_last(self.cfg, tile_k, pass_pairs, ahead)

        def row_follows(ahead: int):
            """Whether K-tile ``tile_k + ahead``'s last row is followed by a row (no E_min, E or
            end); ``KT - 1 - ahead`` is a register, so no adder sits before the comparison."""
            return (tile_k != (regs["k_before_last"] if ahead else regs["k_tiles"])) & ~group_last(ahead + 1)

        # Registers, so that no adder or comparator of the counters sits in front of ``need``:
        # ``then_row``, ``row_follows`` of the current K-tile (set as E_min or a tile's last row is
        # parsed), and ``row_next``, whether the front row (the next, outside the ROW state) is
        # followed by a row (always in a uniform pass).
        then_row, row_next = Signal(), Signal(init=1)
        k_last = Signal(init=per_group == 1) if per_group > 1 else Const(1, 1)
        rows = self.cfg.rows
        next_k = tile_k + 1
        next_last = group_last(1)
        n_end = tile_k == regs["k_tiles"]
        with m.If(parse & (state == _Item.HEADER)):
            m.d.sync += row_next.eq(1)
            if per_group > 1:
                # (K-tile 0 is a K-group's last only where a K-group is one pair tile, G = 2R.)
                first_last = header_value.narrow & header_value.pairs if self._msq_pairs and per_group == 2 else 0
                m.d.sync += k_last.eq(first_last)
        with m.If(parse & (state == _Item.EMIN)):
            m.d.sync += [then_row.eq(row_follows(0)), row_next.eq((rows > 1) | row_follows(0))]
        with m.If(parse & (state == _Item.ROW)):
            m.d.sync += row.eq(row + 1)
            with m.If(~regs["raw"]):
                m.d.sync += row_next.eq(((row != rows - 2) if rows > 1 else Const(0, 1)) | then_row)
            with m.If(last_row):
                m.d.sync += [row.eq(0), then_row.eq(row_follows(1))]
                with m.If(~regs["raw"]):
                    m.d.sync += row_next.eq((rows > 1) | row_follows(1))
                if per_group > 1:
                    m.d.sync += k_last.eq(Mux(n_end, layouts_group_last(self.cfg, Const(0, 1), pass_pairs), next_last))
                with m.If(n_end):
                    m.d.sync += tile_k.eq(0)
                    with m.If(tile_n == regs["n_tiles"]):
                        m.d.comb += state_next.eq(_Item.END)
                    with m.Else():
                        m.d.sync += tile_n.eq(tile_n + 1)
                        m.d.comb += state_next.eq(Mux(regs["raw"], _Item.ROW, _Item.EMIN))
                with m.Else():
                    m.d.sync += tile_k.eq(next_k)
                    m.d.comb += state_next.eq(Mux(regs["raw"] | ~next_last, _Item.ROW, _Item.EXPS))
        return row_next, k_last

    def _header_check(self, m, buffer):
        """Whether the header at the buffer's front is one this instance runs, and its core view.
        Every test is an AND or OR tree of the header's bits (:func:`.bits.below`,
        :func:`.bits.residue_is`): a comparison as a carry chain would sit between the buffer and
        ``state``."""
        cfg, sf = self.cfg, self.layouts
        header = data.View(PACKED_HEADER, buffer[:PACKED_HEADER.size])
        width_ok = header.wbits == cfg.fmt.wbits - 1
        pairs = Const(0, 1)
        if cfg.multi_precision:
            # A uniform pass at b/2: two slots per PE, 2R-deep K-tiles (G/2R per K-group); its
            # rows are parsed exactly as b rows (C·b bits).
            pairs = (header.wbits == cfg.fmt.wbits // 2 - 1) & (header.mode == Mode.RAW)
            width_ok = width_ok | pairs
        msq_pairs = Const(0, 1)
        if self._narrow_rows:
            # A MicroScopiQ pass at b/2: one slot per PE, rows of C·b/2-bit codes (``_row``); with
            # ``msq_pairs`` (per-row ReCoN only) two K rows per PE row: rows of C·b-bit codes,
            # 2R-deep K-tiles (G/2R per K-group).
            narrow = (header.wbits == cfg.fmt.wbits // 2 - 1) & (header.mode == Mode.MSQ)
            width_ok = width_ok | narrow
            if self._msq_pairs:
                msq_pairs = narrow & header.msq_pairs
        # ``msq_pairs`` is 1 only in a MicroScopiQ pair pass this instance runs; a pair pass (either
        # mode) has K-groups of G/2R K-tiles.
        ok = ((header.version == STREAM_VERSION) & (header.reserved == 0) & width_ok
              & (~header.msq_pairs | msq_pairs)
              & below(header.tokens, cfg.max_tokens)
              & below(header.k_tiles, sf.max_k_tiles) & below(header.n_tiles, sf.max_n_tiles)
              & layouts_group_last(cfg, header.k_tiles, pairs | msq_pairs if cfg.multi_precision else None))
        if not cfg.has_recon:
            ok = ok & (header.mode == Mode.RAW)
        value = Signal(sf.header)
        if cfg.multi_precision:
            m.d.comb += value.pairs.eq(pairs | msq_pairs)
        if self._narrow_rows:
            m.d.comb += value.narrow.eq(narrow)
        # The bounds above make the core's narrower fields exact.
        m.d.comb += [value.mode.eq(header.mode)] + [
            value[name].eq(header[name][:len(value[name])]) for name in ("tokens", "k_tiles", "n_tiles")]
        return ok, value

    def _record_bits(self, count: int) -> int:
        """The length of a present block's record whose count field is ``count`` (``count + 1``
        pairs)."""
        return self.cfg.fmt.xbits + self.record.pair_bits * (count + 1)

    def _record_lengths(self, presence, counts):
        """The records' lengths of one row's present blocks (``presence`` and ``counts`` per block)."""
        counts_range = 1 << len(Value.cast(counts[0])) if counts else 1
        return [Mux(present, _lookup([self._record_bits(k) for k in range(counts_range)], count), 0)
                for present, count in zip(presence, counts)]

    def _body_table(self, code_bits: list[int]) -> list[int]:
        """A row's body length (codes and records) per value of ``Cat(presence, counts, narrow)``:
        the presence bit and count field of each block, and (``code_bits`` of two entries) whether
        its codes are narrow."""
        blocks, count_bits = self.sizes.blocks, self.sizes.count_bits
        table = []
        for narrow, codes in enumerate(code_bits):
            for counts in range(1 << blocks * count_bits):
                for presence in range(1 << blocks):
                    fields = [counts >> blk * count_bits & ((1 << count_bits) - 1) for blk in range(blocks)]
                    table.append(codes + sum(self._record_bits(count) for blk, count in enumerate(fields)
                                             if presence >> blk & 1))
        return table

    def _row(self, m, buffer, flags, parse, moving, regs):
        """The output payload of the row at the buffer's front, and the next PE row's length: ``C·b``
        without ReCoN, else the map queue's :class:`_RowLength` (registers)."""
        cfg, fmt = self.cfg, self.cfg.fmt
        code_bits = cfg.cols * fmt.wbits
        value = Signal(self.row_layout(cfg))
        if not self.record:
            m.d.comb += value.codes.as_value().eq(buffer[:code_bits])
            return value, code_bits
        geom = self.record
        presence, counts, row_offset, row_length = self._map_queue(m, buffer, flags, parse, moving, regs)
        # The front row: codes from ``row_offset`` on, then the records of its present blocks. A
        # narrow row's codes are C·b/2 bits: its fields are read off the row widened to the b-bit
        # layout (each code zero-extended, the records after them).
        bits = Signal(self.sizes.row_bits)
        m.d.comb += bits.eq(field_at(m, buffer, self._in_granules(row_offset), self.sizes.row_bits))
        if self._narrow_rows:
            half = fmt.wbits // 2
            codes = [Cat(bits[c * half:][:half], Const(0, half)) for c in range(cfg.cols)]
            widened = Cat(*codes, bits[code_bits // 2:])[:self.sizes.row_bits]
            narrow_bits = Signal(self.sizes.row_bits)
            m.d.comb += [narrow_bits.eq(Mux(regs["narrow"], widened, bits)),
                         value.narrow.eq(regs["narrow"] | regs["msq_pairs"]), value.pairs.eq(regs["msq_pairs"])]
            bits = narrow_bits
        m.d.comb += [value.codes.as_value().eq(bits[:code_bits]), value.raw.eq(regs["raw"])]
        offset = code_bits
        for blk, count in enumerate(counts):
            present = presence[blk] & ~regs["raw"]
            record = value.blocks[blk]
            m.d.comb += [record.present.eq(present),
                         record.xexp.eq(Mux(present, field_at(m, bits, offset, fmt.xbits), 0))]
            if geom.count_bits:
                m.d.comb += record.count.eq(Mux(present, count, 0))
            for index in range(geom.max_pairs):
                used = present & (count >= index) if index else present
                pair = field_at(m, bits, offset + fmt.xbits + index * geom.pair_bits, geom.pair_bits)
                m.d.comb += record.pairs[index].as_value().eq(Mux(used, pair, 0))
            offset = offset + self._record_lengths([present], [count])[0]
        return value, row_length

    def _map_queue(self, m, buffer, flags, parse, moving, regs):
        """The map queue; returns the front row's presence bits and count fields (per block), where
        its codes start (``row_offset``) and the next row's length (:class:`_RowLength`).

        The queue holds one entry per PE row of the pass, from the row at the front (entry 0) on,
        ``(ahead + 1)·R`` of them: the row's micro-blocks' presence bits and counts, its ``prefix``
        (the map fields' bits in front of its codes, :class:`MapPlacement`) and its ``body`` (its
        codes and records). It moves on by one entry as an item is parsed whose next item is a row
        (``moving``), so the next row is always entry 1 and its length, ``body + prefix``, is
        registered with entry 1. The map fields are registered off the buffer's front as their row
        is parsed: the prologue's into the first tiles' entries, a row 0's presence bits
        into tile ``ahead``'s with each block's ``rank`` (and their count fields' length into the
        prefix of the row two on, which carries them), a counts row's counts (with the bodies) into
        the entries of the tile they belong to, each block's picked by its registered rank.

        ``flags`` (the state one-hot), ``parse`` and ``moving`` are the queue's own: from copies of
        the unpacker's registers, so that the queue's enables are placed by the queue."""
        cfg, fmt = self.cfg, self.cfg.fmt
        code_bits = cfg.cols * fmt.wbits
        row_code_bits = Mux(regs["narrow"], code_bits // 2, code_bits) if self._narrow_rows else code_bits
        geom, blocks, entries = self.record, self.sizes.blocks, self.sizes.map_entries
        place, rows, count_bits = self.sizes.placement, cfg.rows, geom.count_bits
        ahead = place.ahead
        depth = (ahead + 1) * rows
        presence = [Signal(blocks, name=f"queue_presence_{i}") for i in range(depth)]
        prefix = [Signal(range(self.sizes.prefix_bits + 1), name=f"queue_prefix_{i}") for i in range(depth)]
        counts = [Signal(blocks * count_bits, name=f"queue_counts_{i}") for i in range(depth)] if count_bits else []
        # ``body``: the row's codes and records, registered with its map entries, so that the next
        # row's length is one addition of two entries' next values (``body + prefix``).
        body = [Signal(range(self.sizes.row_bits + 1), init=code_bits, name=f"queue_body_{i}") for i in range(depth)]
        # ``rank``: per block, the present blocks before it in its tile (which count field is its),
        # registered with the presence bits so that no popcount sits in front of the counts' capture.
        rank_bits = max(1, (entries - 1).bit_length())
        rank = [Signal(blocks * rank_bits, name=f"queue_rank_{i}") for i in range(depth)] if count_bits else []
        queue = [presence, prefix, body] + ([counts, rank] if count_bits else [])

        def ranks(tile_bits, r):
            """Row ``r``'s blocks' ranks among the presence ``tile_bits`` of their tile."""
            counts = [_popcount(m, tile_bits[:r * blocks + blk]) if r or blk else Const(0, 1) for blk in range(blocks)]
            return Cat(*(_widened(count, rank_bits) for count in counts))

        def counts_of(entry):
            return [counts[entry].word_select(blk, count_bits) if count_bits else Const(0, 1) for blk in range(blocks)]

        # Every update waits for the front item's parse: the entries' next values are chosen by
        # registers only (``moving``, the state, the row) and loaded under ``parse``, so that ``parse``
        # reaches the queue's registers as their clock enable and none of their data multiplexers.
        nexts = {id(field): [Signal.like(entry, name=f"{entry.name}_next") for entry in field] for field in queue}
        for field in queue:
            m.d.comb += [following.eq(entry) for following, entry in zip(nexts[id(field)], field)]
        with m.If(moving):
            # (The entry past the end takes a row of codes: every entry's ``body`` stays a row's.)
            m.d.comb += [nexts[id(field)][i].eq(field[i + 1] if i + 1 < depth else (code_bits if field is body else 0))
                         for field in queue for i in range(depth)]

        def put(field, entry: int, new, moves):
            """Register ``new`` into the entry now at ``entry`` (one lower if the queue moves on in
            this cycle: ``moves`` True, False, or None where ``moving`` decides)."""
            if moves is None:
                with m.If(moving):
                    m.d.comb += nexts[id(field)][entry - 1].eq(new)
                with m.Else():
                    m.d.comb += nexts[id(field)][entry].eq(new)
            else:
                m.d.comb += nexts[id(field)][entry - int(moves)].eq(new)

        # Each entry's next ``prefix`` as addends too (``parts``): where count fields' lengths are
        # loaded, one per group of four presence bits (and the presence bits' own length, if any);
        # elsewhere the next value itself and zeros. So the next row's length takes the popcount's
        # groups into its carry-save layer, not an adder's sum of them.
        groups = -(-entries // 4)
        parts = [[Signal.like(entry, name=f"{entry.name}_part{j}") for entry in prefix]
                 for j in range(1 + groups if count_bits else 1)]
        for j, part in enumerate(parts):
            nexts[id(part)] = part
            m.d.comb += [part[i].eq(0 if j else prefix[i]) for i in range(depth)]
            with m.If(moving):
                m.d.comb += [part[i].eq(prefix[i + 1] if not j and i + 1 < depth else 0) for i in range(depth)]

        def put_prefix(entry: int, terms, moves):
            """:func:`put` ``Σ terms`` into ``prefix`` (and each term into its part)."""
            terms = [Value.cast(term) for term in terms] or [Const(0, 1)]
            put(prefix, entry, _add_all(m, terms, len(prefix[0])), moves)
            for part, term in zip(parts, terms + [Const(0, 1)] * (len(parts) - len(terms))):
                put(part, entry, term, moves)

        def count_length(bits):
            """The count fields' length for the presence ``bits``, as addends: one per four bits
            (a LUT level)."""
            return [_times(_popcount(m, bits[at:at + 4]), count_bits) for at in range(0, len(bits), 4)] if count_bits else []

        def body_length(row_presence, row_counts):
            """A row's codes and records for its blocks' presence bits and count fields: one table
            of them where they are few bits, else the sum of the codes and the blocks' records."""
            row_counts = row_counts if count_bits else Const(0, 0)
            narrow = [regs["narrow"]] if self._narrow_rows else []
            index = Cat(row_presence, row_counts, *narrow)
            if len(index) <= _TABLE_BITS:
                return _lookup(self._body_table([code_bits, code_bits // 2][:1 + len(narrow)]), index)
            fields = [row_counts[blk * count_bits:][:count_bits] for blk in range(blocks)]
            return _add_all(m, [row_code_bits, *self._record_lengths(row_presence, fields)], len(body[0]))

        with m.If(flags[_Item.HEADER]):
            # A uniform pass's rows start at the front and are ``C·b`` bits: entries 0 and 1 stay
            # (its parses do not move the queue on); a MicroScopiQ pass's prologue fills entry 1.
            put_prefix(0, [], False)
            put_prefix(1, [], False)
            put(body, 1, code_bits, False)
        # The prologue (its next item is E_min: the queue stays): the first tiles from entry 1 on.
        with m.If(flags[_Item.PROLOGUE]):
            for tile in range(ahead):
                for r in range(rows):
                    at = (tile * rows + r) * blocks
                    put(presence, 1 + tile * rows + r, buffer[at:at + blocks], False)
                    put_prefix(1 + tile * rows + r, [entries] if r == 0 else [], False)
                    if count_bits:
                        put(rank, 1 + tile * rows + r, ranks(buffer[tile * entries:(tile + 1) * entries], r), False)
            for tile in range(place.prologue_counts if count_bits else ahead):
                for r in range(rows):
                    at = ahead * entries + (tile * rows + r) * blocks * count_bits
                    if count_bits:
                        put(counts, 1 + tile * rows + r, buffer[at:at + blocks * count_bits], False)
                    where = (tile * rows + r) * blocks
                    put(body, 1 + tile * rows + r,
                        body_length(buffer[where:where + blocks], buffer[at:at + blocks * count_bits]), False)
            for tile in range(place.prologue_counts, ahead):
                carrier = place.counts_row(tile)
                base = entries if carrier % rows == 0 else 0
                put_prefix(1 + carrier, [base, *count_length(buffer[tile * entries:(tile + 1) * entries])], False)
        # A row (its parse moves the queue on but at R = 1, where an E_min or E may come next).
        in_row = flags[_Item.ROW] & ~regs["raw"]
        moves = True if rows > 1 else None
        with m.If(in_row & (regs["row"] == 0)):
            # Tile ``ahead`` on: its presence bits; its counts open the row two on.
            for r in range(rows):
                put(presence, ahead * rows + r, buffer[r * blocks:(r + 1) * blocks], moves)
                put_prefix(ahead * rows + r, [entries] if r == 0 else [], moves)
                if count_bits:
                    put(rank, ahead * rows + r, ranks(buffer[:entries], r), moves)
                else:
                    put(body, ahead * rows + r, body_length(buffer[r * blocks:(r + 1) * blocks], Const(0, 1)), moves)
            put_prefix(2, ([entries] if rows <= 2 else []) + count_length(buffer[:entries]), moves)
        if count_bits:
            with m.If(in_row & (regs["row"] == place.counts_slot)):
                # The counts of the tile whose row 0 is ``ahead·R − 2`` rows on, by its blocks' ranks.
                first = ahead * rows - 2
                at = entries if place.counts_slot == 0 else 0
                fields = [buffer[at + i * count_bits:][:count_bits] for i in range(entries)]
                ranked = [Array(fields[:e + 1])[rank[first + e // blocks].word_select(e % blocks, rank_bits)]
                          if e else fields[0] for e in range(entries)]
                for r in range(rows):
                    row_counts = Cat(*ranked[r * blocks:(r + 1) * blocks])
                    put(counts, first + r, row_counts, moves)
                    put(body, first + r, body_length(presence[first + r], row_counts), moves)
        with m.If(parse):
            m.d.sync += [entry.eq(following) for field in queue for entry, following in zip(field, nexts[id(field)])]
        # The next row's length: entry 1's ``body + prefix`` (its parts), registered as entry 1 is.
        row_length = _RowLength.load(m, parse, [nexts[id(body)][1], *(part[1] for part in parts)], self.sizes, code_bits)
        row_offset = Signal.like(prefix[0], name="row_offset")
        m.d.comb += row_offset.eq(prefix[0])
        return presence[0], counts_of(0), row_offset, row_length
