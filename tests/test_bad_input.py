"""Bad input never costs a user their work (issue 17, docs/verification.md "Bad input").

:data:`ROWS` is the table: a ``microscopiq`` command line run in a folder of small prepared files,
the exit status it must give, a regex the one ``error:`` line of stderr must match, and nothing in
the folder may change (no output, no staging folder, no build folder). Every expensive entry point
(simulator build, quantizers, model loading, elaboration, Yosys/nextpnr) is replaced by one that
fails the test, so each row also proves that its refusal comes before any work.

The defect classes of the issue: (1) sim checks before building, (2) eval checks --out first,
(3) an existing --out with a read-only parent, (4) corrupt weight files, (5) saturation shown,
(6) signals, (7) synth all or nothing, (8) upper bounds, (9) out-of-range numbers, (10) umask,
(11) smaller ones (--config not an object, empty --out, a folder named like an output file,
messages naming the option). Classes 3, 5, 6 and 10 succeed or need a process, so they are tests
of their own below the table.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from microscopiq import outputs
from microscopiq.cli import main
from microscopiq.config import PRESETS, FormatConfig
from microscopiq.quant.gptq import PEAK_MAX, PEAK_MIN
from microscopiq.quant.models import quantize_matrix
from microscopiq.quant.pack import save_layer

REPO = Path(__file__).resolve().parents[1]

#: (id, class, command line, exit status, regex on the error line). Paths are relative to the
#: folder :func:`inputs` prepares.
ROWS = [
    # (1) sim: every check before the simulator is built
    ("sim-k-over-max-k", 1, "sim --layer q4/weight.msq --config smallk.json", 2,
     r"--layer 'q4/weight.msq' does not fit --config: layer k=64 exceeds max_k=32$"),
    ("sim-n-over-max-n", 1, "sim --layer q4/weight.msq --config smalln.json", 2,
     r"does not fit --config: layer n=8 exceeds max_n=4$"),
    ("sim-msq-on-recon-none", 1, "sim --layer q4/weight.msq --config norecon.json", 2,
     r"does not fit --config: a MicroScopiQ layer needs ReCoN: this instance has recon 'none'"),
    ("sim-seed-negative", 1, "sim --layer q4/weight.msq --seed -1", 2,
     r"--seed must be an integer from 0 to 4294967295, not -1$"),
    ("sim-seed-too-big", 1, "sim --layer q4/weight.msq --seed 4294967296", 2,
     r"--seed must be an integer from 0 to 4294967295, not 4294967296$"),
    ("sim-tokens-zero", 1, "sim --layer q4/weight.msq --tokens 0", 2, r"--tokens must be >= 1, not 0$"),
    ("sim-tokens-too-many", 1, "sim --layer q4/weight.msq --tokens 1000000000", 2,
     r"--tokens must be at most 65536, not 1000000000$"),
    ("sim-format-mismatch", 1, "sim --layer q4/weight.msq --config 4x8-b2", 2,
     r"--layer 'q4/weight.msq' has format .*wbits=4.*, the accelerator .*wbits=2.*: choose a --config"),
    ("sim-truncated-layer", 1, "sim --layer trunc.msq", 2, r"--layer trunc.msq: file is truncated: 40 bytes"),
    # (2) eval: --out and the formats before the evaluation
    ("eval-out-is-a-file", 2, "eval --out w.npz", 2,
     r"--out: cannot write to 'w.npz': it exists and is not a folder$"),
    ("eval-out-read-only", 2, "eval --out ro/report", 2,
     r"--out: cannot write to 'ro/report': '.*/ro' is not a writable folder$"),
    ("eval-out-folder-in-the-way", 2, "eval --out clash", 2,
     r"--out: cannot write 'clash/eval.json': a folder of that name is in the way$"),
    ("eval-ublock", 2, "eval --out report --ublock 3", 2, r"ublock must be a power of two >= 2, not 3$"),
    ("eval-msq-b8", 2, "eval --out report --methods microscopiq --wbits 8", 2,
     r"method microscopiq needs wbits 2, 3 or 4 \(the MSQ format\), not 8$"),
    ("eval-texts-zero", 2, "eval --out report --eval-texts 0", 2, r"--eval-texts must be >= 1, not 0$"),
    # (4) corrupt or unreadable weight files: one line naming the file
    ("npz-truncated", 4, "quantize --weights trunc.npz --method rtn --wbits 4 --out q", 2,
     r"weights file 'trunc.npz' is not a readable .npz: File is not a zip file$"),
    ("npz-bit-flipped", 4, "quantize --weights flipped.npz --method rtn --wbits 4 --out q", 2,
     r"weights file 'flipped.npz' is not a readable .npz: "),
    ("npy-renamed-npz", 4, "quantize --weights renamed.npz --method rtn --wbits 4 --out q", 2,
     r"weights file 'renamed.npz' is not a readable .npz: it holds a single array \(a .npy file\?\)"),
    ("npz-not-numpy", 4, "quantize --weights text.npz --method rtn --wbits 4 --out q", 2,
     r"weights file 'text.npz' is not a readable .npz: not a NumPy .npz archive$"),
    ("pt-garbage", 4, "quantize --weights garbage.pt --method rtn --wbits 4 --out q", 2,
     r"weights file 'garbage.pt' is not a readable .pt: "),
    ("weights-missing", 4, "quantize --weights nope.npz --method rtn --wbits 4 --out q", 2,
     r"weights file 'nope.npz' does not exist$"),
    ("weights-a-folder", 4, "quantize --weights q4 --method rtn --wbits 4 --out q", 2,
     r"weights file 'q4' is not a file$"),
    ("weights-suffix", 4, "quantize --weights smallk.json --method rtn --wbits 4 --out q", 2,
     r"weights file 'smallk.json' must end in .npz or .pt$"),
    ("weights-no-key", 4, "quantize --weights nokey.npz --method rtn --wbits 4 --out q", 2,
     r"weights file 'nokey.npz' has no 'weight' entry \(found: w\)$"),
    ("weights-1d", 4, "quantize --weights vector.npz --method rtn --wbits 4 --out q", 2,
     r"weights file 'vector.npz': weight must be a 2-D matrix .* got shape \(64,\)$"),
    # (7) synth: every parameter before RTL is written or a tool runs
    ("synth-timeout-zero", 7, "synth --design pe --timeout 0 --out s", 2,
     r"timeout must be a number of seconds > 0, not 0.0$"),
    ("synth-timeout-negative", 7, "synth --timeout -5 --out s", 2, r"timeout must be .* not -5.0$"),
    ("synth-package", 7, "synth --package FOO --out s", 2,
     r"package for ecp5 25k must be one of CABGA256, CABGA381, CSFBGA285, TQFP144, not 'FOO'$"),
    ("synth-package-of-other-device", 7, "synth --device 85k --package TQFP144 --out s", 2,
     r"package for ecp5 85k must be one of .*, not 'TQFP144'$"),
    ("synth-preset", 7, "synth --preset nope --out s", 2, r"argument --preset: invalid choice: 'nope' \(choose from .*\)$"),
    ("synth-seed", 7, "synth --seed -1 --out s", 2, r"seeds must be distinct non-negative integers separated by commas, like 1,2,3, not '-1'$"),
    ("synth-seed-range", 7, "synth --seed 1,2147483648 --out s", 2, r"seed must be an integer from 0 to 2147483647, not 2147483648$"),
    ("synth-freq-nan", 7, "synth --freq nan --out s", 2, r"freq_mhz must be a number in \(0, 1000\], not nan$"),
    ("synth-rows", 7, "synth --rows 3 --out s", 2, r"group \(128\) must be a multiple of rows"),
    ("synth-pe-wbits", 7, "synth --design pe --wbits 5 --out s", 2, r"wbits must be one of 2, 3, 4, 8, not 5$"),
    # (8) upper bounds where the format has them
    ("ublock-u16", 8, "quantize --weights w.npz --method rtn --wbits 4 --ublock 65536 --out q", 2,
     r"ublock must be at most 128, not 65536$"),
    ("group-2^32", 8, "quantize --weights w.npz --method rtn --wbits 4 --group 4294967296 --out q", 2,
     r"group must be at most 65536, not 4294967296$"),
    ("k-100000", 8, "quantize --weights wide.npz --method rtn --wbits 4 --out q", 2,
     r"weights file 'wide.npz': weight has K = 100000 input columns, at most 16384"),
    ("max-tokens-2^30", 8, "generate accel --max-tokens 1073741824 --out g", 2,
     r"max_tokens must be at most 4096, not 1073741824$"),
    ("rows-cols-128", 8, "generate accel --rows 128 --cols 128 --out g", 2, r"rows must be at most 64, not 128$"),
    ("max-k-2^40", 8, "generate accel --max-k 1099511627776 --out g", 2,
     r"max_k must be at most 4294967295, not 1099511627776$"),
    ("synth-rows-cols-128", 8, "synth --rows 128 --cols 128 --out s", 2, r"rows must be at most 64, not 128$"),
    # (9) numbers the format cannot represent: refused with the index and the value
    ("weights-x1e300", 9, "quantize --weights huge.npz --method microscopiq --wbits 4 --out q", 2,
     r"weight\[0, 3\] = 1e\+300 is the largest \|w\| of row 0, K-group 0: .* between 2\^-60 and 2\^60"),
    ("weights-x1e-300", 9, "quantize --weights tiny.npz --method gptq --wbits 4 --out q", 2,
     r"weight\[0, 3\] = 1e-300 is the largest \|w\| of row 0, K-group 0"),
    ("weights-subnormal", 9, "quantize --weights subnormal.npz --method rtn --wbits 4 --out q", 2,
     r"weight\[2, 5\] = 1e-40 is the largest \|w\| of row 2, K-group 0"),
    ("weights-nan", 9, "quantize --weights nan.npz --method rtn --wbits 4 --out q", 2,
     r"weights file 'nan.npz': weight has a NaN or Inf at \(1, 2\): nan$"),
    ("weights-inf", 9, "quantize --weights inf.npz --method rtn --wbits 4 --out q", 2,
     r"weight has a NaN or Inf at \(1, 2\): -inf$"),
    ("weights-complex", 9, "quantize --weights complex.npz --method rtn --wbits 4 --out q", 2,
     r"weights file 'complex.npz': weight must hold real numbers, not dtype complex128$"),
    ("weights-complex-pt", 9, "quantize --weights complex.pt --method rtn --wbits 4 --out q", 2,
     r"weights file 'complex.pt': weight must hold real numbers, not torch.complex64$"),
    ("weights-strings", 9, "quantize --weights strings.npz --method rtn --wbits 4 --out q", 2,
     r"weights file 'strings.npz': weight must hold real numbers, not dtype <U3$"),
    ("activations-nan", 9, "quantize --weights xnan.npz --method gptq --wbits 4 --out q", 2,
     r"weights file 'xnan.npz': 'activations' has a NaN or Inf at \(0, 1\): nan$"),
    ("activations-overflow", 9, "quantize --weights xhuge.npz --method gptq --wbits 4 --out q", 2,
     r"'activations' are too large: their Hessian 2XᵀX overflows float64 \(largest \|x\| is "
     r"activations\[0, 0\] = 1e\+200\)$"),
    ("quantize-budget-nan", 9, "quantize --weights w.npz --method rtn --wbits 2,4 --budget nan --out q", 2,
     r"--budget must be a finite number of bits per weight, not nan$"),
    ("quantize-budget-below-narrowest-b", 9, "quantize --weights w.npz --method rtn --wbits 2,4 --budget 1.5 --out q",
     2, r"--budget 1.5 is below the narrowest --wbits 2: no plan fits \(every layer spends at least b bits"),
    ("quantize-wbits-list-b8-msq", 9,
     "quantize --weights w.npz --method microscopiq --wbits 2,8 --budget 3 --out q", 2,
     r"method microscopiq needs wbits 2, 3 or 4 \(the MSQ format\), not 8$"),
    # (11) the smaller ones
    ("sim-config-array", 11, "sim --layer q4/weight.msq --config list.json", 2,
     r"--config file 'list.json' does not hold an accelerator configuration \(it holds an array, not a JSON object\)$"),
    ("sim-config-null", 11, "sim --layer q4/weight.msq --config null.json", 2, r"\(it holds null, not a JSON object\)$"),
    ("sim-config-not-json", 11, "sim --layer q4/weight.msq --config w.npz", 2,
     r"--config file 'w.npz' does not hold an accelerator configuration"),
    ("sim-layer-missing", 11, "sim --layer nope.msq", 2, r"--layer 'nope.msq' is not a file$"),
    ("sim-layer-not-msq", 11, "sim --layer w.npz", 2, r"--layer w.npz: not a packed layer: magic is"),
    ("quantize-out-empty", 11, "quantize --weights w.npz --method rtn --wbits 4 --out ''", 2,
     r"argument --out: must name a file or folder, not ''$"),
    ("eval-out-empty", 11, "eval --out ''", 2, r"argument --out: must name a file or folder, not ''$"),
    ("generate-out-empty", 11, "generate accel --out ''", 2, r"--out must be a folder .* not ''"),
    ("synth-from-bad-manifest", 11, "synth --from badgen --out s", 2,
     r"'.*/badgen/manifest.json' is not a manifest written by 'microscopiq generate' \(TypeError: "),
    ("synth-out-empty", 11, "synth --out ''", 2, r"--out: the output path is empty"),
    ("quantize-out-folder-in-the-way", 11, "quantize --weights w.npz --method rtn --wbits 4 --out clash", 2,
     r"--out: cannot write 'clash/weight.msq': a folder of that name is in the way$"),
    ("quantize-budget-one-wbits", 11, "quantize --weights w.npz --method rtn --wbits 4 --budget 3 --out q", 2,
     r"--budget needs several --wbits values to choose from \(e.g. --wbits 2,4\), not 4$"),
    ("quantize-wbits-list-no-budget", 11, "quantize --weights w.npz --method rtn --wbits 2,4 --out q", 2,
     r"--wbits 2,4 needs --budget \(the average bits per weight to fit\)$"),
    ("quantize-wbits-repeated", 11, "quantize --weights w.npz --method rtn --wbits 2,2 --budget 3 --out q", 2,
     r"--wbits values must be distinct, not 2,2$"),
    ("quantize-wbits-not-integers", 11, "quantize --weights w.npz --method rtn --wbits 2,x --out q", 2,
     r"argument --wbits: must be an integer or comma-separated integers, not '2,x'$"),
    ("quantize-budget-refine", 11,
     "quantize --weights w.npz --method decoupleq --wbits 2,4 --budget 3 --refine-steps 5 --out q", 2,
     r"--refine-steps needs a single --wbits value, not 2,4$"),
    ("quantize-out-is-a-file", 11, "quantize --weights w.npz --method rtn --wbits 4 --out w.npz", 2,
     r"--out: cannot write to 'w.npz': it exists and is not a folder$"),
]


def _npz(path: Path, **arrays) -> None:
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder of small good and bad input files (the rows run in it)."""
    root = tmp_path_factory.mktemp("bad-input")
    rng = np.random.default_rng(17)
    w = rng.standard_normal((8, 64))
    _npz(root / "w.npz", weight=w)
    data = (root / "w.npz").read_bytes()
    (root / "trunc.npz").write_bytes(data[:300])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF                     # inside the member's data: a CRC error
    (root / "flipped.npz").write_bytes(bytes(flipped))
    np.save(root / "array.npy", w)
    (root / "renamed.npz").write_bytes((root / "array.npy").read_bytes())
    (root / "array.npy").unlink()
    (root / "text.npz").write_text("weight = [[1, 2], [3, 4]]\n")
    (root / "garbage.pt").write_bytes(b"\x00garbage" * 10)
    _npz(root / "nokey.npz", w=w)
    _npz(root / "vector.npz", weight=w[0])
    _npz(root / "wide.npz", weight=np.ones((1, 100_000)))
    for name, value in (("huge", 1e300), ("tiny", 1e-300)):
        scaled = np.zeros((8, 64))
        scaled[0, 3] = value
        _npz(root / f"{name}.npz", weight=scaled)
    subnormal = w.copy()
    subnormal[2, :] = 0.0
    subnormal[2, 5] = 1e-40
    _npz(root / "subnormal.npz", weight=subnormal)
    for name, value in (("nan", np.nan), ("inf", -np.inf)):
        bad = w.copy()
        bad[1, 2] = value
        _npz(root / f"{name}.npz", weight=bad)
    _npz(root / "complex.npz", weight=w * (1 + 1j))
    torch.save(torch.ones(8, 64, dtype=torch.complex64), root / "complex.pt")
    _npz(root / "strings.npz", weight=np.full((8, 64), "0.5"))
    x = rng.standard_normal((4, 64))
    x[0, 1] = np.nan
    _npz(root / "xnan.npz", weight=w, activations=x)
    _npz(root / "xhuge.npz", weight=w, activations=np.full((4, 64), 1e200))
    # A packed layer (n=8, k=64, b=4) and configurations it does not fit.
    (root / "q4").mkdir()
    save_layer(root / "q4" / "weight.msq", quantize_matrix("microscopiq", w, None, FormatConfig(wbits=4)))
    (root / "trunc.msq").write_bytes((root / "q4" / "weight.msq").read_bytes()[:40])
    base = PRESETS["8x8-b4"]
    for name, cfg in (("smallk", base.replace(max_k=32)), ("smalln", base.replace(max_n=4)),
                      ("norecon", base.replace(recon_share=0))):
        (root / f"{name}.json").write_text(json.dumps(cfg.to_json()))
    (root / "list.json").write_text("[1, 2]")
    (root / "badgen").mkdir()
    (root / "badgen" / "manifest.json").write_text("[1, 2]")
    (root / "null.json").write_text("null")
    # Folders named like output files; a read-only folder.
    (root / "clash" / "eval.json").mkdir(parents=True)
    (root / "clash" / "weight.msq").mkdir()
    (root / "clash" / "weight.msq" / "mine.txt").write_text("the user's")
    (root / "ro").mkdir()
    return root


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` (hidden ones too) with its kind and, for files, size and mtime."""
    return {str(p.relative_to(root)): ((p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "dir")
            for p in root.rglob("*")}


def _work_started(*args, **kwargs):
    raise AssertionError("expensive work started before the bad input was refused")


@pytest.fixture
def no_work(monkeypatch, inputs):
    """Replace every expensive entry point by :func:`_work_started`; deny writing into ``ro/``
    (also under root, who may write anywhere)."""
    from microscopiq.flow import generate, synth, synth_cli
    from microscopiq.quant import cli as quant_cli
    from microscopiq.tb import sim_cli
    for module, name in ((sim_cli, "run_accel"), (quant_cli, "quantize_matrix"), (quant_cli, "quantize_model"),
                         (quant_cli, "load_minilm"), (quant_cli, "evaluate"), (synth, "run_yosys"),
                         (synth, "run_nextpnr"), (synth_cli, "generate_design"), (generate, "generate_accel"),
                         (generate, "generate_pe")):
        monkeypatch.setattr(module, name, _work_started)
    _deny_writing(monkeypatch, inputs / "ro")
    os.chmod(inputs / "ro", 0o555)
    yield
    os.chmod(inputs / "ro", 0o755)


def _deny_writing(monkeypatch, folder: Path) -> None:
    writable = outputs._writable
    monkeypatch.setattr(outputs, "_writable",
                        lambda path: Path(path).resolve() != folder.resolve() and writable(path))


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``microscopiq ARGV`` in this process: exit status, stdout, stderr."""
    try:
        status = main(argv)
    except SystemExit as exit_:   # argparse's usage errors
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("command, status, pattern",
                         [pytest.param(c, s, p, id=f"{cls:02d}-{name}") for name, cls, c, s, p in ROWS])
def test_bad_input_is_refused_up_front(command, status, pattern, inputs, no_work, monkeypatch, capsys):
    monkeypatch.chdir(inputs)
    before = _snapshot(inputs)
    got, out, err = run_cli(shlex.split(command), capsys)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, f"expected one error line, stderr was:\n{err}"
    assert re.search(pattern, errors[0]), f"{errors[0]!r} does not match {pattern!r}"
    assert got == status, f"exit status {got}, expected {status}: {errors[0]}"
    assert out == ""
    assert _snapshot(inputs) == before, "the refused command changed the folder"


def test_the_table_covers_every_class():
    covered = {cls for _, cls, *_ in ROWS}
    # 3, 5, 6 and 10 are not refusals: the tests below.
    assert covered == {1, 2, 4, 7, 8, 9, 11}
    assert len({name for name, *_ in ROWS}) == len(ROWS)


# -- (3) an existing --out whose parent is read-only ------------------------------------------------

def test_existing_out_with_read_only_parent(inputs, tmp_path, monkeypatch, capsys):
    parent = tmp_path / "locked"
    (parent / "out").mkdir(parents=True)
    _deny_writing(monkeypatch, parent)
    os.chmod(parent, 0o555)
    try:
        status, out, err = run_cli(["quantize", "--weights", str(inputs / "w.npz"), "--method", "rtn",
                                    "--wbits", "4", "--out", str(parent / "out")], capsys)
    finally:
        os.chmod(parent, 0o755)
    assert (status, err) == (0, "")
    assert sorted(p.name for p in parent.iterdir()) == ["out"]
    assert sorted(p.name for p in (parent / "out").iterdir()) == ["summary.json", "weight.msq"]


def test_a_folder_named_like_an_output_file_is_kept(tmp_path):
    """Even when it appears after the up-front check, a staged file never replaces a folder."""
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(outputs.OutputError, match=r"^cannot write '.*/out/a.msq': a folder of that name"):
        with outputs.atomic_dir(out) as staging:
            (staging / "b.json").write_text("{}")
            (staging / "a.msq").write_bytes(b"x")
            (out / "a.msq").mkdir()
            (out / "a.msq" / "mine.txt").write_text("the user's")
    assert sorted(p.name for p in out.iterdir()) == ["a.msq"]          # nothing moved, no staging
    assert (out / "a.msq" / "mine.txt").read_text() == "the user's"


# -- (5) saturation is shown ----------------------------------------------------------------------

def test_sim_shows_overflowed_outputs(inputs, monkeypatch, capsys):
    from microscopiq.tb import sim_cli
    report = sim_cli.SimReport("weight.msq", cycles=120, predicted=120, macs=4096, checked=64,
                               mismatches=0, first_mismatch="", outputs=64, overflowed=44)
    monkeypatch.setattr(sim_cli, "simulate_layer_file", lambda *args, **kwargs: report)
    monkeypatch.chdir(inputs)
    status, out, _ = run_cli(["sim", "--layer", "q4/weight.msq"], capsys)
    assert status == 0
    assert "overflowed outputs: 44 of 64 saturated at the 32-bit accumulator's range" in out
    status, out, _ = run_cli(["sim", "--layer", "q4/weight.msq", "--json"], capsys)
    assert status == 0
    document = json.loads(out)
    assert (document["overflowed"], document["outputs"], document["mismatches"]) == (44, 64, 0)


# -- (6) signals ----------------------------------------------------------------------------------

#: Runs ``microscopiq quantize`` with the quantizer replaced by one that announces (a file) that it
#: is inside the staging folder and then waits for the signal. SIGINT gets Python's handler as in a
#: terminal: a test run started in the background by a non-interactive shell (``make test &``)
#: passes SIGINT on ignored, and Python then leaves it ignored.
_SLOW_QUANTIZE = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)
from microscopiq.quant import cli
ready = Path(sys.argv[1])
def slow(*args):
    stagings = [p for p in Path(sys.argv[2]).rglob('.*') if p.is_dir()]
    ready.write_text(str(len(stagings)))
    time.sleep(60)
    sys.exit("no signal arrived in 60 s")
cli.quantize_matrix = slow
from microscopiq.cli import main
sys.exit(main(['quantize', '--weights', sys.argv[3], '--method', 'rtn', '--wbits', '4', '--out', sys.argv[2] + '/out']))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_leaves_nothing_and_prints_one_line(signum, inputs, tmp_path):
    ready, work = tmp_path / "ready", tmp_path / "work"
    work.mkdir()
    process = subprocess.Popen([sys.executable, "-c", _SLOW_QUANTIZE, str(ready), str(work), str(inputs / "w.npz")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 120
    while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), process.communicate()
    assert ready.read_text() == "1"        # it was inside its staging folder
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert err == f"microscopiq: interrupted by {signum.name}\n"
    assert process.returncode == 128 + signum
    assert list(work.iterdir()) == []      # no staging folder, no output


# -- (10) output files get the user's umask --------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_users_umask(umask, mode, inputs, tmp_path, capsys):
    previous = os.umask(umask)
    try:
        status, _, err = run_cli(["quantize", "--weights", str(inputs / "w.npz"), "--method", "rtn",
                                  "--wbits", "4", "--out", str(tmp_path / "out")], capsys)
    finally:
        os.umask(previous)
    assert (status, err) == (0, "")
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "out").iterdir()}
    assert modes == {"summary.json": oct(mode), "weight.msq": oct(mode)}


# -- (9) the range policy, at its edges --------------------------------------------------------------

@pytest.mark.parametrize("method", ["microscopiq", "mxint", "rtn", "gptq", "decoupleq"])
def test_weights_at_the_range_limits_quantize_as_at_scale_one(method):
    """A row group whose largest |w| is PEAK_MIN or PEAK_MAX is quantized exactly as the same
    weights at scale 1 (a power-of-two scale only moves the exponents): the accepted range is exact."""
    from microscopiq.quant.dequant import dequantize
    w = np.random.default_rng(9).standard_normal((8, 128))
    w /= np.abs(w).max()
    fmt = FormatConfig(wbits=4)
    reference = dequantize(quantize_matrix(method, w, None, fmt))
    for peak in (PEAK_MIN, PEAK_MAX):
        got = dequantize(quantize_matrix(method, w * peak, None, fmt)) / peak
        bad = np.argwhere(got != reference)
        assert bad.size == 0, (f"{method} at peak {peak:g}: first difference at {tuple(bad[0])}: "
                               f"{got[tuple(bad[0])]!r} vs {reference[tuple(bad[0])]!r}")


def test_default_packages_are_in_the_package_table():
    from microscopiq.flow.synth import DEVICES, PACKAGES
    assert {family: set(devices) for family, devices in PACKAGES.items()} == \
        {family: set(devices) for family, devices in DEVICES.items()}
    missing = [(family, device) for family, devices in DEVICES.items()
               for device, package in devices.items() if package not in PACKAGES[family][device]]
    assert missing == []
