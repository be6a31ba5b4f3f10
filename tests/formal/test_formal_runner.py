"""flow/formal.py: the sby task it writes, its verdicts (pass, fail with a trace, cover), refusals."""

from __future__ import annotations

import pytest
from amaranth import Elaboratable, Module, Mux, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Cover, ResetSignal

from microscopiq.flow.formal import main, prove, sby_config


class Counter(Elaboratable):
    """A counter that wraps at ``limit``; asserts it stays below ``bound``."""

    def __init__(self, limit: int, bound: int):
        self.limit, self.bound = limit, bound

    def elaborate(self, platform):
        m = Module()
        m.d.comb += ResetSignal().eq(0)
        count = Signal(4)
        m.d.sync += count.eq(Mux(AnySeq(1), Mux(count == self.limit, 0, count + 1), count))
        m.d.comb += [Assert(count < self.bound), Cover(count == self.limit)]
        return m


def test_sby_config_reads_the_harness():
    text = sby_config("prove", 5, "smtbmc boolector", 60)
    assert "[options]\nmode prove\ndepth 5\ntimeout 60\n" in text
    assert "read_rtlil top.il" in text and "prep -top top" in text


@pytest.mark.parametrize("mode, depth", [("bogus", 1), ("bmc", 0)])
def test_bad_mode_or_depth_is_refused(mode, depth):
    with pytest.raises(ValueError, match=r"^(mode must be one of prove, bmc, cover|depth must be a positive integer)"):
        sby_config(mode, depth, "smtbmc boolector", None)


def test_bad_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^name must be letters, digits"):
        prove("a b", Counter(3, 4), depth=1, root=tmp_path)


def test_induction_proves_a_register_property(tmp_path):
    result = prove("counter", Counter(3, 4), mode="prove", depth=2, root=tmp_path)
    assert result.status == "PASS", result.summary()
    assert result.trace is None and (tmp_path / "counter" / "counter.sby").exists()


def test_failure_names_its_counterexample(tmp_path):
    # The counter reaches 3 in 3 steps: a bound of 3 fails, and the trace shows it.
    result = prove("counter", Counter(3, 3), mode="bmc", depth=5, root=tmp_path)
    assert result.status == "FAIL", result.summary()
    assert result.trace is not None and result.trace.suffix == ".vcd" and result.trace.exists()
    assert "counterexample" in result.summary()


def test_cover_needs_the_depth(tmp_path):
    assert prove("reach", Counter(3, 4), mode="cover", depth=4, root=tmp_path).passed
    assert not prove("short", Counter(3, 4), mode="cover", depth=3, root=tmp_path).passed


def test_cli_refuses_an_unknown_proof(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["nonesuch"])
    assert stop.value.code == 2
    assert "unknown proof 'nonesuch'" in capsys.readouterr().err


def test_internal_names_one_signal_or_refuses():
    from amaranth.hdl import Fragment
    from microscopiq.flow.formal import FormalError, elaborated, internal, subfragment
    from microscopiq.hdl.exp_decoder import ExpDecoder

    fragment = elaborated(ExpDecoder(2))
    assert isinstance(fragment, Fragment) and internal(fragment, "minima").name == "minima"
    with pytest.raises(FormalError, match=r"^0 signals named 'nonesuch' assigned in the top; the harness needs one"):
        internal(fragment, "nonesuch")
    with pytest.raises(FormalError, match=r"^no submodule 'fifo' \(of fifo\) in the design"):
        subfragment(fragment, "fifo")
