"""``microscopiq explore`` (flow/explore.py): sweep points, checkout-independent cache keys, cycles from
shapes or quantized layers, the Pareto marking, retries, the local scheduler and a scheduler reached
by address on two tiny points (Yosys only, about 10 s each), and the Slurm / LSF job scripts."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from microscopiq.cli import main
from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.flow import explore
from microscopiq.host.stream_format import predict_cycles
from microscopiq.tb.stimulus import random_case

#: The smallest accelerator the configuration allows that still holds MiniLM's layers: 2x2 PEs,
#: U = G = 2, b = 2 (about 2,200 LUT4s, 10 s of Yosys).
TINY = ["--rows", "2", "--cols", "2", "--ublock", "2", "--group", "2", "--wbits", "2",
        "--max-k", "1536", "--max-n", "1536", "--max-tokens", "8", "--tokens", "16"]
TINY_CFG = AccelConfig(fmt=FormatConfig(wbits=2, ublock=2, group=2), rows=2, cols=2, max_k=1536,
                       max_n=1536, max_tokens=8)


def test_sweep_points_and_refusals():
    points, skipped = explore.sweep_points(AccelConfig(), {"rows": "4,8", "wbits": "4",
                                                           "recon": "per-row,shared:8"}, explore.Flow())
    assert [p.label for p in points] == ["4x8-b4-per-row-x4-g128-acc32", "8x8-b4-per-row-x4-g128-acc32",
                                         "8x8-b4-shared:8-x4-g128-acc32"]
    assert skipped == ["rows=4, wbits=4, recon_share=shared:8: recon_share must be 0 (none), 1 (per-row) "
                       "or a divisor of rows (4), not 8"]
    points, skipped = explore.sweep_points(AccelConfig(), {"max_k": "512"}, explore.Flow())
    assert points == [] and skipped == ["max_k=512: max_k=512, max_n=16384 cannot hold minilm's "
                                        "1536x1536 layers"]
    with pytest.raises(explore.ExploreError, match=r"^--rows must be a comma-separated list of values, "
                                                   r"not '4,x'$"):
        explore.sweep_points(AccelConfig(), {"rows": "4,x"}, explore.Flow())
    points, skipped = explore.sweep_points(AccelConfig(), {"wbits": "4,2", "multi_precision": "off,on"},
                                           explore.Flow())
    assert [p.label for p in points] == ["8x8-b4-per-row-x4-g128-acc32", "8x8-b4-per-row-x4-g128-acc32-mp",
                                         "8x8-b2-per-row-x4-g128-acc32"]
    assert skipped == ["wbits=2, multi_precision=True: multi_precision needs wbits 4 or 8 (two wbits/2-bit "
                       "slots per PE), not 2"]
    with pytest.raises(explore.ExploreError, match=r"^--multi-precision must be a comma-separated list of "
                                                   r"values, not 'yes'$"):
        explore.sweep_points(AccelConfig(), {"multi_precision": "yes"}, explore.Flow())
    points, _ = explore.sweep_points(AccelConfig(), {"arrays": "4x8,16x16", "recon": "none"}, explore.Flow())
    assert [(p.cfg.rows, p.cfg.cols, p.cfg.recon_share) for p in points] == [(4, 8, 0), (16, 16, 0)]
    with pytest.raises(explore.ExploreError, match=r"^--arrays must be a comma-separated list of RxC "
                                                   r"arrays, not '4x8,8'$"):
        explore.sweep_points(AccelConfig(), {"arrays": "4x8,8"}, explore.Flow())
    with pytest.raises(explore.ExploreError, match=r"^--arrays lists the array shapes: give it or "
                                                   r"--rows/--cols, not both$"):
        explore.sweep_points(AccelConfig(), {"arrays": "4x8", "rows": "4"}, explore.Flow())


def test_minilm_table():
    shapes = explore.MODELS["minilm"]
    assert len(shapes) == 37
    assert sum(n * k for _, n, k in shapes) == 6 * (4 * 384 * 384 + 2 * 384 * 1536) + 384 * 384
    assert shapes[4] == ("0.model.encoder.layer.0.intermediate.dense", 1536, 384)


def test_source_digest_ignores_where_the_checkout_is(tmp_path):
    root = explore.project_root()
    copies = [tmp_path / "a" / "checkout", tmp_path / "b" / "elsewhere" / "msq"]
    for copy in copies:
        shutil.copytree(root / "hdl", copy / "hdl", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(root / "host", copy / "host", ignore=shutil.ignore_patterns("__pycache__"))
        (copy / "microscopiq").mkdir()
        shutil.copy(root / "microscopiq/config.py", copy / "microscopiq/config.py")
    digests = [explore.source_digest(root=copy) for copy in copies]
    assert digests[0] == digests[1] == explore.source_digest()
    (copies[1] / "hdl" / "pe.py").write_text((copies[1] / "hdl" / "pe.py").read_text() + "\n")
    assert explore.source_digest(root=copies[1]) != digests[0]


def _context(**changes):
    fields = dict(model="minilm", tokens=16, calib_texts=32, tools={"yosys": "Yosys 0.70"},
                  hardware="h" * 64, quant="q" * 64)
    return explore.Context(**{**fields, **changes})


def test_point_keys():
    point = explore.Point(TINY_CFG, explore.Flow())
    key = explore.point_key(point, _context())
    assert re.fullmatch(r"[0-9a-f]{20}", key) and key == explore.point_key(point, _context())
    # Only what decides the result changes the key: not the time limit.
    assert explore.point_key(explore.Point(TINY_CFG, explore.Flow(timeout_s=5)), _context()) == key
    different = [explore.point_key(point, _context(tools={"yosys": "Yosys 0.71"})),
                 explore.point_key(point, _context(hardware="x" * 64)),
                 explore.point_key(point, _context(tokens=32)),
                 explore.point_key(explore.Point(TINY_CFG, explore.Flow(place=True)), _context()),
                 explore.point_key(explore.Point(TINY_CFG.replace(recon_share=2), explore.Flow()), _context())]
    assert key not in different and len(set(different)) == len(different)
    # The quantization sources matter to points with ReCoN only (their cycles run quantized layers).
    plain = explore.Point(TINY_CFG.replace(recon_share=0), explore.Flow())
    assert explore.point_key(plain, _context(quant="z" * 64)) == explore.point_key(plain, _context())
    assert explore.point_key(point, _context(quant="z" * 64)) != key


def test_cycles_from_shapes_and_from_packed_layers():
    cfg = AccelConfig(fmt=FormatConfig(group=8), rows=4, cols=8, recon_share=1, max_tokens=4, max_k=64)
    layers = {f"l{i}": random_case(cfg, 24, 40, 1, seed, outlier_rate=0.6).layer for i, seed in enumerate((3, 4))}
    blob = explore.pack_layers(layers)
    shared = cfg.replace(recon_share=2)
    unpacked = explore.model_layers("minilm", cfg.fmt, blob)
    for point in (cfg, shared):
        assert explore.inference_cycles(point, unpacked, 10) == sum(
            predict_cycles(point, layer, 10) for layer in layers.values())
    # The outlier records lengthen the stream: the shapes alone (all-zero uniform layers) give fewer
    # cycles; they are exact, and all a point needs, without ReCoN.
    explore.MODELS["test"] = tuple((name, 24, 40) for name in layers)
    try:
        shapes = explore.model_layers("test", cfg.fmt, None)
    finally:
        del explore.MODELS["test"]
    assert explore.inference_cycles(cfg, shapes, 10) < explore.inference_cycles(cfg, unpacked, 10)
    assert [explore.needs_layers(c) for c in (cfg, shared, cfg.replace(recon_share=0))] == [True, True, False]


def test_pareto_marks_the_points_nothing_beats():
    rows = [{"label": "a", "luts": 100, "inferences_per_s": 10.0, "fits": True},
            {"label": "b", "luts": 200, "inferences_per_s": 30.0, "fits": True},
            {"label": "c", "luts": 250, "inferences_per_s": 20.0, "fits": True},   # b beats it
            {"label": "d", "luts": 100, "inferences_per_s": 5.0, "fits": True},    # a beats it
            {"label": "e", "luts": 50, "inferences_per_s": 99.0, "fits": False}]
    assert [row["label"] for row in explore.pareto(rows) if row["pareto"]] == ["a", "b"]


def _fake_result(point, key, ctx):
    return {"key": key, "label": point.label, "config": point.cfg.to_json(), "flow": point.flow.key_fields(),
            "synth": {"resources": {"luts": 1000 * point.cfg.rows, "ffs": 1, "dsps": 0, "lutram": 0},
                      "fmax": None}, "fits": True, "error": None,
            "cycles": {"model": ctx.model, "tokens": ctx.tokens, "per_inference": 5000 // point.cfg.rows}}


def test_a_failing_point_is_retried_once_and_never_loses_the_others(tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    calls = tmp_path / "calls"   # the task travels serialised: it notes its calls in a file

    def flaky(point, key, ctx, work_root, blob):
        with open(calls, "a") as handle:
            handle.write(point.label + "\n")
        if point.cfg.rows == 4:
            raise RuntimeError("yosys crashed\nsecond line")
        return _fake_result(point, key, ctx)

    monkeypatch.setattr(explore, "run_point", flaky)
    points, _ = explore.sweep_points(AccelConfig(), {"rows": "2,4", "recon": "none"}, explore.Flow())
    lines = []
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster, Client(cluster) as client:
        results, failed = explore.explore(client, points, _context(), tmp_path, str(tmp_path / "work"),
                                          progress=False, say=lines.append)
    assert [r["label"] for r in results] == ["2x8-b4-none-x4-g128-acc32"]
    assert failed == ["4x8-b4-none-x4-g128-acc32: RuntimeError: yosys crashed"]
    assert sorted(calls.read_text().splitlines()) == ["2x8-b4-none-x4-g128-acc32"] + ["4x8-b4-none-x4-g128-acc32"] * 2
    assert lines == ["2 points: 0 cached, 2 to run",
                     "4x8-b4-none-x4-g128-acc32: failed (RuntimeError: yosys crashed); submitting it once more",
                     "4x8-b4-none-x4-g128-acc32: failed again (RuntimeError: yosys crashed)"]
    assert [p.name for p in (tmp_path / "points").iterdir()] == [f"{results[0]['key']}.json"]
    assert results[0] == json.loads((tmp_path / "points" / f"{results[0]['key']}.json").read_text())


def _run_tiny(out, extra, capsys):
    # Points without ReCoN: their cycles need no quantized model (points with ReCoN quantize MiniLM).
    code = main(["explore", *TINY, "--cols", "2,4", "--recon", "none", "--no-progress", "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured


def _check_tiny(out):
    document = json.loads((out / "pareto.json").read_text())
    rows = {row["label"].split("-x")[0]: row for row in document["points"]}
    assert sorted(rows) == ["2x2-b2-none", "2x4-b2-none"]
    # Cycles: the cycle model on MiniLM's 37 layer shapes at 16 tokens.
    for label, cols in (("2x2-b2-none", 2), ("2x4-b2-none", 4)):
        cfg = TINY_CFG.replace(recon_share=0, cols=cols)
        expected = explore.inference_cycles(cfg, explore.model_layers("minilm", cfg.fmt, None), 16)
        assert rows[label]["cycles"] == expected, (label, rows[label]["cycles"], expected)
        assert rows[label]["inferences_per_s"] == pytest.approx(100e6 / expected)
    # Twice the columns, more LUTs and flip-flops, fewer cycles.
    assert rows["2x4-b2-none"]["luts"] > rows["2x2-b2-none"]["luts"] > 500
    assert rows["2x4-b2-none"]["ffs"] > rows["2x2-b2-none"]["ffs"]
    assert rows["2x4-b2-none"]["cycles"] < rows["2x2-b2-none"]["cycles"]
    assert rows["2x2-b2-none"]["pareto"] and rows["2x2-b2-none"]["fmax"] is None
    text = (out / "pareto.md").read_text()
    assert "| 2x2-b2-none-x4-g2-acc32 | " in text and (out / "pareto.png").stat().st_size > 1000
    return document


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    return tmp_path_factory.mktemp("explore") / "local"


def test_local_scheduler_two_tiny_points_then_resume(tiny_sweep, tmp_path, capsys):
    captured = _run_tiny(tiny_sweep, ["--workers", "2"], capsys)
    assert "2 points: 0 cached, 2 to run" in captured.err
    first = _check_tiny(tiny_sweep)
    assert len(list((tiny_sweep / "points").glob("*.json"))) == 2
    # The results moved to another folder (another checkout or machine) are found again.
    moved = tmp_path / "elsewhere" / "sweep"
    shutil.copytree(tiny_sweep / "points", moved / "points")
    captured = _run_tiny(moved, ["--workers", "1"], capsys)
    assert "2 points: 2 cached, 0 to run" in captured.err
    assert json.loads((moved / "pareto.json").read_text())["points"] == first["points"]
    # --no-run: the table of what is cached, the rest listed, no task.
    assert main(["explore", *TINY, "--cols", "2,4,8", "--recon", "none", "--no-run", "--out", str(moved)]) == 0
    document = json.loads((moved / "pareto.json").read_text())
    assert document["points"] == first["points"] and document["missing"] == ["2x8-b2-none-x4-g2-acc32"]
    assert "Not run yet (--no-run):\n\n* 2x8-b2-none-x4-g2-acc32" in (moved / "pareto.md").read_text()
    assert not (moved / "work").exists()


def test_scheduler_by_address_with_a_retried_tool_failure(tmp_path, monkeypatch, capsys):
    """A Dask scheduler and workers started here, reached by address; ``YOSYS`` names a wrapper
    that fails its first synthesis run, so the point fails once, is retried and succeeds. (Amaranth
    also runs ``$YOSYS`` to write the Verilog: its calls pass through.)"""
    from distributed import LocalCluster

    from microscopiq.flow import synth
    marker, calls = tmp_path / "failed-once", tmp_path / "calls"
    wrapper = tmp_path / "yosys-wrapper"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n"
                       f"if [ \"$3\" = yosys-abc.log ] && [ ! -e {marker} ]; then touch {marker}; exit 3; fi\n"
                       f"exec {synth.tool_command('yosys')} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(wrapper))
    out = tmp_path / "remote"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        code = main(["explore", *TINY, "--recon", "none", "--no-progress", "--scheduler",
                     cluster.scheduler_address, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert re.search(r"^2x2-b2-none-x4-g2-acc32: failed \(SynthError: yosys-wrapper failed \(exit 3\)"
                     r"[^\n]*\); submitting it once more$", captured.err, re.MULTILINE), captured.err
    # The workers ran the wrapper: the version query, the failed run and the retried run.
    lines = calls.read_text().splitlines()
    assert lines[0] == "-V" and lines.count("-q -l yosys-abc.log -s yosys-abc.ys") == 2
    (result,) = [json.loads(p.read_text()) for p in (out / "points").glob("*.json")]
    assert result["synth"]["tools"] == {"yosys": str(wrapper)}
    assert result["synth"]["resources"]["luts"] > 500


@pytest.mark.parametrize("kind, own, expected", [
    ("slurm", ["walltime=02:00:00", "account=chip-team", 'job_extra_directives=["--constraint=avx2"]'],
     ["#SBATCH -p fpga", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=15G", "#SBATCH -t 02:00:00",
      "#SBATCH -A chip-team", "#SBATCH --constraint=avx2"]),
    ("lsf", ["walltime=02:00", "project=chip-team", """job_extra_directives=["-R \\"select[mem>16000]\\""]"""],
     ["#BSUB -q fpga", "#BSUB -n 4", "#BSUB -M 16000000", "#BSUB -W 02:00", '#BSUB -P "chip-team"',
      '#BSUB -R "select[mem>16000]"']),
])
def test_job_scripts_carry_the_options(kind, own, expected):
    options = explore.parse_cluster_options(
        ["queue=fpga", "cores=4", "memory=16GB", *own, 'scheduler_options={"dashboard_address": ":0"}'])
    cluster = explore.make_cluster(kind, options)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    missing = [line for line in expected if line not in lines]
    assert not missing, f"{missing} not in:\n{script}"
    assert "distributed.cli.dask_worker" in script


@pytest.mark.parametrize("argv, message", [
    (["--cluster-opt", "cores"], r"^microscopiq: error: --cluster-opt must be KEY=VALUE with KEY a "
                                 r"dask-jobqueue option, not 'cores'$"),
    (["--print-job-script"], r"^microscopiq: error: --print-job-script needs --cluster slurm\|lsf\|pbs\|sge$"),
    (["--rows", "3"], r"^microscopiq: error: the sweep has no valid point \(see the skipped lines above\)$"),
    (["--model", "bert"], r"^microscopiq: error: --model must be one of minilm, not 'bert'$"),
])
def test_cli_refusals(argv, message, tmp_path, capsys):
    assert main(["explore", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(message, err), err
    assert not (tmp_path / "out").exists()
