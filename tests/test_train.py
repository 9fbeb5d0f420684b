"""Training stages on tiny data: weights move, resume is bit-exact, export ships loadable weights."""

import numpy as np
import pytest
import torch
from PIL import Image

from rlfn_video.models import load_model
from train.trainer import Stage, StageConfig


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(3):
        base = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)  # smooth-ish content: upsampled noise
        img = Image.fromarray(base).resize((72 + 8 * i, 64), Image.BICUBIC)
        img.save(folder / f"img{i}.png")
    Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(folder / "too_small.png")
    return folder


def _cfg(image_dir, **kw):
    base = dict(model="rlfn_s", scale=2, data=[str(image_dir)], patch=16, batch=2, steps=4, lr=1e-3,
                checkpoint_every=2, log_every=2)
    return StageConfig(**{**base, **kw})


def test_stage_changes_weights_and_skips_small_images(tmp_path, image_dir):
    st = Stage(_cfg(image_dir), tmp_path / "run")
    assert len(st.sampler.images) == 3  # 10x10 is smaller than the 32 px HR patch
    before = {k: v.clone() for k, v in st.model.state_dict().items()}
    st.run()
    after = st.model.state_dict()
    assert st.step == 4 and all(not torch.equal(before[k], after[k]) for k in ("conv_1.weight", "upsampler.0.weight"))
    assert (tmp_path / "run" / "log.jsonl").read_text().count("\n") == 2


def test_resume_after_stop_is_bit_identical(tmp_path, image_dir):
    whole = Stage(_cfg(image_dir), tmp_path / "whole")
    whole.run()
    part = Stage(_cfg(image_dir), tmp_path / "part")
    part.run(max_steps=2)  # a forced stop: the checkpoint is all that survives
    del part
    resumed = Stage(_cfg(image_dir), tmp_path / "part")
    assert resumed.step == 2
    resumed.run()
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_resume_refuses_changed_config(tmp_path, image_dir):
    Stage(_cfg(image_dir), tmp_path / "run").run(max_steps=1)
    with pytest.raises(ValueError, match="different config"):
        Stage(_cfg(image_dir, lr=5e-4), tmp_path / "run")


def test_warm_start_across_scales_and_export(tmp_path, image_dir):
    from train.export import export

    Stage(_cfg(image_dir), tmp_path / "x2").run()
    st = Stage(_cfg(image_dir, scale=3, init=str(tmp_path / "x2" / "last.pt")), tmp_path / "x3")
    assert st.skipped == ["upsampler.0.weight", "upsampler.0.bias"]
    src = torch.load(tmp_path / "x2" / "last.pt", weights_only=True)["model"]
    assert torch.equal(st.model.state_dict()["block_2.c1_r.weight"], src["block_2.c1_r.weight"])
    st.run()
    out = tmp_path / "rlfn_s_x3.pth"
    meta = export([tmp_path / "x2", tmp_path / "x3"], out)
    assert meta["steps"] == 8 and [s["steps"] for s in meta["stages"]] == [4, 4]
    desc = load_model(scale=3, model="rlfn_s", weights=out)
    assert desc.value_range == 1.0 and desc.meta["stages"][1]["init"].endswith("last.pt")
