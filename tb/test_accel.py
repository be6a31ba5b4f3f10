"""cocotb regression of the accelerator top level, end to end (SPEC §6).

One generic test body, :func:`run_layer`, streams one stimulus layer through the simulated
accelerator and checks every result integer against the golden model; ``cocotb.parametrize``
crosses it with the stimulus kind and with idle cycles on the inputs and back-pressure on the
results (as cocotbext-axi's own tests cross ``idle_inserter`` and ``backpressure_inserter``).
The launcher chooses the crossing (:func:`cross`): every idle × back-pressure pair for some kinds,
the stress pair (both random) for the others, so each configuration stays within its time budget.
More tests: a reset in the middle of a layer followed by a clean rerun, resets just as a layer
header and a pass boundary's header are taken followed by a layer under heavy and cyclic pauses,
and layers of different shapes back to back without a reset. Every test ends by checking that the
core drained (no result beat beyond those due), ``microscopiq sim``'s layer too.

Run through :func:`microscopiq.tb.runner.run_cocotb` (tests/tb/test_accel_cocotb.py, ``make sim``,
``microscopiq sim``); the parameters arrive as JSON (:func:`~microscopiq.tb.runner.cocotb_params`):

``config``
    :meth:`AccelConfig.to_json` of the generated Verilog.
``seed``
    Base seed; each case derives its own from it and prints it.
``cases``
    ``[kind, idle, backpressure]`` triples for :func:`run_layer`: a stimulus kind (a key of
    :data:`microscopiq.tb.stimulus.GENERATORS`) and the pause patterns (keys of
    :data:`~microscopiq.tb.accel_tb.PAUSES`) of the input streams and of the result stream.
    :func:`cross` builds the usual lists.
``shape``
    ``{"n": .., "k": .., "m": ..}`` of the layers (corners adjust ``k`` where they need to).
``extras``
    False to run only :func:`run_layer` (no reset and back-to-back tests).
``boundary_resets``
    True to run :func:`reset_at_boundary` too (the regression does on the smallest preset).
``check_cycles``
    False to report, not assert, the cycle model (the benchmark tabulates both).
``soc_ports``
    The manifest's ``soc_ports`` when the Verilog has SoC ports (``aclk``/``aresetn``, padded
    ``tdata``); absent for the plain top level.
``stats``
    Optional path: one JSON line per layer run (kind, cycles, MACs) is appended there.
"""

from __future__ import annotations

import dataclasses
import json
import zlib

import cocotb
import numpy as np

from ..config import AccelConfig
from ..hdl.layouts import Fault
from ..hdl.soc import SocPorts
from ..host import packed_stream, stream_format
from . import stimulus
from .accel_tb import TB, Scoreboard, pause_generator, saturation
from .runner import cocotb_params

PARAMS = cocotb_params()
CFG = AccelConfig.from_json(PARAMS["config"]) if "config" in PARAMS else None
SEED = int(PARAMS.get("seed", 1))
#: The generated top level's port options (the manifest's ``soc_ports``).
PORTS = SocPorts(**PARAMS.get("soc_ports", {}))
#: cocotb names a parameter longer than 10 characters by its index; cocotb.Param keeps it readable.
CASES = [tuple(cocotb.Param(value, name=value) for value in case)
         for case in PARAMS.get("cases", [("random", "none", "none")])]
SHAPE = {"n": 16, "k": 128, "m": 6, **PARAMS.get("shape", {})}
#: ``microscopiq sim`` runs one packed layer (``layer_file``) and skips the regression tests.
LAYER_FILE = PARAMS.get("layer_file")
#: ``extras: false`` (the benchmark) runs only :func:`run_layer`.
EXTRAS = bool(PARAMS.get("extras", True)) and not LAYER_FILE
BOUNDARY_RESETS = EXTRAS and bool(PARAMS.get("boundary_resets", False))


def cross(full_kinds, stress_kinds, patterns=("none", "random")) -> list[list[str]]:
    """``cases``: every (idle, back-pressure) pair of ``patterns`` for ``full_kinds``, and idle and
    back-pressure both ``patterns[-1]`` for ``stress_kinds``."""
    pairs = [(idle, back) for idle in patterns for back in patterns]
    return ([[kind, idle, back] for kind in full_kinds for idle, back in pairs]
            + [[kind, patterns[-1], patterns[-1]] for kind in stress_kinds])


