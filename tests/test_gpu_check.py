"""scripts/gpu_check.sh: without a GPU one clear line and exit 2; its CPU dry run end to end (budget,
files that come home, rows kept when cut short)."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from .conftest import GPU_CHECK_SUMMARY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None or torch.cuda.is_available(),
                    reason="a GPU is here: the check would really run")
def test_gpu_check_stops_at_once_without_a_gpu(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env={**os.environ, "OUT": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no NVIDIA GPU on this machine" in done.stdout and "Nothing was checked" in done.stdout
    assert (tmp_path / "summary.txt").read_text() == done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.txt"]


def _dry_run(out: Path, budget: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "DRY_RUN": "1", "BUDGET": str(budget), "PYTHON": sys.executable}
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=budget + 120)


def _files_come_home(out: Path) -> list[Path]:
    """What the device tool brings back: at most 8 files, at most 2 folders deep."""
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8, files
    assert all(len(p.relative_to(out).parts) <= 3 for p in files), files
    return files


def test_gpu_check_dry_run_runs_every_step_and_brings_everything_home(tmp_path, request):
    res = _dry_run(tmp_path, 400)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    files = _files_come_home(tmp_path)
    assert sorted(p.name for p in files) == ["bench.jsonl", "logs.tar.gz", "summary.txt"]
    summary = (tmp_path / "summary.txt").read_text()
    for step in ("bench_x4", "bench_x4_variants", "bench_x2_1080p", "vapoursynth", "cuda_tests", "train_bench",
                 "bench_scaleout"):
        assert f"gpu_check: {step}: exit 0 after" in summary, step
    assert "budget 400 s" in summary and "3 files in" in summary
    rows = [json.loads(x) for x in (tmp_path / "bench.jsonl").read_text().splitlines()]
    got = {(r["mode"], r["variant"]) for r in rows if r["kind"] == "result"}
    assert {("model", "ours"), ("model", "naive"), ("e2e", "ours"), ("e2e", "naive"), ("pipeline", "naive"),
            ("pipeline", "ours graphs off"), ("pipeline", "ours 4 frame(s) per call, graphs on"),
            ("scaleout", "ours")} <= got
    # The table of every measurement ends stdout and summary.txt alike.
    assert "measurement(s), 0 failure(s)" in res.stdout and "ours 4 frame(s) per call, graphs off" in res.stdout
    assert res.stdout.rstrip().endswith(summary.rstrip().splitlines()[-1])
    with tarfile.open(tmp_path / "logs.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"bench_x4.txt", "vapoursynth.txt", "cuda_tests.txt", "train_bench.txt"} <= names
    assert any(n == "vs_bench.txt" for n in names), names  # the VapourSynth step's own report, packed
    request.config.stash[GPU_CHECK_SUMMARY] = summary  # shown at the end of the test run (conftest.py)


def test_gpu_check_budget_cuts_steps_and_keeps_what_was_measured(tmp_path):
    """A budget too small for every step: later steps are skipped by name, a step cut by its timeout
    keeps its rows, the first measurements are all there, and the files still come home."""
    res = _dry_run(tmp_path, 45)
    assert res.returncode == 1, res.stdout[-4000:]
    _files_come_home(tmp_path)
    summary = (tmp_path / "summary.txt").read_text()
    assert "gpu_check: bench_x4: exit 0" in summary
    assert "SKIPPED, budget spent" in summary
    assert "bench_scaleout: exit" not in summary
    rows = [json.loads(x) for x in (tmp_path / "bench.jsonl").read_text().splitlines()]
    assert {("model", "ours"), ("model", "naive")} <= {(r["mode"], r["variant"]) for r in rows if r["kind"] == "result"}
    assert "measurement(s)" in res.stdout.splitlines()[-1] or "measurement(s)" in res.stdout
