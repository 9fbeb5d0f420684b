"""Paths into ../shared (data the tests read but the project never copies)."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCHMARKS = SHARED / "data" / "benchmarks"
VIDEOS = SHARED / "data" / "video"
TRAIN = SHARED / "data" / "train"
ANCHORS = SHARED / "anchors"

needs_shared = pytest.mark.skipif(not BENCHMARKS.is_dir(), reason=f"benchmark sets not found at {BENCHMARKS}")
needs_videos = pytest.mark.skipif(not VIDEOS.is_dir(), reason=f"test clips not found at {VIDEOS}")
needs_train = pytest.mark.skipif(not TRAIN.is_dir(), reason=f"training images not found at {TRAIN}")
needs_anchors = pytest.mark.skipif(not ANCHORS.is_dir(), reason=f"official RLFN checkpoints not found at {ANCHORS}")
