"""``microscopiq generate accel`` (flow/accel.py): every file written, the manifest's streams
generated from the beat layouts, ``--config`` as ``sim`` takes it, refusals."""

from __future__ import annotations

import json
import re

import pytest

from microscopiq.cli import main
from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.hdl.layouts import StreamLayouts


def small(share, max_tokens=6):
    return AccelConfig(fmt=FormatConfig(group=8), rows=4, cols=8, recon_share=share, max_tokens=max_tokens,
                       max_k=64)


def test_generate_accel_writes_everything(tmp_path, capsys):
    out = tmp_path / "accel"
    assert main(["generate", "accel", "--rows", "4", "--cols", "8", "--group", "8", "--max-k", "64",
                 "--max-tokens", "8", "--recon", "shared:2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["accel.core", "accel.v", "files.f", "manifest.json",
                                                     "smoke_tb.v", "waivers.vlt"]
    manifest = json.loads((out / "manifest.json").read_text())
    cfg = AccelConfig.from_json(manifest["parameters"])
    assert cfg == small(2, max_tokens=8).replace(max_n=AccelConfig().max_n)
    sf = StreamLayouts(cfg)
    ports = {p["name"]: p for p in manifest["ports"]}
    for prefix, width in (("s_axis_weights", sf.weights_width), ("s_axis_act", sf.act_width),
                          ("m_axis_result", sf.result_width)):
        assert ports[f"{prefix}_tdata"]["width"] == width == manifest["streams"][prefix]["width"]
        for suffix in ("tvalid", "tready", "tlast"):
            assert ports[f"{prefix}_{suffix}"]["width"] == 1
    assert ports["clk"]["direction"] == "in" and ports["rst"]["direction"] == "in"
    assert manifest["top"] in (out / "accel.v").read_text()
    assert (out / "files.f").read_text() == "accel.v\n"
    core = (out / "accel.core").read_text()
    assert core.startswith("CAPI=2:\n") and f"toplevel: {manifest['top']}" in core
    assert "- waivers.vlt" in core and "/tmp" not in core and core.count("- -Wall") == 2  # lint, sim_verilator
    assert manifest["cycle_model"]["shared"] is True
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--cols", "12"], r"cols must be a positive multiple of ublock \(8\), not 12"),
    (["--acc-bits", "20"], r"acc_bits=20 is too small for max_k=4096: .* needs 28 bits"),
    (["--group", "4"], r"group \(4\) must be a multiple of rows, so a K-tile never straddles two "
                      r"K-groups; rows=8 does not divide it"),
    (["--wbits", "5"], r"wbits must be one of 2, 3, 4, 8, not 5"),
    (["--wbits", "8"], r"wbits=8 has no outlier format: use recon 'none' \(uniform layers only\)"),
    (["--recon", "shared:3"], r"recon_share must be 0 \(none\), 1 \(per-row\) or a divisor of rows \(8\), not 3"),
    (["--recon", "some"], r"recon must be 'per-row', 'shared:S' \(S >= 1 rows per network\) or 'none', not 'some'"),
    (["--multi-precision", "--wbits", "2"], r"multi_precision needs wbits 4 or 8 \(two wbits/2-bit slots per PE\), not 2"),
])
def test_generate_accel_refusals(tmp_path, capsys, args, message):
    out = tmp_path / "accel"
    assert main(["generate", "accel", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.match(rf"^microscopiq: error: {message}\n$", err), err
    assert not out.exists()


def test_generate_accel_from_config_file(tmp_path, capsys):
    """``--config`` takes a generated manifest (as ``microscopiq sim`` does); options replace its
    values; the manifest's row layout is the hardware's."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["generate", "accel", "--rows", "4", "--cols", "8", "--group", "8", "--max-k", "64",
                 "--max-tokens", "8", "--recon", "shared:2", "--out", str(first)]) == 0
    assert main(["generate", "accel", "--config", str(first / "manifest.json"), "--max-tokens", "4",
                 "--out", str(second)]) == 0
    manifest = json.loads((second / "manifest.json").read_text())
    cfg = AccelConfig.from_json(manifest["parameters"])
    assert cfg == small(2, max_tokens=4).replace(max_n=AccelConfig().max_n)
    row = StreamLayouts(cfg).row
    assert {name: field["offset"] for name, field in manifest["streams"]["s_axis_weights"]["decoded"]["row"].items()} \
        == {name: field.offset for name, field in row}
    assert manifest["streams"]["s_axis_weights"]["decoded"]["row"]["codes"] == {"offset": 0, "count": 8, "width": 4}
    capsys.readouterr()
    assert main(["generate", "accel", "--config", "default", "--preset", "default",
                 "--out", str(tmp_path / "third")]) == 2
    assert re.match(r"^microscopiq: error: --preset and --config both name a starting configuration: "
                    r"give one, not 'default' and 'default'\n$", capsys.readouterr().err)


def test_generate_accel_multi_precision(tmp_path, capsys):
    """``--multi-precision``: the configuration's flag, the 2R-lane activation stream and the decoded
    header's ``pairs`` in the manifest, and the flag in the command that rebuilds it."""
    out = tmp_path / "accel"
    assert main(["generate", "accel", "--rows", "4", "--cols", "8", "--group", "16", "--max-k", "64",
                 "--multi-precision", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    cfg = AccelConfig.from_json(manifest["parameters"])
    assert cfg.multi_precision and cfg.act_lanes == 8
    assert manifest["streams"]["s_axis_act"]["width"] == 64
    assert "pairs" in manifest["streams"]["s_axis_weights"]["decoded"]["header"]
    assert "--multi-precision" in (out / "accel.v").read_text()
    capsys.readouterr()


def test_generate_accel_dsp_instantiates_one_mult18x18d_per_pe(tmp_path, capsys):
    """``--dsp ecp5``: R·C primitives, the option in the manifest, the name's hash and the header's
    command; the latencies and the cycle model are those of the fabric build."""
    from microscopiq.flow.accel import accel_manifest
    from microscopiq.flow.naming import accel_top_name
    argv = ["generate", "accel", "--rows", "4", "--cols", "8", "--group", "8", "--max-k", "64",
            "--max-tokens", "8", "--dsp", "ecp5"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    dsp = json.loads((tmp_path / "manifest.json").read_text())
    text = (tmp_path / "accel.v").read_text()
    assert text.count("MULT18X18D #(") == 4 * 8
    cfg = AccelConfig.from_json(dsp["parameters"])
    fabric = accel_manifest(cfg.replace(dsp="none"))
    assert cfg.dsp == "ecp5" and "dsp" not in fabric["parameters"]
    assert dsp["top"] == accel_top_name(cfg) != accel_top_name(cfg.replace(dsp="none"))
    assert "--dsp ecp5" in text
    assert dsp["latency_cycles"] == fabric["latency_cycles"]
    assert dsp["cycle_model"] == fabric["cycle_model"]


def test_generate_accel_dsp_refusals(tmp_path, capsys):
    out = tmp_path / "refused"
    assert main(["generate", "accel", "--dsp", "ecp5", "--multi-precision", "--out", str(out)]) == 2
    assert re.search(r"dsp 'ecp5' maps one a x \(b\+1\) multiplier per PE to a DSP; multi_precision's PEs "
                     r"have two partial multipliers: use dsp 'none'$", capsys.readouterr().err.strip())
    assert main(["generate", "accel", "--dsp", "gowin", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("dsp must be one of none, ecp5, not 'gowin'")
    assert not out.exists()
