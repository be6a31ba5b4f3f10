"""On-chip metadata decoder: one PE row's micro-block records in, its roles and ReCoN configuration
out (the routing compiler, :func:`~microscopiq.host.routing.compile_row`, moved into hardware).

The packed weight stream (:mod:`~microscopiq.host.packed_stream`) carries per micro-block only a
presence bit, ``pairs - 1``, ``X`` and the (outlier, partner) offsets. Per row this block computes

* the role of every slot (OUT_HI at an outlier offset, OUT_LO at a partner offset, else INLIER);
* per micro-block the swap bits of the Waksman–Beneš network that realise the involution
  ``dst[o] = p, dst[p] = o`` (inliers fixed), exactly the bits of ``routing.benes_route``;
* per column the merge op (KEEP, ZERO, MERGE_ADD / MERGE_SUB by the OUT_HI code's sign) and the
  shift (``b`` for an inlier, 0 in raw mode and for a partner, ``e + X`` for an outlier);
* ``error``: a slot named by two pairs (or an outlier that is its own partner) in a present
  micro-block; the row's roles and configuration are then meaningless and must not be used.

The Beneš routing is the looping algorithm in closed form. For a (sub-)network of ``n`` lines
(``h = n/2``), input ``p`` and its first-stage mate ``A(p) = p ^ h`` must cross different halves,
and so must the inputs bound for outputs ``q`` and ``q ^ h``; ``T(p) = inv[dst[p ^ h] ^ h]`` is the
next input of the loop through ``p`` that crosses the same half. The loop through ``inv[0]`` crosses
the upper half there (the Waksman rule that keeps the first last-stage switch fixed), every other
loop at its lowest input; so input ``i < h`` goes down (``sub[i] = 1``) unless its ``T``-orbit holds
that input. The orbits come from ``log2(h)`` doubling steps (``T``, ``T²``, ``T⁴`` …), then the
halves' permutations are formed and the same is done on each, down to two lines (one swap bit:
``dst[0]``). Every level is pipelined in four register stages, and one more per doubling step after
the first (none at U <= 8).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import C, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import FormatConfig
from .bits import mux_tree, one_hot, or_tree, repeated, replicas
from .recon_geometry import ColumnOp, ReconGeometry
from ..quant.layer import Role
from .recon_network import ReconNetwork

__all__ = ["RecordGeometry", "MetaDecoder"]


@dataclass(frozen=True)
class RecordGeometry:
    """Field widths of one micro-block's metadata (shared by the encoder and the decoders).

    Parameters
    ----------
    fmt : FormatConfig
        ``wbits`` must have an outlier format (2, 3 or 4).
    """

    fmt: FormatConfig

    def __post_init__(self):
        if not isinstance(self.fmt, FormatConfig):
            raise TypeError(f"fmt must be a FormatConfig, not {self.fmt!r}")
        if not self.fmt.msq_capable:
            raise ValueError(f"micro-block metadata needs wbits 2, 3 or 4, not wbits={self.fmt.wbits!r}")

    @property
    def offset_bits(self) -> int:
        """Bits of a row offset inside the micro-block, ``log2(U)``."""
        return self.fmt.ublock.bit_length() - 1

    @property
    def count_bits(self) -> int:
        """Bits of ``pairs - 1``, ``log2(U/2)`` (0 at U = 2: one pair at most)."""
        return self.offset_bits - 1

    @property
    def max_pairs(self) -> int:
        return self.fmt.max_outliers

    @property
    def pair_bits(self) -> int:
        """Bits of one pair ``o | p << log2(U)``."""
        return 2 * self.offset_bits




class MetaDecoder(wiring.Component):
    """Micro-block metadata of one PE row -> roles and ReCoN configuration.

    Latency :attr:`latency` cycles, throughput one row per cycle: an input beat taken in cycle ``t``
    is the output beat valid from cycle ``t + latency`` when the output is always ready. A stalled
    output (``o.valid`` and not ``o.ready``) freezes the whole pipeline; ``i.ready`` is
    ``~o.valid | o.ready`` (never depends on ``i.valid``).

    Parameters
    ----------
    fmt : FormatConfig
        Number formats; ``wbits`` must have an outlier format (2, 3 or 4).
    width : int
        Columns ``C`` of the row, a positive multiple of ``fmt.ublock``.
    narrow : bool
        (a multi-precision instance) The row carries ``narrow``: a MicroScopiQ row at ``h = b/2``
        whose ``h``-bit codes arrive zero-extended; :meth:`narrow_code` widens each by its role.
        And ``pairs``: with ``narrow``, a MicroScopiQ pair pass's row, each ``b``-bit code field
        holding the network slot's ``h``-bit code (low half, the records' slot: its op and shift
        come from its :meth:`narrow_code`) and the inlier slot's (high half); its codes pass
        unchanged (the PE decodes both halves).

    Members
    -------
    i : In(stream.Signature(MetaDecoder.row_layout(fmt, width)))
        ``codes`` (``C`` raw codes), ``blocks`` (per micro-block ``present``, ``count`` = pairs - 1
        (absent at U = 2), ``xexp``, ``pairs[U/2]`` of ``outlier`` / ``partner`` offsets, the first
        ``count + 1`` used, any order), ``raw`` (uniform layer: metadata ignored, every slot INLIER,
        shift 0), ``narrow`` and ``pairs`` (``narrow=True`` only).
    o : Out(stream.Signature(MetaDecoder.out_layout(fmt, width)))
        ``codes`` (passed through), ``roles`` (:class:`~microscopiq.quant.layer.Role` per column),
        ``config`` (:meth:`ReconNetwork.config_layout`, bit-identical to ``compile_row``), ``error``.
    """

    #: Register stages per level of the Beneš recursion (networks of ``n`` >= 4 lines), besides one
    #: per doubling step of the orbits after the first (:meth:`doublings`).
    STAGES_PER_LEVEL = 4

    def __init__(self, fmt: FormatConfig, width: int, narrow: bool = False):
        self.geometry = ReconGeometry(fmt, width)      # checks fmt and width
        self.record = RecordGeometry(fmt)
        if narrow and fmt.wbits != 4:
            raise ValueError(f"a narrow (b/2) MicroScopiQ row needs wbits 4, not wbits={fmt.wbits}")
        self.fmt, self.width, self.narrow = fmt, width, narrow
        super().__init__({
            "i": In(stream.Signature(self.row_layout(fmt, width, narrow))),
            "o": Out(stream.Signature(self.out_layout(fmt, width))),
        })

    @property
    def latency(self) -> int:
        """Cycles from an input handshake to its output beat (:meth:`latency_of`)."""
        return self.latency_of(self.fmt)

    @classmethod
    def latency_of(cls, fmt: FormatConfig) -> int:
        """The latency of the decoder for ``fmt``, without building one: the record register, four
        stages per Beneš level of 4 or more lines and one per doubling step after the first (none
        at U <= 8), the output register."""
        sizes = [fmt.ublock >> level for level in range(RecordGeometry(fmt).offset_bits - 1)]
        return 2 + sum(cls.STAGES_PER_LEVEL + max(0, cls.doublings(size) - 1) for size in sizes)

    @staticmethod
    def doublings(lines: int) -> int:
        """Doubling steps of the orbits on a network of ``lines`` lines: ``T²``, ``T⁴`` … up to
        ``T^(h/2)`` (``h = lines/2``). ``T²`` is formed with ``T`` (stage 1 of the level), the
        first step with the orbits of ``T`` (stage 2), each later one in a stage of its own, so that
        no stage selects by a selected index twice."""
        return max(0, (lines // 2).bit_length() - 2)

    @staticmethod
    def block_layout(fmt: FormatConfig) -> data.StructLayout:
        """One micro-block's record."""
        geom = RecordGeometry(fmt)
        pair = data.StructLayout({"outlier": unsigned(geom.offset_bits), "partner": unsigned(geom.offset_bits)})
        fields = {"present": unsigned(1)}
        if geom.count_bits:
            fields["count"] = unsigned(geom.count_bits)
        fields.update({"xexp": unsigned(fmt.xbits), "pairs": data.ArrayLayout(pair, geom.max_pairs)})
        return data.StructLayout(fields)

    @classmethod
    def row_layout(cls, fmt: FormatConfig, width: int, narrow: bool = False) -> data.StructLayout:
        fields = {
            "codes": data.ArrayLayout(unsigned(fmt.wbits), width),
            "blocks": data.ArrayLayout(cls.block_layout(fmt), width // fmt.ublock),
            "raw": unsigned(1),
        }
        if narrow:
            fields["narrow"] = unsigned(1)
            fields["pairs"] = unsigned(1)
        return data.StructLayout(fields)

    @staticmethod
    def narrow_code(code, role, wbits: int):
        """The ``b``-bit code that a ``b``-bit PE, ReCoN and this decoder's op and shift turn into
        exactly ``2^h`` times the contribution of the ``h``-bit code ``code[:h]`` (``h = b/2``,
        SPEC §3 at ``h``), so that a MicroScopiQ pass at ``h`` runs on the ``b``-bit datapath and
        the array shifts its column sums back once (``Array._raw_sums``):

        * INLIER: ``q`` sign-extended (the product ``x·q``, shifted by ``b = h + h``);
        * OUT_HI: the sign moved to bit ``b-1``, the ``h-1``-bit exponent ``e`` kept (``±x``);
        * OUT_LO: the fraction ``f`` in the high half, ``f·2^h`` (merged as ``(hi << b) ± lo·2^h
          = 2^h·((hi << h) ± lo)``, then shifted by ``e + X`` as at ``h``).

        Works on Amaranth values (``role`` a Role-valued signal); ``Role`` 3 keeps the code."""
        h = wbits // 2
        low, sign = code[:h], code[h - 1]
        return Mux(role == Role.INLIER.value, Cat(low, sign.replicate(h)),
                   Mux(role == Role.OUT_HI.value, Cat(low[:h - 1], C(0, h), sign),
                       Mux(role == Role.OUT_LO.value, Cat(C(0, h), low), code)))

    @staticmethod
    def out_layout(fmt: FormatConfig, width: int) -> data.StructLayout:
        return data.StructLayout({
            "codes": data.ArrayLayout(unsigned(fmt.wbits), width),
            "roles": data.ArrayLayout(Role, width),
            "config": ReconNetwork.config_layout(fmt, width),
            "error": unsigned(1),
        })

    # -- pipeline ---------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        self._m, self._advance, self._stages = m, Signal(), 0
        m.d.comb += self._advance.eq(~self.o.valid | self.o.ready)
        levels = self.record.offset_bits          # log2(U): stages 0 … 2·levels - 2 of the network
        state = self._stage(self._records())
        # The records' error is registered per slot and ORed in stage 1 (its tree and the slots'
        # comparisons would otherwise be one path of stage 0).
        state["error"] = or_tree(state["error"])
        size = self.fmt.ublock
        while size > 2:                           # one Beneš level: first and last stages, two halves
            depth = levels - size.bit_length() + 1
            later = [self._doubling] * max(0, self.doublings(size) - 1)
            steps = (self._inverse, self._orbits, *later, self._colours, self._halves)
            for index, step in enumerate(steps):
                state["perms"] = [[step(perm) for perm in block] for block in state["perms"]]
                if index == len(steps) - 1:
                    self._collect(state, depth)
                state = self._stage(state)
            size //= 2
        for blk, block in enumerate(state["perms"]):  # two-line networks: the swap bit is dst[0]
            state["benes"][blk][levels - 1] = [perm["dst"][0][0] for perm in block]
        outputs = self._outputs(state)
        # ``i.ready`` equals ``_advance``, but from a copy of the output's valid register: the
        # advance net reaches every pipeline register's enable and nextpnr places its LUT among
        # them, so the input's handshake (the skid buffer in front) gets a LUT of its own.
        out = self._stage(outputs)
        valid_copy, = replicas(m, self._advance, outputs["valid"], 1, "o_valid_copy", original=out["valid"])
        m.d.comb += self.i.ready.eq(~valid_copy | self.o.ready)
        m.d.comb += [self.o.valid.eq(out.pop("valid"))]
        m.d.comb += self.o.payload.as_value().eq(Cat(*(out[name] for name in self.o.payload.shape().members)))
        if self._stages != self.latency:
            raise RuntimeError(f"pipeline has {self._stages} stages, latency says {self.latency}")
        return m

    def _register(self, value, name: str):
        """Register a nest of dicts and lists of values, advancing with the pipeline; each register
        named by its stage and place in the nest (``s3_perms_0_1_orbit_5``)."""
        if isinstance(value, dict):
            return {key: self._register(v, f"{name}_{key}") for key, v in value.items()}
        if isinstance(value, list):
            return [self._register(v, f"{name}_{index}") for index, v in enumerate(value)]
        reg = Signal(value.shape(), name=name)
        with self._m.If(self._advance):
            self._m.d.sync += reg.eq(value)
        return reg

    def _wires(self, values: list) -> list:
        """Each value on a signal of its own, so that later selections share it instead of
        copying its expression (which would grow with every doubling step)."""
        wires = [Signal(value.shape()) for value in values]
        self._m.d.comb += [w.eq(v) for w, v in zip(wires, values)]
        return wires

    def _stage(self, state: dict) -> dict:
        self._stages += 1
        return self._register(state, f"s{self._stages}")

    def _records(self) -> dict:
        """Stage 0: per micro-block the routing permutation ``dst``, per column the role, and the
        error flags per slot, from the records (metadata ignored in raw mode)."""
        u, payload = self.fmt.ublock, self.i.payload
        raw = payload.raw
        roles, perms, errors = [], [], []
        for blk in range(self.geometry.blocks):
            rec = payload.blocks[blk]
            count = rec.count if self.record.count_bits else C(0, 1)
            present = rec.present & ~raw
            pairs = [(present & (count >= i) if i else present, rec.pairs[i].outlier, rec.pairs[i].partner)
                     for i in range(self.record.max_pairs)]
            dst = []
            for c in range(u):
                hits_hi = [valid & (o == c) for valid, o, _ in pairs]
                hits_lo = [valid & (p == c) for valid, _, p in pairs]
                is_hi, is_lo = or_tree(hits_hi), or_tree(hits_lo)
                moved = [Mux(hit, p, 0) for hit, (_, _, p) in zip(hits_hi, pairs)]
                moved += [Mux(hit, o, 0) for hit, (_, o, _) in zip(hits_lo, pairs)]
                dst.append(or_tree([*moved, Mux(is_hi | is_lo, 0, C(c, self.record.offset_bits))]))
                roles.append(Mux(is_hi, Role.OUT_HI.value, Mux(is_lo, Role.OUT_LO.value,
                                                                   Role.INLIER.value)))
                errors.append(repeated(hits_hi + hits_lo))   # this slot named by two pair fields
            perms.append([{"dst": dst}])
        stages = 2 * self.record.offset_bits - 1
        narrow = payload.narrow if self.narrow else C(0, 1)
        pairs = payload.pairs if self.narrow else C(0, 1)
        return {"valid": self.i.valid, "codes": [payload.codes[c] for c in range(self.width)], "roles": roles,
                "narrow": narrow, "pairs": pairs,
                "xexp": [payload.blocks[blk].xexp for blk in range(self.geometry.blocks)], "raw": raw,
                "error": errors, "perms": perms,
                "benes": [[[] for _ in range(stages)] for _ in range(self.geometry.blocks)]}

    # One Beneš level on a permutation dst of n lines (h = n/2), in four register stages and one per
    # doubling step after the first.

    def _inverse(self, perm: dict) -> dict:
        """``inv`` and the loop step ``T(p) = inv[dst[p ^ h] ^ h]``. The whole micro-block's
        permutation is its own inverse; the halves' are not."""
        dst = perm["dst"]
        n = len(dst)
        h = n // 2
        if n == self.fmt.ublock:   # a legal record's dst is an involution (an illegal one sets error)
            inv = dst
        else:
            inv = self._wires([or_tree([Mux(dst[p] == q, p, 0) for p in range(n)])
                               for q in range(n)])
        step = self._wires([mux_tree(inv, dst[p ^ h] ^ h) for p in range(n)])
        perm = {"dst": dst, "inv": inv, "step": step}
        if self.doublings(n):
            perm["power"] = [mux_tree(step, step[p]) for p in range(n)]       # T²
        return perm

    def _orbits(self, perm: dict) -> dict:
        """``orbit[p]``: the inputs ``T^k(p)``, ``k < 2``, as an ``n``-bit mask, then the first
        doubling step (with ``T²`` from the stage before) where there is one."""
        step = perm["step"]
        n = len(step)
        orbit = self._wires([C(1 << p, n) | one_hot(step[p], n) for p in range(n)])
        if "power" not in perm:
            return {"dst": perm["dst"], "inv": perm["inv"], "orbit": orbit}
        return self._doubling({"dst": perm["dst"], "inv": perm["inv"], "orbit": orbit, "power": perm["power"]})

    def _doubling(self, perm: dict) -> dict:
        """One doubling step: with ``power = T^j``, the orbits of ``k < j`` become those of
        ``k < 2j``, and ``power`` becomes ``T^2j`` for the next step (one selection each)."""
        orbit, power = perm["orbit"], perm["power"]
        n = len(orbit)
        return {"dst": perm["dst"], "inv": perm["inv"],
                "orbit": self._wires([orbit[p] | mux_tree(orbit, power[p]) for p in range(n)]),
                "power": self._wires([mux_tree(power, power[p]) for p in range(n)])}

    def _colours(self, perm: dict) -> dict:
        """``sub[i]`` (``i < h``): input ``i`` crosses the lower half. The loop through ``inv[0]``
        crosses the upper half at ``inv[0]``, every other loop at its lowest input."""
        orbit, inv = perm["orbit"], perm["inv"]
        n = len(orbit)
        h = n // 2
        first, = self._wires([mux_tree(orbit, inv[0])])  # inputs in the upper half, loop of inv[0]
        second = Cat(first[h:], first[:h])            # their first-stage mates
        sub = []
        for i in range(h):
            lo, hi = orbit[i][:h], orbit[i][h:]
            loop = lo | hi
            lowest = loop & (~loop + 1)[:h]
            sub.append(Mux(first[i], 0, Mux(second[i], 1, ~(lowest & lo).any())))
        return {"dst": perm["dst"], "inv": inv, "sub": Cat(*sub)}

    def _halves(self, perm: dict) -> dict:
        """The level's first- and last-stage swap bits and the two halves' permutations."""
        dst, inv, sub = perm["dst"], perm["inv"], perm["sub"]
        n = len(dst)
        h, bits = n // 2, n.bit_length() - 1
        down, = self._wires([Cat(sub, ~sub)])          # per input: crosses the lower half
        last = [mux_tree([down[p] for p in range(n)], inv[q]) for q in range(h)]
        upper = [Mux(sub[i], dst[i + h], dst[i])[:bits - 1] for i in range(h)]
        lower = [Mux(sub[i], dst[i], dst[i + h])[:bits - 1] for i in range(h)]
        return {"first": [sub[i] for i in range(h)], "last": last, "upper": upper, "lower": lower}

    def _collect(self, state: dict, depth: int) -> None:
        """File a level's first/last bits under network stages ``depth`` and ``2L - 2 - depth``
        (sub-networks in tree order, upper before lower, as ``routing.benes_route``) and replace
        each permutation by its two halves."""
        stages = 2 * self.record.offset_bits - 1
        for blk, block in enumerate(state["perms"]):
            state["benes"][blk][depth] = [bit for half in block for bit in half["first"]]
            state["benes"][blk][stages - 1 - depth] = [bit for half in block for bit in half["last"]]
            state["perms"][blk] = [{"dst": half[side]} for half in block for side in ("upper", "lower")]

    def _outputs(self, state: dict) -> dict:
        """Column ops and shifts, and the row's output payload fields."""
        fmt, geom = self.fmt, self.geometry
        b, u = fmt.wbits, fmt.ublock
        config, codes = [], []
        for blk in range(geom.blocks):
            stages = state["benes"][blk]
            benes = Cat(*(stages[stage][index] for stage, index in geom.routing_switches))
            columns = []
            for c in range(blk * u, (blk + 1) * u):
                role, code = state["roles"][c], state["codes"][c]
                if self.narrow:
                    wide = Mux(state["narrow"], self.narrow_code(code, role, b), code)
                    codes.append(Mux(state["pairs"], code, wide))
                    code = wide
                outlier, partner = role == Role.OUT_HI.value, role == Role.OUT_LO.value
                op = Mux(outlier, Mux(code[b - 1], ColumnOp.MERGE_SUB, ColumnOp.MERGE_ADD),
                         Mux(partner, ColumnOp.ZERO, ColumnOp.KEEP))
                shift = Mux(outlier, code[:b - 1] + state["xexp"][blk],
                            Mux(partner | state["raw"], 0, b))
                columns.append(Cat(op[:2], shift[:geom.shift_bits]))
            config.append(Cat(benes, *columns))
        return {"valid": state["valid"], "codes": Cat(*(codes if self.narrow else state["codes"])),
                "roles": Cat(*state["roles"]),
                "config": Cat(*config), "error": state["error"]}
