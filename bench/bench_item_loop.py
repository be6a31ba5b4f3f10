"""The weight unpacker's item loop alone, two ways (issue #14 item 3: the bound on Fmax it sets).

The unpacker (hdl/unpacker.py) hands one item a cycle off the front of a bit stream, each item as
long as a register says (``need``). Its buffer is a **shift-register window**: the item is always at
bit 0, so parsing it shifts the whole buffer right by ``need`` and a beat lands behind what is kept,
one cycle, a loop through the buffer's own multiplexers. This bench places that loop with nothing
else around it, and beside it the same job as a **ring window**: beats written into ``W``-bit
slots of a ring, a read pointer (the only loop: ``pointer += need``) and the item read off the ring
in two registered stages (a rotation by the pointer's high bits, then its low bits), so that the
selection is split over two cycles at the price of two cycles of latency.

    python bench/bench_item_loop.py                            # Yosys counts, 8x8, b = 4, W = 32
    python bench/bench_item_loop.py --place --seeds 1,2,3      # + nextpnr, ECP5-45k out of context

Sizes are the unpacker's own (:class:`~microscopiq.hdl.unpacker.UnpackerSizes`: ``capacity`` bits
of buffer, items up to ``item_bits``), and the shift is the unpacker's ``_shifted``, so the first
kernel's loop is the unpacker's. Every port is registered inside the kernel, so every path
nextpnr times runs between flip-flops. tests/bench/test_bench_item_loop.py checks both kernels
hand out the same items.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decoders import add_block_arguments, seeds_of, synth  # noqa: E402  (the front-end bench's)

from microscopiq.config import AccelConfig, FormatConfig  # noqa: E402
from microscopiq.hdl.unpacker import UnpackerSizes, _shifted  # noqa: E402


class _ItemLoop(wiring.Component):
    """Beats in (``data`` when ``take``), the front item out (``item``, valid for one cycle
    ``latency`` cycles after a cycle with ``parse``); ``next_need`` is the length of the item after
    the front one, sampled at ``parse`` (the unpacker's map queue gives it). The driver keeps the
    unpacker's rules: a beat only while ``capacity - W`` bits or fewer are held, a parse only of a
    complete item."""

    latency: int

    def __init__(self, sizes: UnpackerSizes, first_need: int):
        self.bus_bits, self.capacity, self.item_bits = sizes.bus_bits, sizes.capacity, sizes.item_bits
        self.first_need = first_need
        super().__init__({"data": In(self.bus_bits), "take": In(1), "parse": In(1),
                          "next_need": In(range(self.item_bits + 1)),
                          "item": Out(self.item_bits), "item_valid": Out(1)})

    def _inputs(self, m):
        """The ports through one register each, and ``need``, the front item's length (the
        registered ``next_need`` is the next one's while ``parse``)."""
        data, take, parse = Signal(self.bus_bits), Signal(), Signal()
        next_need = Signal.like(self.next_need)
        m.d.sync += [data.eq(self.data), take.eq(self.take), parse.eq(self.parse), next_need.eq(self.next_need)]
        need = Signal.like(self.next_need, init=self.first_need)
        with m.If(parse):
            m.d.sync += need.eq(next_need)
        return data, take, parse, need, next_need


class ShiftWindow(_ItemLoop):
    """The unpacker's buffer: the front item at bit 0, the buffer shifted by ``need`` as it is parsed."""

    latency = 1

    def elaborate(self, platform):
        m = Module()
        beat, take, parse, need, next_need = self._inputs(m)
        buffer = Signal(self.capacity)
        fill = Signal(range(self.capacity + 1))
        # ``kept = fill - need``, a register as the unpacker's ``spare`` (used only where the item
        # is complete), so that both shifters start from registers.
        kept = Signal.like(fill)
        next_fill = Mux(parse, kept, fill) + Mux(take, self.bus_bits, 0)
        at_fill = _shifted(beat, fill, self.capacity, left=True)
        at_kept = _shifted(beat, kept, self.capacity, left=True)
        consumed = _shifted(buffer, need, self.capacity, left=False) | Mux(take, at_kept, 0)
        m.d.sync += [buffer.eq(Mux(parse, consumed, buffer | Mux(take, at_fill, 0))),
                     fill.eq(next_fill), kept.eq(next_fill - Mux(parse, next_need, need)),
                     self.item.eq(buffer[:self.item_bits]), self.item_valid.eq(parse)]
        return m


class RingWindow(_ItemLoop):
    """A ring of ``W``-bit slots (a power of two of them, at least ``capacity`` bits), a read
    pointer, and the item read in two stages: rotated by the pointer's high bits, then its low bits."""

    latency = 2

    def __init__(self, sizes: UnpackerSizes, first_need: int):
        super().__init__(sizes, first_need)
        # The least power of two of slots holding ``capacity`` bits, so that the pointer wraps freely.
        self.slots = 1 << (-(-self.capacity // self.bus_bits) - 1).bit_length()
        self.ring_bits = self.slots * self.bus_bits
        self.fine_bits = (self.ring_bits - 1).bit_length() // 2     # the second stage's shift

    def elaborate(self, platform):
        m = Module()
        beat, take, parse, need, _ = self._inputs(m)
        ring = Signal(self.ring_bits)
        write_slot = Signal(range(self.slots))
        pointer = Signal(range(self.ring_bits))
        with m.If(take):
            m.d.sync += [ring.word_select(write_slot, self.bus_bits).eq(beat),
                         write_slot.eq(write_slot + 1)]
        with m.If(parse):
            m.d.sync += pointer.eq(pointer + need)   # wraps: the ring is a power of two of bits
        step = 1 << self.fine_bits
        width = self.item_bits + step - 1
        twice = Cat(ring, ring)
        coarse, fine, first_valid = Signal(width), Signal(self.fine_bits), Signal()
        m.d.sync += [coarse.eq(Array(twice[k * step:][:width] for k in range(self.ring_bits // step))
                               [pointer[self.fine_bits:]]),
                     fine.eq(pointer[:self.fine_bits]), first_valid.eq(parse),
                     self.item.eq(_shifted(coarse, fine, self.item_bits, left=False)),
                     self.item_valid.eq(first_valid)]
        return m


#: The kernels, in table order: (name, class, what it is).
KERNELS = (("shift_window", ShiftWindow, "the unpacker's shift-register window (one cycle)"),
           ("ring_window", RingWindow, "a ring and a two-stage read (two cycles)"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_block_arguments(parser, device="45k")
    parser.add_argument("--out", type=Path, default=Path("build/bench-item-loop"))
    args = parser.parse_args(argv)
    seeds = seeds_of(parser, args)
    cfg = AccelConfig(fmt=FormatConfig(wbits=args.wbits), rows=args.rows, cols=args.cols, weight_bus=args.bus)
    sizes = UnpackerSizes(cfg, args.bus)
    start = time.perf_counter()
    work = args.out / f"r{args.rows}-c{args.cols}-b{args.wbits}-w{args.bus}-{args.device}"
    rows = [dict(synth(name, kind(sizes, sizes.item_bits), work / name, "abc", args.place, args.device, seeds),
                 what=what, latency=kind.latency) for name, kind, what in KERNELS]
    print(f"Command: `python bench/bench_item_loop.py {' '.join(argv or sys.argv[1:])}` (R = {args.rows}, "
          f"C = {args.cols}, b = {args.wbits}, W = {args.bus}: buffer {sizes.capacity} bits, items up to "
          f"{sizes.item_bits}; ABC LUT mapping; {time.perf_counter() - start:.0f} s)\n")
    seeds_shown = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
    print(f"| kernel | LUT4 (logic + 2·carry) | FF | latency | Fmax MHz ({args.device}, ooc, {seeds_shown}) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['what']} | {r['luts']} ({r['logic']} + 2·{r['carries']}) | {r['ffs']} | {r['latency']} | {r['fmax']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