def case_seed(*parts) -> int:
    """A seed for one case: the base seed mixed with the case's knobs (stable across runs)."""
    return SEED * 1_000_003 + zlib.crc32("/".join(map(str, parts)).encode()) % 1_000_003


def make_case(kind: str, seed: int, **shape) -> stimulus.Case:
    """The ``kind`` case in this configuration, with the corners' own shape needs met."""
    dims = {**SHAPE, **shape}
    n, k, m = dims["n"], dims["k"], dims["m"]
    group = CFG.fmt.group
    if kind == "saturation":
        k = group + max(k % group, CFG.rows)          # two K-groups
    elif kind == "pair_positions":
        k = max(k, CFG.fmt.ublock * (CFG.fmt.ublock - 1))
    return stimulus.build_case(kind, CFG, n, k, m, seed)


def record(**fields) -> None:
    """Append one JSON line to the ``stats`` file, if one was given."""
    if PARAMS.get("stats"):
        with open(PARAMS["stats"], "a") as handle:
            handle.write(json.dumps(fields) + "\n")


async def check_layer(tb: TB, kind: str, case: stimulus.Case, scoreboard: Scoreboard) -> int:
    """Run ``case``, score it, log and record the cycles; return the cycles."""
    tb.log.info("layer %s", case.name)
    before, wrong = scoreboard.checked, len(scoreboard.mismatches)
    run = await tb.run_layer(case)
    found = scoreboard.check(case, run.results)
    predicted = stream_format.predict_cycles(CFG, case.layer, case.tokens)
    tb.log.info("  %d cycles (predicted %d), %d result beats, %d integers checked, %d wrong",
                run.cycles, predicted, run.beats, scoreboard.checked - before, len(found))
    outputs, overflowed = saturation(case, run.results)
    record(kind=kind, name=case.name, cycles=run.cycles, predicted=predicted, macs=case.macs,
           checked=scoreboard.checked - before, result_integers=case.result_integers, mismatches=len(scoreboard.mismatches) - wrong,
           first_mismatch=str(found[0]) if found else "",
           outputs=outputs, overflowed=overflowed)
    # The cycle model is a contract too: exact whenever every stream is always valid and ready.
    if tb.free_running and not found and PARAMS.get("check_cycles", True):
        assert run.cycles == predicted, (
            f"{case.name}: {run.cycles} cycles from the first weights beat to the last result beat "
            f"(free-running streams), stream_format.predict_cycles says {predicted}")
    return run.cycles


@cocotb.test(skip=bool(LAYER_FILE))
@cocotb.parametrize((("kind", "idle", "backpressure"), CASES))
async def run_layer(dut, kind: str, idle: str, backpressure: str):
    """One layer of stimulus ``kind`` under the given input idle and output back-pressure patterns."""
    seed = case_seed(kind, idle, backpressure)
    tb = TB(dut, CFG, PORTS)
    tb.set_idle_generator(pause_generator(idle, seed), pause_generator(idle, seed + 1))
    tb.set_backpressure_generator(pause_generator(backpressure, seed + 2))
    await tb.reset()
    scoreboard = Scoreboard(CFG)
    await check_layer(tb, kind, make_case(kind, seed), scoreboard)
    await tb.drained()
    scoreboard.assert_clean()


