"""Bit-level helpers shared by the blocks."""

from __future__ import annotations

import operator

from amaranth import Cat, Const, Module, Mux, Signal, Value

__all__ = ["REPLICA", "replicas", "mirrored", "field_at", "at_least", "below", "residue_is", "or_tree", "repeated",
           "mux_tree", "one_hot"]

#: Attribute of a register that copies another register to cut its fan-out (a per-consumer copy,
#: placed next to its consumer). Yosys merges registers with the same input (``opt_merge``), so
#: the synthesis flow (flow/synth.py) sets ``keep`` on the flip-flops driving a wire that carries it.
REPLICA = "microscopiq_replica"


def replicas(m: Module, en, value, count: int, name: str, *, original=None) -> list[Signal]:
    """``count`` registers ``name0`` … each loaded with ``value`` at the edges where ``en`` is 1,
    marked :data:`REPLICA`: one per consumer, so no single register fans out to all of them.
    ``original``: a register loaded the same way elsewhere, marked too (Yosys would merge an
    unmarked register into a marked copy)."""
    if original is not None:
        Value.cast(original).attrs[REPLICA] = 1
    copies = [Signal(Value.cast(value).shape(), name=f"{name}{i}", attrs={REPLICA: 1}) for i in range(count)]
    with m.If(en):
        m.d.sync += [copy.eq(value) for copy in copies]
    return copies


def mirrored(m: Module, register: Signal, count: int) -> tuple[Signal, list[Signal]]:
    """``register``'s next value as a signal to assign in ``m.d.comb`` wherever ``m.d.sync``
    would assign ``register`` (it holds ``register`` where nothing does), and ``count`` copies of
    ``register`` that follow it, all marked :data:`REPLICA`: for a register written in many places,
    so that a consumer far from its other consumers has one of its own."""
    name = Value.cast(register).name
    following = Signal.like(register, name=f"{name}_next")
    if count:   # (the register is marked too: Yosys would merge an unmarked one into a marked copy)
        Value.cast(register).attrs[REPLICA] = 1
    copies = [Signal.like(register, name=f"{name}_copy{i}", attrs={REPLICA: 1}) for i in range(count)]
    m.d.comb += following.eq(register)
    m.d.sync += [copy.eq(following) for copy in (register, *copies)]
    return following, copies


def field_at(m: Module, value, offset, width: int):
    """``value.bit_select(offset, width)``, the shift on a signal as wide as ``value`` so that the
    Verilog truncates nothing implicitly (Verilator's WIDTHTRUNC)."""
    if isinstance(offset, int):
        return value[offset:offset + width]
    shifted = Signal(len(value))
    m.d.comb += shifted.eq(value >> offset)
    return shifted[:width]


def at_least(value, constant: int):
    """``value >= constant`` (unsigned) as ANDs and ORs of ``value``'s bits, LSB first: Yosys turns
    a ``>=`` into a carry chain, a chain of four LUTs and a carry cell per comparison; as logic,
    ABC folds a few-bit comparison into a LUT or two."""
    value = Value.cast(value)
    if constant <= 0 or constant >= 1 << len(value):
        return Const(int(constant <= 0), 1)
    holds = Const(1, 1)                       # the empty low part: equal, so at least
    for i, bit in enumerate(value):
        holds = bit & holds if constant >> i & 1 else bit | holds
    return holds


def below(value, constant: int):
    """``value < constant`` (unsigned). A power of two is "the bits from ``log2(constant)`` on are
    zero", an OR tree (Yosys maps a ``<`` to a carry chain); any other bound :func:`at_least`."""
    value = Value.cast(value)
    if constant > 0 and constant & (constant - 1) == 0:
        high = value[constant.bit_length() - 1:]
        return ~high.any() if len(high) else Const(1, 1)
    return ~at_least(value, constant)


def residue_is(value, modulus: int, residue: int):
    """``value % modulus == residue`` (unsigned, ``0 <= residue < modulus``): for a power of two,
    the low ``log2(modulus)`` bits equal a constant, an AND tree instead of Yosys's modulo and
    comparison."""
    value = Value.cast(value)
    if modulus & (modulus - 1):
        return value % modulus == residue
    bits = modulus.bit_length() - 1
    if len(value) < bits:                     # the value is its own residue
        return value == residue if residue < 1 << len(value) else Const(0, 1)
    return value[:bits] == residue if bits else Const(1, 1)


def _pairwise(combine, items: list):
    """``items`` reduced by ``combine`` as a balanced tree (depth ``log2`` of their count): ABC maps
    a reduction written as a chain level by level."""
    while len(items) > 1:
        items = [combine(items[i], items[i + 1]) if i + 1 < len(items) else items[i] for i in range(0, len(items), 2)]
    return items[0]


def or_tree(values):
    """The OR of ``values`` (0 if none), as a balanced tree."""
    return _pairwise(operator.or_, [Value.cast(value) for value in values] or [Const(0, 1)])


def repeated(bits):
    """Whether two or more of ``bits`` are set, as a balanced tree of (any set, two set) pairs."""
    def combine(left, right):
        return left[0] | right[0], left[1] | right[1] | (left[0] & right[0])
    return _pairwise(combine, [(Value.cast(bit), Const(0, 1)) for bit in bits] or [(Const(0, 1),) * 2])[1]


def mux_tree(values: list, index):
    """``values[index]`` as a tree of 2:1 multiplexers on the bits of ``index`` (LSB first); an
    index past the list gives its last value. (Not an ``Array``: Yosys makes a ``switch`` of
    constants a ROM, a memory whose contents a k-induction proof does not hold to its init.)"""
    index = Value.cast(index)
    level = list(values)
    for bit in range(len(index)):
        level = [Mux(index[bit], level[i + 1], level[i]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]


def one_hot(value, width: int):
    """``1 << value`` on ``width`` bits (a decoder: bit ``q`` is ``value == q``)."""
    return Cat(*(value == q for q in range(width)))
