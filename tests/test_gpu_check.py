"""scripts/gpu_check.sh on a machine without a GPU: one clear line, exit code 2, nothing run."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

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
