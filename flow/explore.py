"""``microscopiq explore``: a design-space sweep (generate, synthesise, cycles on a model's layers)
run as independent Dask tasks, on this machine or on a Slurm / LSF / PBS / SGE cluster.

Every point of the sweep (the cross product of ``--rows``, ``--cols``, ``--wbits``, ``--recon`` ...
on top of a preset) is one task: generate the accelerator (:func:`~microscopiq.flow.generate.generate_accel`),
run Yosys (and nextpnr with ``--place``) through :func:`~microscopiq.flow.synth.synthesize`, and count
the cycles of one inference, every linear layer of the model at ``--tokens`` tokens, with the
accelerator's cycle model :func:`~microscopiq.host.stream_format.predict_cycles`. The task returns
its result as a JSON document; the client writes it to ``<out>/points/<key>.json``.

Cycles and outlier statistics: a MicroScopiQ layer's packed weight stream is longer by its outlier
records, and a shared ReCoN's issue period is the most outlier rows among a tile's ReCoN groups, so
points with ReCoN need the real quantized layers: one extra task per number format quantizes the
model (MicroScopiQ, ``quantize_model`` with ``--calib-texts`` calibration texts, minutes) and its
packed layers are cached in ``<out>/layers/<key>.npz`` for every later run. Without ReCoN (uniform
layers) the stream depends only on the layer shapes (:data:`MODELS`, no model is loaded).

Cache keys never depend on where the project is checked out: a point's key is the SHA-256 of its
configuration, the flow options, the tool versions as a worker reports them (Yosys, nextpnr,
Amaranth), a digest of the sources that decide the hardware and the cycles (``hdl/``,
``microscopiq/config.py``, ``host/``: relative path and content of each file) and the cycle options
(model, tokens, the layers' key for points with ReCoN). A worker
whose sources differ from the client's refuses the point. Results therefore move between machines
and clusters, and a re-run resumes: only points without a result file run.

A point that fails or times out (a tool's limit, ``--timeout``) is reported and submitted once more;
if it fails again it is reported and left out of the table, and the other points are unaffected.

Outputs in ``--out``: ``pareto.md`` (every point, the Pareto-optimal ones marked), ``pareto.json``
and ``pareto.png`` (LUT4s against inferences per second). ``--no-run`` writes them from the cached
points alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import itertools
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..buildlock import build_lock
from ..config import AccelConfig, ConfigError, FormatConfig, PRESETS, ReconSharing
from ..outputs import atomic_file

__all__ = [
    "ExploreError", "MODELS", "Flow", "Point", "Context", "sweep_points", "source_digest",
    "point_key", "layers_key", "tool_versions", "quantize_layers", "model_layers",
    "inference_cycles", "pack_layers", "run_point", "cached_results", "metrics", "pareto", "write_tables", "cluster_class",
    "parse_cluster_options", "make_cluster", "open_client", "explore", "add_commands",
]


class ExploreError(ValueError):
    """A bad sweep parameter, cluster option or worker environment (named in the message)."""


def _minilm() -> tuple[tuple[str, int, int], ...]:
    """all-MiniLM-L6-v2's 37 linear layers ``(name, N, K)`` in forward order (hidden 384, FFN 1536),
    as :func:`microscopiq.quant.models.linear_layers` names them."""
    layers = []
    for block in range(6):
        prefix = f"0.model.encoder.layer.{block}."
        layers += [(prefix + "attention.self.query", 384, 384), (prefix + "attention.self.key", 384, 384),
                   (prefix + "attention.self.value", 384, 384), (prefix + "attention.output.dense", 384, 384),
                   (prefix + "intermediate.dense", 1536, 384), (prefix + "output.dense", 384, 1536)]
    return tuple(layers) + (("0.model.pooler.dense", 384, 384),)


#: Linear layers of each model the sweep knows: ``(name, N outputs, K inputs)``.
MODELS: dict[str, tuple[tuple[str, int, int], ...]] = {"minilm": _minilm()}

#: Sources whose content decides a point's hardware or cycle count, relative to the project root
#: (folders: every ``*.py`` below them).
HARDWARE_SOURCES = ("hdl", "microscopiq/config.py", "host")
#: Sources that decide the quantized layers (the outlier positions a shared ReCoN sees).
QUANT_SOURCES = ("quant", "microscopiq/config.py")


# -- points -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Flow:
    """Synthesis options shared by every point of a sweep."""

    family: str = "ecp5"
    device: str = "45k"
    freq_mhz: float = 100.0
    place: bool = False
    seed: int = 1
    use_dsp: bool = False
    mapper: str = "abc"
    io: str = "ooc"
    timeout_s: float = 3600.0

    def key_fields(self) -> dict:
        """The fields that change a result (not the time limit)."""
        out = dataclasses.asdict(self)
        del out["timeout_s"]
        return out


@dataclass(frozen=True)
class Point:
    cfg: AccelConfig
    flow: Flow

    @property
    def label(self) -> str:
        cfg = self.cfg
        return (f"{cfg.rows}x{cfg.cols}-b{cfg.fmt.wbits}-{ReconSharing.format(cfg.recon_share)}"
                f"-x{cfg.fmt.xbits}-g{cfg.fmt.group}-acc{cfg.acc_bits}{'-mp' if cfg.multi_precision else ''}")


def _array(text: str) -> dict:
    rows, sep, cols = text.partition("x")
    if not sep:
        raise ValueError(text)
    return {"rows": int(rows), "cols": int(cols)}


def _field(name: str, parse=int):
    return lambda text: {name: parse(text)}


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise ValueError(text)
    return text == "on"


#: Sweep axes: option name and the parser of one value into AccelConfig/FormatConfig changes.
#: ``arrays`` (``4x8,8x8``) lists array shapes where ``rows`` x ``cols`` would cross them.
AXES = (("arrays", _array), ("rows", _field("rows")), ("cols", _field("cols")), ("wbits", _field("wbits")),
        ("abits", _field("abits")), ("xbits", _field("xbits")), ("ublock", _field("ublock")),
        ("group", _field("group")), ("acc_bits", _field("acc_bits")),
        ("recon", _field("recon_share", ReconSharing.parse)), ("max_tokens", _field("max_tokens")),
        ("max_k", _field("max_k")), ("max_n", _field("max_n")),
        ("multi_precision", _field("multi_precision", _on_off)))


def _values(option: str, text: str, parse) -> list[dict]:
    values = []
    for part in text.split(","):
        try:
            value = parse(part.strip())
        except ValueError:
            raise ExploreError(f"--{option.replace('_', '-')} must be a comma-separated list of "
                               f"{'RxC arrays' if option == 'arrays' else 'values'}, not {text!r}") from None
        if value not in values:
            values.append(value)
    return values


def sweep_points(base: AccelConfig, axes: dict[str, str], flow: Flow,
                 model: str = "minilm") -> tuple[list[Point], list[str]]:
    """The points of the cross product of ``axes`` (option -> ``"v1,v2"``; missing options keep
    ``base``'s value) and, separately, a line for each combination the configuration refuses or
    whose ``max_k`` / ``max_n`` cannot hold the model's layers."""
    widest_n = max(n for _, n, _ in MODELS[model])
    widest_k = max(k for _, _, k in MODELS[model])
    if axes.get("arrays") is not None and (axes.get("rows") is not None or axes.get("cols") is not None):
        raise ExploreError("--arrays lists the array shapes: give it or --rows/--cols, not both")
    lists = [_values(option, axes[option], parse) for option, parse in AXES if axes.get(option) is not None]
    points, skipped = [], []
    for combination in itertools.product(*lists):
        changes = {field: value for part in combination for field, value in part.items()}
        shown = ", ".join(f"{field}={ReconSharing.format(v) if field == 'recon_share' else v}"
                          for field, v in changes.items())
        try:
            cfg = base.replace(**changes)
        except (ConfigError, TypeError) as error:
            skipped.append(f"{shown}: {error}")
            continue
        if cfg.max_k < widest_k or cfg.max_n < widest_n:
            skipped.append(f"{shown}: max_k={cfg.max_k}, max_n={cfg.max_n} cannot hold {model}'s "
                           f"{widest_n}x{widest_k} layers")
            continue
        points.append(Point(cfg, flow))
    return points, skipped


# -- cache keys ----------------------------------------------------------------------------------------

def project_root() -> Path:
    """The folder holding ``hdl/``, ``host/``, ``quant/`` and ``microscopiq/`` (pyproject maps them)."""
    from .. import hdl
    return Path(hdl.__file__).resolve().parent.parent


def source_digest(entries=HARDWARE_SOURCES, root: Path | None = None) -> str:
    """SHA-256 over the relative path and content of every file in ``entries`` (sorted), so the
    digest is the same in every checkout of the same sources."""
    root = root or project_root()
    files = []
    for entry in entries:
        path = root / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _digest(document: dict) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Context:
    """What every point of one run shares: the model, the tokens per inference, the calibration
    size, the tool versions (from a worker) and the source digests (from the client)."""

    model: str
    tokens: int
    calib_texts: int
    tools: dict
    hardware: str
    quant: str


def layers_key(fmt: FormatConfig, ctx: Context) -> str:
    """Cache key of a model quantized in format ``fmt``."""
    return _digest({"model": ctx.model, "fmt": dataclasses.asdict(fmt), "calib_texts": ctx.calib_texts,
                    "quant": ctx.quant, "method": "microscopiq"})


def needs_layers(cfg: AccelConfig) -> bool:
    """With ReCoN the cycles depend on the outliers: a tile's packed stream is longer by its records
    (and a shared ReCoN's issue period by where they sit); a uniform layer's stream only on its shape."""
    return cfg.has_recon


def point_key(point: Point, ctx: Context) -> str:
    """Cache key of a point (see the module notes)."""
    return _digest({"config": point.cfg.to_json(), "flow": point.flow.key_fields(), "tools": ctx.tools,
                    "hardware": ctx.hardware, "model": ctx.model, "tokens": ctx.tokens,
                    "layers": layers_key(point.cfg.fmt, ctx) if needs_layers(point.cfg) else None})


def tool_versions(family: str, place: bool) -> dict:
    """The versions of the programs this process runs (a Dask task: the workers' tools count)."""
    import amaranth

    from . import synth
    tools = {"yosys": synth.tool_version("yosys"), "amaranth": amaranth.__version__}
    if place:
        tools[f"nextpnr-{family}"] = synth.tool_version(f"nextpnr-{family}")
    return tools


# -- cycles ------------------------------------------------------------------------------------------

def quantize_layers(model: str, fmt_json: dict, calib_texts: int) -> bytes:
    """Quantize ``model``'s linear layers with MicroScopiQ in format ``fmt_json`` (a Dask task: torch
    and minutes); return them packed (``.msq`` bytes per layer in an ``.npz``)."""
    from ..quant import models

    fmt = FormatConfig(**fmt_json)
    layers = {}
    network = models.load_minilm()
    models.quantize_model(network, "microscopiq", fmt, models.calibration_texts(calib_texts),
                          progress=False, on_layer=lambda name, layer, report: layers.__setitem__(name, layer))
    shapes = [(name, layer.n, layer.k) for name, layer in layers.items()]
    if shapes != list(MODELS[model]):
        raise ExploreError(f"the {model} layers quantized are {shapes}, not those of MODELS[{model!r}]")
    return pack_layers(layers)


def pack_layers(layers: dict) -> bytes:
    """``{name: layer}`` as one ``.npz`` of ``.msq`` files (quant/pack.py), in order."""
    from ..quant.pack import pack_layer
    buffer = io.BytesIO()
    np.savez(buffer, names=np.array(list(layers)),
             **{f"layer{i}": np.frombuffer(pack_layer(layer), np.uint8) for i, layer in enumerate(layers.values())})
    return buffer.getvalue()


def _unpack_layers(blob: bytes) -> list:
    from ..quant.pack import unpack_layer
    data = np.load(io.BytesIO(blob), allow_pickle=False)
    return [unpack_layer(data[f"layer{i}"].tobytes()) for i in range(len(data["names"]))]


def model_layers(model: str, fmt: FormatConfig, blob: bytes | None) -> list:
    """The layers ``predict_cycles`` runs: the quantized ones of ``blob``, or (no blob) all-zero
    uniform layers of the model's shapes, exact wherever the outliers do not matter (layers of one
    shape are then one object, counted once by :func:`inference_cycles`)."""
    if blob is not None:
        return _unpack_layers(blob)
    from ..quant.layer import UniformLayer, padded
    by_shape = {}
    for _, n, k in MODELS[model]:
        if (n, k) not in by_shape:
            shape = (padded(n, fmt.ublock), padded(k, fmt.group))
            groups = (shape[0], shape[1] // fmt.group)
            by_shape[n, k] = UniformLayer(fmt=fmt, n=n, k=k, q=np.zeros(shape, np.int8),
                                          scale=np.zeros(groups, np.float32), zero=np.zeros(groups, np.float32))
    return [by_shape[n, k] for _, n, k in MODELS[model]]


def inference_cycles(cfg: AccelConfig, layers: list, tokens: int) -> int:
    """Cycles of one inference: every layer of ``layers`` at ``tokens`` tokens, one after another
    (a layer object listed several times is modelled once: the schedule is a Python loop per tile)."""
    from ..host.stream_format import predict_cycles
    counts = {}
    for layer in layers:
        if id(layer) not in counts:
            counts[id(layer)] = predict_cycles(cfg, layer, tokens)
    return sum(counts[id(layer)] for layer in layers)


# -- one point (a Dask task) ---------------------------------------------------------------------------

def run_point(point: Point, key: str, ctx: Context, work_root: str, layers_blob: bytes | None) -> dict:
    """Generate, synthesise and count the cycles of ``point`` in ``<work_root>/<key>/``; return the
    result document. A tool failure or time limit raises (the client retries once)."""
    from . import synth
    from .generate import generate_accel, read_manifest

    started = time.monotonic()
    local = source_digest()
    if local != ctx.hardware:
        raise ExploreError(f"this worker's sources ({project_root()}) differ from the client's "
                           f"(digest {local[:12]} vs {ctx.hardware[:12]}): run the same checkout on both")
    cfg, flow = point.cfg, point.flow
    workdir = Path(work_root) / key
    with build_lock(workdir, quiet=True):
        generate_accel(cfg, workdir / "rtl")
        manifest, files = read_manifest(workdir / "rtl")
        error = None
        try:
            report = synth.synthesize(files, manifest["top"], family=flow.family, device=flow.device,
                                      freq_mhz=flow.freq_mhz, workdir=workdir / "synth", seed=flow.seed,
                                      use_dsp=flow.use_dsp, io=flow.io, place_route=flow.place,
                                      timeout_s=flow.timeout_s, mapper=flow.mapper)
        except synth.DoesNotFit as failure:
            report, error = failure.report, str(failure)
    data = report.to_json()
    cycles = inference_cycles(cfg, model_layers(ctx.model, cfg.fmt, layers_blob), ctx.tokens)
    return {
        "key": key, "label": point.label, "config": cfg.to_json(), "flow": point.flow.key_fields(),
        "top": manifest["top"], "tools": ctx.tools, "hardware_digest": ctx.hardware,
        "synth": {name: data[name] for name in ("resources", "device", "lut_mapper", "fmax", "fmax_mhz",
                                                "critical_path", "utilisation", "seconds", "tools")},
        "fits": error is None, "error": error,
        "cycles": {"model": ctx.model, "tokens": ctx.tokens, "per_inference": cycles,
                   "layers": "quantized" if layers_blob is not None else "shapes"},
        "worker": platform.node(), "seconds": round(time.monotonic() - started, 1),
    }


# -- the table -------------------------------------------------------------------------------------------

def metrics(result: dict) -> dict:
    """The figures of merit of a result: LUT4s, Fmax (placed) or the target clock (not placed),
    cycles, inferences per second and per second per 1000 LUT4s."""
    res = result["synth"]["resources"]
    fmax = result["synth"]["fmax"]
    clock = fmax if fmax else result["flow"]["freq_mhz"]
    cycles = result["cycles"]["per_inference"]
    rate = clock * 1e6 / cycles
    cfg = result["config"]
    return {"label": result["label"], "rows": cfg["rows"], "cols": cfg["cols"], "wbits": cfg["fmt"]["wbits"],
            "xbits": cfg["fmt"]["xbits"], "recon": cfg["recon"], "multi_precision": cfg["multi_precision"],
            "luts": res["luts"], "ffs": res["ffs"], "dsps": res["dsps"],
            "lutram": res["lutram"], "fmax": fmax, "clock_mhz": clock, "cycles": cycles,
            "inferences_per_s": rate, "per_s_per_klut": 1000 * rate / res["luts"],
            "fits": result["fits"]}


def pareto(rows: list[dict]) -> list[dict]:
    """Mark ``pareto`` on every row no other row beats on both LUT4s and inferences per second
    (fewer or equal LUTs and at least as fast, better in one). Rows that do not fit are never
    optimal."""
    for row in rows:
        row["pareto"] = row["fits"] and not any(
            other["fits"] and other["luts"] <= row["luts"] and other["inferences_per_s"] >= row["inferences_per_s"]
            and (other["luts"] < row["luts"] or other["inferences_per_s"] > row["inferences_per_s"])
            for other in rows)
    return rows


def _markdown(rows: list[dict], placed: bool, ctx: Context, failed: list[str], skipped: list[str],
              missing: list[str]) -> str:
    clock = "Fmax (nextpnr)" if placed else "the target clock (not placed)"
    lines = [f"Model {ctx.model}, {len(MODELS[ctx.model])} linear layers at M = {ctx.tokens} tokens; "
             f"inferences/s at {clock}; Pareto: no other point has as few LUT4s and as many "
             f"inferences/s.", "",
             "| point | LUT4s | FFs | DSPs | LUT RAMs | Fmax MHz | cycles / inference | inferences/s "
             "| inferences/s per kLUT | Pareto |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in sorted(rows, key=lambda r: (r["luts"], r["label"])):
        fmax = "does not fit" if not row["fits"] else f"{row['fmax']:.1f}" if row["fmax"] else "–"
        lines.append(f"| {row['label']} | {row['luts']} | {row['ffs']} | {row['dsps']} | {row['lutram']} "
                     f"| {fmax} | {row['cycles']} | {row['inferences_per_s']:.1f} "
                     f"| {row['per_s_per_klut']:.2f} | {'yes' if row['pareto'] else ''} |")
    for title, entries in (("Failed (twice; not cached, a re-run tries them again)", failed),
                           ("Not run yet (--no-run)", missing), ("Refused by the configuration", skipped)):
        if entries:
            lines += ["", f"{title}:", "", *(f"* {entry}" for entry in entries)]
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], path: Path, placed: bool) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    fits = [row for row in rows if row["fits"]]
    ax.scatter([r["luts"] for r in fits], [r["inferences_per_s"] for r in fits], color="tab:blue",
               label="point")
    front = sorted((r for r in fits if r["pareto"]), key=lambda r: r["luts"])
    ax.plot([r["luts"] for r in front], [r["inferences_per_s"] for r in front], "o-", color="tab:red",
            label="Pareto front")
    for row in fits:
        ax.annotate(row["label"].split("-x")[0], (row["luts"], row["inferences_per_s"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("LUT4s (Yosys)")
    ax.set_ylabel(f"inferences / s (at {'Fmax' if placed else 'the target clock'})")
    # From zero: points a fraction of a percent apart must not look far apart.
    ax.set_ylim(bottom=0, top=1.15 * max(r["inferences_per_s"] for r in fits))
    ax.set_xlim(left=0, right=1.15 * max(r["luts"] for r in fits))
    ax.ticklabel_format(useOffset=False)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_tables(out: Path, results: list[dict], ctx: Context, placed: bool, failed: list[str],
                 skipped: list[str], missing: list[str] = ()) -> list[dict]:
    """Write ``pareto.md``, ``pareto.json`` and ``pareto.png`` into ``out``; return the rows."""
    rows = pareto([metrics(result) for result in results])
    with atomic_file(out / "pareto.md", "w") as handle:
        handle.write(_markdown(rows, placed, ctx, failed, skipped, list(missing)))
    document = {"model": ctx.model, "tokens": ctx.tokens, "tools": ctx.tools, "points": rows,
                "failed": failed, "missing": list(missing), "skipped": skipped}
    with atomic_file(out / "pareto.json", "w") as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")
    if any(row["fits"] for row in rows):
        _plot(rows, out / "pareto.png", placed)
    return rows


# -- Dask ------------------------------------------------------------------------------------------------

CLUSTERS = {"slurm": "SLURMCluster", "lsf": "LSFCluster", "pbs": "PBSCluster", "sge": "SGECluster"}


def cluster_class(kind: str):
    if kind not in CLUSTERS:
        raise ExploreError(f"--cluster must be one of {', '.join(CLUSTERS)}, not {kind!r}")
    import dask_jobqueue
    return getattr(dask_jobqueue, CLUSTERS[kind])


def parse_cluster_options(items: list[str]) -> dict:
    """``["cores=4", "queue=fpga", 'job_extra_directives=["-R select[mem>8000]"]']`` -> keyword
    arguments of a dask-jobqueue cluster: a value that parses as JSON is taken as such (numbers,
    lists), anything else as a string."""
    options = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise ExploreError(f"--cluster-opt must be KEY=VALUE with KEY a dask-jobqueue option, "
                               f"not {item!r}")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return options


def make_cluster(kind: str, options: dict):
    """A dask-jobqueue cluster (its scheduler runs here; workers are batch jobs). Defaults: one
    core and 8 GB per job, its HTTP server on a free port (the
    dashboard needs ``bokeh``, not a dependency)."""
    cls = cluster_class(kind)
    options = {"cores": 1, "memory": "8GB", "scheduler_options": {"dashboard_address": ":0"}, **options}
    try:
        return cls(**options)
    except (TypeError, ValueError) as error:
        raise ExploreError(f"--cluster {kind} refused its options {options}: {error}") from None


def _local_workers(points: int) -> int:
    """One worker per core, at most one per 4 GB of memory (Yosys on a 16x16 takes several), and
    no more than there are points."""
    import psutil
    by_memory = max(1, psutil.virtual_memory().total // (4 << 30))
    return max(1, min(os.cpu_count() or 1, by_memory, points))


def open_client(scheduler: str, cluster: str | None, cluster_options: dict, jobs: int, workers: int | None,
                points: int):
    """A ``distributed.Client`` and the cluster object to close with it (``None`` for an address)."""
    from distributed import Client, LocalCluster

    if cluster is not None:
        batch = make_cluster(cluster, cluster_options)
        batch.scale(jobs=jobs)
        return Client(batch), batch
    if scheduler == "local":
        local = LocalCluster(n_workers=workers or _local_workers(points), threads_per_worker=1,
                             processes=True, dashboard_address=":0")
        return Client(local), local
    return Client(scheduler, timeout=60), None


def _store(path: Path, document: dict) -> None:
    with atomic_file(path, "w") as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")


def _layer_blobs(client, points: list[Point], ctx: Context, out: Path, say) -> dict:
    """A future of the quantized layers per format that a shared point needs: the cached file
    scattered to the workers, or a task quantizing the model whose result goes to the cache as
    soon as it exists."""
    blobs = {}
    for fmt in dict.fromkeys(point.cfg.fmt for point in points if needs_layers(point.cfg)):
        key = layers_key(fmt, ctx)
        path = out / "layers" / f"{key}.npz"
        if path.exists():
            blobs[key] = client.scatter(path.read_bytes())
            continue
        say(f"quantizing {ctx.model} at b={fmt.wbits} (for the cycles with ReCoN) as a task")
        blobs[key] = client.submit(quantize_layers, ctx.model, dataclasses.asdict(fmt), ctx.calib_texts,
                                   key=f"quantize-{key}", pure=False)
        blobs[key].add_done_callback(lambda future, path=path: _cache_blob(future, path))
    return blobs


def _cache_blob(future, path: Path) -> None:
    if future.status == "finished":
        with atomic_file(path, "wb") as handle:
            handle.write(future.result())


def _reason(error: BaseException) -> str:
    """``Type: first line of the message``."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def cached_results(points: list[Point], ctx: Context, out: Path) -> tuple[dict, list[Point]]:
    """The results of ``points`` found in ``out/points/`` (point -> document) and the points without."""
    results, todo = {}, []
    for point in points:
        path = out / "points" / f"{point_key(point, ctx)}.json"
        if path.exists():
            results[point] = json.loads(path.read_text())
        else:
            todo.append(point)
    return results, todo


def explore(client, points: list[Point], ctx: Context, out: Path, work_root: str, *, retries: int = 1,
            progress: bool = True, say=print) -> tuple[list[dict], list[str]]:
    """Run every point without a result in ``out/points/`` as a task; return all results (cached
    and new) and a line for each point that failed ``1 + retries`` times."""
    from distributed import as_completed
    from tqdm import tqdm

    keys = {point: point_key(point, ctx) for point in points}
    results, todo = cached_results(points, ctx, out)
    say(f"{len(points)} points: {len(results)} cached, {len(todo)} to run")
    blobs = _layer_blobs(client, todo, ctx, out, say)

    def submit(point):
        lkey = layers_key(point.cfg.fmt, ctx) if needs_layers(point.cfg) else None
        future = client.submit(run_point, point, keys[point], ctx, work_root, blobs.get(lkey),
                               key=f"point-{point.label}-{keys[point]}-{attempts[point]}", pure=False)
        owner[future.key] = point
        return future

    attempts = {point: 0 for point in todo}
    owner = {}
    failed = []
    pending = as_completed([submit(point) for point in todo])
    with tqdm(total=len(todo), desc="explore", unit="point", file=sys.stderr, disable=not progress) as bar:
        for future in pending:
            point = owner.pop(future.key)
            try:
                result = future.result()
            except Exception as error:   # a task's failure is reported, never the run's end
                attempts[point] += 1
                reason = _reason(error)
                if attempts[point] <= retries:
                    say(f"{point.label}: failed ({reason}); submitting it once more")
                    pending.add(submit(point))
                    continue
                say(f"{point.label}: failed again ({reason})")
                failed.append(f"{point.label}: {reason}")
                bar.update()
                continue
            _store(out / "points" / f"{keys[point]}.json", result)
            results[point] = result
            bar.update()
    return [results[point] for point in points if point in results], failed


# -- command line ---------------------------------------------------------------------------------------

def _run(args: argparse.Namespace) -> int:
    if args.preset not in PRESETS:
        raise ExploreError(f"--preset must be one of {', '.join(PRESETS)}, not {args.preset!r}")
    if args.model not in MODELS:
        raise ExploreError(f"--model must be one of {', '.join(MODELS)}, not {args.model!r}")
    if args.tokens < 1:
        raise ExploreError(f"--tokens must be >= 1, not {args.tokens}")
    options = parse_cluster_options(args.cluster_opt)
    if args.cluster is not None:
        cluster_class(args.cluster)
    if args.print_job_script:
        if args.cluster is None:
            raise ExploreError("--print-job-script needs --cluster slurm|lsf|pbs|sge")
        batch = make_cluster(args.cluster, options)
        print(batch.job_script())
        batch.close()
        return 0
    from . import synth
    if args.family not in synth.DEVICES or args.device not in synth.DEVICES[args.family]:
        raise ExploreError(f"--family/--device must be a device of flow/synth.py DEVICES, not "
                           f"{args.family} {args.device}")
    flow = Flow(family=args.family, device=args.device, freq_mhz=args.freq, place=args.place,
                seed=args.seed, use_dsp=args.dsp, mapper=args.mapper,
                io="ooc" if args.family == "ecp5" else "auto", timeout_s=args.timeout)
    axes = {option: getattr(args, option) for option, _ in AXES}
    points, skipped = sweep_points(PRESETS[args.preset], axes, flow, args.model)
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if not points:
        raise ExploreError("the sweep has no valid point (see the skipped lines above)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.no_run:
        return _table_of_cached(args, points, flow, skipped, out)
    work_root = str(Path(args.work or out / "work").resolve())
    client, cluster = open_client(args.scheduler, args.cluster, options, args.jobs, args.workers, len(points))
    try:
        from tqdm import tqdm
        say = lambda line: tqdm.write(line, file=sys.stderr)   # above the progress bar
        say(f"Dask scheduler {client.scheduler.address}; work folder {work_root}")
        tools = client.submit(tool_versions, flow.family, flow.place, pure=False).result()
        ctx = _context(args, tools)
        results, failed = explore(client, points, ctx, out, work_root, progress=not args.no_progress, say=say)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    _report(out, results, ctx, flow, failed, skipped, [])
    return 1 if failed else 0


def _context(args, tools: dict) -> Context:
    return Context(model=args.model, tokens=args.tokens, calib_texts=args.calib_texts, tools=tools,
                   hardware=source_digest(), quant=source_digest(QUANT_SOURCES))


def _table_of_cached(args, points: list[Point], flow: Flow, skipped: list[str], out: Path) -> int:
    """``--no-run``: the table of the points already in the cache (tool versions read here)."""
    ctx = _context(args, tool_versions(flow.family, flow.place))
    results, todo = cached_results(points, ctx, out)
    _report(out, [results[point] for point in points if point in results], ctx, flow, [], skipped,
            [point.label for point in todo])
    return 0


def _report(out, results, ctx, flow, failed, skipped, missing) -> None:
    write_tables(out, results, ctx, flow.place, failed, skipped, missing)
    print((out / "pareto.md").read_text())
    print(f"wrote {out / 'pareto.md'}, pareto.json, pareto.png; results per point in {out / 'points'}/")


#: Metavar and help of each sweep option.
_AXIS_HELP = {
    "arrays": ("RxC[,RxC...]", "array shapes, e.g. 4x8,8x8 (instead of crossing --rows and --cols)"),
    "rows": ("R[,R...]", "array rows R"), "cols": ("C[,C...]", "array columns C (multiples of U)"),
    "wbits": ("B[,B...]", "weight slot width b"), "abits": ("A[,A...]", "activation width a"),
    "xbits": ("XB[,XB...]", "shared outlier exponent bits"), "ublock": ("U[,U...]", "micro-block U"),
    "group": ("G[,G...]", "K-group G"), "acc_bits": ("N[,N...]", "accumulator width"),
    "recon": ("per-row|shared:S|none[,...]", "ReCoN arrangement"),
    "max_tokens": ("M[,M...]", "tokens per pass the result buffer holds"),
    "max_k": ("K[,K...]", "largest layer K"), "max_n": ("N[,N...]", "largest layer N"),
    "multi_precision": ("off|on[,...]", "run-time multi-precision PEs (passes at b and b/2)"),
}


def add_commands(subparsers) -> None:
    """Add ``explore`` to the ``microscopiq`` command."""
    parser = subparsers.add_parser(
        "explore", help="sweep configurations (generate, synthesise, cycles) on Dask; Pareto table",
        description="Generate, synthesise (Yosys; nextpnr with --place) and count the cycles of one "
                    "model inference for every point of a sweep, each point a Dask task on this "
                    "machine, an existing scheduler or a Slurm/LSF/PBS/SGE cluster; results cached per "
                    "point (re-runs resume), a Pareto table in Markdown and JSON and a plot.",
        epilog="example: microscopiq explore --rows 4,8 --cols 8,16 --wbits 2,4 --recon per-row,shared:2 "
               "--out build/explore;  ... --cluster slurm --cluster-opt queue=fpga --cluster-opt cores=4")
    sweep = parser.add_argument_group("sweep (comma-separated values; unset: the preset's)")
    sweep.add_argument("--preset", default="default", help="base configuration (default 'default')")
    for option, _ in AXES:
        sweep.add_argument(f"--{option.replace('_', '-')}", dest=option, default=None,
                           metavar=_AXIS_HELP[option][0], help=_AXIS_HELP[option][1])
    model = parser.add_argument_group("cycles")
    model.add_argument("--model", default="minilm", help=f"model: {', '.join(MODELS)} (default minilm)")
    model.add_argument("--tokens", type=int, default=128, help="tokens per inference M (default 128)")
    model.add_argument("--calib-texts", type=int, default=32,
                       help="calibration texts of the quantization behind the cycles with ReCoN (default 32)")
    flow = parser.add_argument_group("synthesis")
    flow.add_argument("--family", default="ecp5", help="FPGA family (default ecp5)")
    flow.add_argument("--device", default="45k", help="device (default 45k)")
    flow.add_argument("--freq", type=float, default=100.0, metavar="MHZ", help="target clock (default 100)")
    flow.add_argument("--place", action="store_true", help="also place and route (nextpnr): Fmax")
    flow.add_argument("--seed", type=int, default=1, help="nextpnr seed (default 1)")
    flow.add_argument("--dsp", action="store_true",
                      help="multipliers in DSP blocks (default: in LUTs, as make synth)")
    from .synth import MAPPERS
    flow.add_argument("--mapper", choices=MAPPERS, default="abc",
                      help="Yosys LUT mapper (default abc: one mapper for every size, see flow/synth.py)")
    flow.add_argument("--timeout", type=float, default=3600.0, metavar="S",
                      help="time limit per tool run (default 3600); a point past it is retried once")
    dask = parser.add_argument_group("execution (Dask)")
    where = dask.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default="local", metavar="local|ADDRESS",
                       help="'local' (a LocalCluster sized to this machine, default) or the address of "
                            "a running Dask scheduler (tcp://host:8786)")
    where.add_argument("--cluster", default=None, metavar="slurm|lsf|pbs|sge",
                       help="start workers as batch jobs through dask-jobqueue")
    dask.add_argument("--cluster-opt", action="append", default=[], metavar="KEY=VALUE",
                      help="a dask-jobqueue option (queue=, cores=, memory=, walltime=, account=, "
                           "job_extra_directives=[...], ...); repeat for several")
    dask.add_argument("--jobs", type=int, default=4, help="batch jobs to start with --cluster (default 4)")
    dask.add_argument("--workers", type=int, default=None,
                      help="local workers (default: cores, at most one per 4 GB and per point)")
    dask.add_argument("--print-job-script", action="store_true",
                      help="print the batch script --cluster would submit, and exit")
    dask.add_argument("--work", default=None, metavar="DIR",
                      help="work folder of the tasks, reachable by every worker (default OUT/work)")
    dask.add_argument("--no-progress", action="store_true", help="no progress bar")
    dask.add_argument("--no-run", action="store_true",
                      help="run no point: the table of the points already cached (the rest listed)")
    parser.add_argument("--out", default="build/explore", metavar="DIR",
                        help="results, cache and tables (default build/explore)")
    parser.set_defaults(func=_run)
