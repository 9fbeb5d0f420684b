"""The benchmark measures ours and the naive baseline in one run and reports both."""

import json
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from rlfn_video.cli import app
from rlfn_video.models import RLFN, arch_for, save_checkpoint


def test_bench_all_modes_small(tmp_path):
    weights = tmp_path / "w.pth"
    save_checkpoint(weights, RLFN(arch_for("rlfn_ntire", 2)), value_range=1.0, meta={})
    res = CliRunner().invoke(app, ["bench", "--res", "64x48", "--frames", "2", "--scale", "2", "--weights", str(weights),
                                   "--device", "cpu", "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "b.json").read_text())
    got = {(r["mode"], r["variant"]) for r in report["results"]}
    assert got == {(m, v) for m in ("model", "pipeline", "e2e") for v in ("ours", "naive")}
    assert all(r["fps"] > 0 and r["frames"] == 2 for r in report["results"])
    assert report["environment"]["device"] == "cpu" and "torch" in report["environment"]
    assert "e2e 64x48:" in res.output and "the naive baseline" in res.output
    bad = CliRunner().invoke(app, ["bench", "--res", "4k"])
    assert bad.exit_code == 1 and "unknown resolution '4k'" in bad.output


def _weights(tmp_path):
    weights = tmp_path / "w.pth"
    save_checkpoint(weights, RLFN(arch_for("rlfn_ntire", 2)), value_range=1.0, meta={})
    return weights


def test_bench_failing_mode_is_reported_and_skipped(tmp_path):
    args = ["bench", "--res", "64x48", "--frames", "2", "--scale", "2", "--weights", str(_weights(tmp_path)),
            "--device", "cpu", "--mode", "e2e", "--mode", "model", "--codec", "no_such_encoder",
            "--json", str(tmp_path / "b.json"), "--jsonl", str(tmp_path / "b.jsonl")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "e2e 64x48 ours: FAILED, skipped" in res.output and "1 measurement(s) failed: e2e 64x48" in res.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["complete"] and [f["mode"] for f in report["failures"]] == ["e2e"]
    assert {(r["mode"], r["variant"]) for r in report["results"]} == {("model", "ours"), ("model", "naive")}
    lines = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["environment", "failure", "result", "result"]


def test_bench_sigterm_keeps_every_finished_measurement(tmp_path):
    """A timeout (SIGTERM) mid-run: exit 143, and the rows measured before it are in both files."""
    jsonl, js = tmp_path / "b.jsonl", tmp_path / "b.json"
    cmd = [sys.executable, "-m", "rlfn_video.cli", "bench", "--res", "64x48", "--res", "96x64", "--frames", "4",
           "--scale", "2", "--weights", str(_weights(tmp_path)), "--device", "cpu", "--mode", "model",
           "--mode", "e2e", "--mode", "model", "--mode", "e2e", "--mode", "model", "--json", str(js),
           "--jsonl", str(jsonl)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if jsonl.is_file() and sum('"kind": "result"' in x for x in jsonl.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    out, errs = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + errs
    report = json.loads(js.read_text())
    rows = [json.loads(x) for x in jsonl.read_text().splitlines() if '"kind": "result"' in x]
    assert not report["complete"] and len(report["results"]) >= 2
    assert [(r["mode"], r["resolution"], r["variant"]) for r in report["results"]] == \
        [(r["mode"], r["resolution"], r["variant"]) for r in rows]
    assert f"interrupted; {len(report['results'])} measurement(s) kept in {js}" in errs
    assert "(interrupted)" in out and "model 64x48 ours" in out


def test_bench_two_backends_in_one_run_beside_one_naive_loop(tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'rlfn-video[openvino]')")
    args = ["bench", "--res", "64x48", "--frames", "2", "--scale", "2", "--weights", str(_weights(tmp_path)),
            "--device", "cpu", "--precision", "fp32", "--mode", "model", "--mode", "pipeline", "--backend", "torch",
            "--backend", "openvino", "--backend", "auto", "--json", str(tmp_path / "b.json")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "b.json").read_text())
    got = [(r["mode"], r["variant"], r["backend"]) for r in report["results"]]
    assert sorted(got) == sorted((m, v, b) for m in ("model", "pipeline") for v, b in (
        ("ours torch", "torch fp32"), ("ours openvino", "openvino fp32"), ("naive", "torch fp32")))
    assert report["environment"]["backend"] == "torch, openvino" and report["environment"]["openvino"]
    assert "model 64x48 ours openvino:" in res.output and "(ours openvino): " in res.output


def test_bench_gate_measures_only_what_passes(tmp_path, monkeypatch):
    from rlfn_video import precision_gate

    if not precision_gate.gate_crops():
        pytest.skip("Set14 not found under ../shared: the gate's crops")
    args = ["bench", "--res", "64x48", "--frames", "2", "--scale", "2", "--weights", str(_weights(tmp_path)),
            "--device", "cpu", "--mode", "model", "--backend", "torch", "--gate", "--jsonl", str(tmp_path / "b.jsonl")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "gate torch " in res.output and "worst of 3 crops" in res.output and "(passed)" in res.output
    monkeypatch.setattr(precision_gate, "GATE_WITHIN_ONE", 1.01)  # nothing can pass
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "refused by the precision gate" in res.output
    assert "every backend was refused by the precision gate; nothing measured" in res.output
    kinds = [json.loads(x)["kind"] for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert kinds[-2:] == ["environment", "failure"]