@cocotb.test(skip=not EXTRAS)
async def reset_mid_layer(dut):
    """Reset while a layer is streaming (weights, activations and results all in flight), then a
    clean layer must come out exact: no state of the aborted layer survives the reset."""
    seed = case_seed("reset")
    tb = TB(dut, CFG, PORTS)
    tb.set_backpressure_generator(pause_generator("random", seed))
    await tb.reset()
    aborted = make_case("random", seed)
    tb.start_layer(aborted)
    # Part-way through: some tiles loaded, some results out and some held by back-pressure.
    await tb.cycles(stream_format.predict_cycles(CFG, aborted.layer, aborted.tokens) // 2)
    await tb.reset()
    tb.set_backpressure_generator(None)
    scoreboard = Scoreboard(CFG)
    await check_layer(tb, "reset", make_case("random", seed + 1), scoreboard)
    await tb.drained()
    scoreboard.assert_clean()


@cocotb.test(skip=not BOUNDARY_RESETS)
@cocotb.parametrize(("where", ["header", "pass"]))
async def reset_at_boundary(dut, where: str):
    """Reset just as a layer header is taken: the first one (``header``), or the second pass's, at
    the pass boundary of a two-pass layer (``pass``: the first pass's results may still be draining).
    The next layer runs under pauses on every stream (``heavy`` after the header reset, ``cycle``
    after the pass-boundary one) and must come out exact, with nothing left over."""
    seed = case_seed("reset", where)
    tb = TB(dut, CFG)
    await tb.reset()
    aborted = make_case("random", seed, n=CFG.cols, k=CFG.rows, m=CFG.max_tokens + 1)
    weights, _ = stream_format.encode_layer(CFG, aborted.layer, aborted.x)
    first_pass = next(index for index, beat in enumerate(weights) if beat.last) + 1
    tb.start_layer(aborted)
    await tb.weight_beats_taken(1 if where == "header" else first_pass + 1)
    await tb.reset()
    pauses = "heavy" if where == "header" else "cycle"
    tb.set_idle_generator(pause_generator(pauses, seed), pause_generator(pauses, seed + 1))
    tb.set_backpressure_generator(pause_generator(pauses, seed + 2))
    scoreboard = Scoreboard(CFG)
    await check_layer(tb, f"reset-{where}", make_case("random", seed + 1), scoreboard)
    await tb.drained()
    scoreboard.assert_clean()


@cocotb.test(skip=not EXTRAS)
async def back_to_back_layers(dut):
    """Layers of different shapes and modes one after another without a reset: tile, pass and
    token counters and the sticky flag must restart with every layer."""
    seed = case_seed("back-to-back")
    tb = TB(dut, CFG, PORTS)
    await tb.reset()
    scoreboard = Scoreboard(CFG)
    n, k, m = SHAPE["n"], SHAPE["k"], SHAPE["m"]
    sequence = [("saturation", {}), ("random", {"n": n + CFG.cols, "m": m + 3}),
                ("random_uniform", {"k": k + CFG.rows}), ("all_inlier", {"n": 3, "k": 5, "m": 1})]
    for index, (kind, shape) in enumerate(sequence):
        await check_layer(tb, kind, make_case(kind, seed + index, **shape), scoreboard)
    await tb.drained()
    scoreboard.assert_clean()


def _version(beats, layer):
    """The pass header's ``version`` field set to 15 (the first beat holds it at bits 0-3)."""
    return [stream_format.Beat(beats[0].data | 0xF, beats[0].last)] + beats[1:]


def _truncated(beats, layer):
    """The pass's last beat dropped, ``tlast`` moved onto the one before."""
    return beats[:-2] + [stream_format.Beat(beats[-2].data, True)]


def _overrun(beats, layer):
    """One zero beat after the pass's last, carrying its ``tlast``."""
    return beats[:-1] + [stream_format.Beat(beats[-1].data, False), stream_format.Beat(0, True)]


def _with_field(beats, offset: int, width: int, value: int):
    """The pass's beats with the ``width`` bits at stream bit ``offset`` set to ``value``."""
    bus = CFG.weight_bus
    word = sum(beat.data << (i * bus) for i, beat in enumerate(beats))
    word = word & ~(((1 << width) - 1) << offset) | value << offset
    return [stream_format.Beat(word >> (i * bus) & ((1 << bus) - 1), beat.last) for i, beat in enumerate(beats)]


def _pairs(beats, layer):
    """The first outlier pair of the pass (the field after the first record's ``X``) names slot 0 as
    both outlier and partner."""
    offsets, widths = packed_stream.field_offsets(CFG, layer, "records")
    assert len(offsets) >= 2, "the malformed case has no outlier record to spoil"
    return _with_field(beats, int(offsets[1]), int(widths[1]), 0)


def _exponent(beats, layer):
    """The pass's first inlier exponent ``E`` set to -128, below every row minimum ``E_min``."""
    assert layer.exps.min() > -128, "the malformed case has an exponent of -128 already"
    offsets, widths = packed_stream.field_offsets(CFG, layer, "exps")
    return _with_field(beats, int(offsets[0]), int(widths[0]), 0x80)


@cocotb.test(skip=not EXTRAS)
async def malformed_weight_streams(dut):
    """A refused header, a truncated pass, an overrun pass, a pair naming one slot twice and an
    exponent below its row minimum (docs/hardware.md, "Malformed weight streams"), each followed by
    a good layer: a refused pass is one result beat marked HEADER, a
    faulty pass keeps all its result beats and marks its last, the sticky ``fault`` port holds the
    first fault, and every good layer after them is exact — no hang, nothing carried over."""
    seed = case_seed("malformed")
    tb = TB(dut, CFG, PORTS)
    await tb.reset()
    scoreboard = Scoreboard(CFG)
    due = stream_format.result_beat_count
    for index, (spoil, fault) in enumerate(((_version, Fault.HEADER), (_truncated, Fault.TRUNCATED),
                                            (_overrun, Fault.OVERRUN), (_pairs, Fault.PAIRS),
                                            (_exponent, Fault.EXPONENT))):
        case = make_case("random", seed + 2 * index, m=min(SHAPE["m"], CFG.max_tokens))
        beats = await tb.run_malformed(case, spoil)
        marks = [Fault(beat.fault) for beat in beats]
        want = 1 if fault == Fault.HEADER else due(CFG, case.layer, case.tokens)
        assert len(beats) == want and marks[-1] == fault, (
            f"{spoil.__name__}: {len(beats)} result beats (expected {want}), last marked {marks[-1].name} "
            f"(expected {fault.name})")
        assert Fault(int(dut.fault.value)) == Fault.HEADER, f"fault port {int(dut.fault.value)} after {spoil.__name__}"
        # The malformed pass's last beats may still be on their way in after its results came out
        # (a refused pass's beat leaves once its activations are dropped): the good layer's cycles
        # count from its own first beat.
        await tb.weights.wait()
        await tb.act.wait()
        await tb.cycles(4)
        await check_layer(tb, f"after-{spoil.__name__.strip('_')}", make_case("random", seed + 2 * index + 1),
                          scoreboard)
    await tb.drained()
    scoreboard.assert_clean()


@cocotb.test(skip=not LAYER_FILE)
async def layer_file(dut):
    """One packed layer (``microscopiq sim``) with ``shape["m"]`` random activations, or the integer
    activations in ``activations_file`` (``.npy``, already quantized by ``microscopiq sim``)."""
    from ..quant.pack import load_layer
    layer = load_layer(LAYER_FILE)
    if PARAMS.get("activations_file"):
        x = np.load(PARAMS["activations_file"])
    else:
        x = stimulus.random_activations(CFG.fmt, SHAPE["m"], layer.k, np.random.default_rng(SEED))
    case = stimulus.Case(f"{LAYER_FILE} (n={layer.n} k={layer.k} m={x.shape[0]} seed={SEED})", layer, x, SEED)
    tb = TB(dut, CFG, PORTS)
    await tb.reset()
    scoreboard = Scoreboard(CFG)
    await check_layer(tb, "layer_file", case, scoreboard)
    await tb.drained()
    scoreboard.assert_clean()


@cocotb.test(skip=not EXTRAS)
async def scoreboard_catches_a_wrong_weight(dut):
    """The check can fail: stream a layer with one inlier code changed and score the results
    against the unchanged layer. Exactly the outputs of that weight's row must be reported."""
    seed = case_seed("wrong-weight")
    tb = TB(dut, CFG, PORTS)
    await tb.reset()
    case = make_case("all_inlier", seed)
    layer = case.layer
    codes = layer.codes.copy()
    row, col = layer.n - 1, layer.k // 2
    codes[row, col] = (int(codes[row, col]) + 1) % (1 << CFG.fmt.wbits)
    wrong = stimulus.Case(case.name, dataclasses.replace(layer, codes=codes), case.x, case.seed)
    run = await tb.run_layer(wrong)
    found = Scoreboard(CFG).check(case, run.results)
    await tb.drained()
    wrong_outputs = {m.index for m in found if m.what == "y"}
    expected = {(m, row) for m in range(case.tokens) if case.x[m, col] != 0}
    assert wrong_outputs == expected, (wrong_outputs, expected)
    assert all(m.what == "y" for m in found)
