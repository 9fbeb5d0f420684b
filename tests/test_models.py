"""Architectures, checkpoint formats (ours, official, NTIRE naming) and the model contract."""

import re

import pytest
import torch

from rlfn_video.errors import CheckpointError, UnknownModelError, UnsupportedScaleError
from rlfn_video.models import RLFN, SCALES, VARIANTS, arch_for, load_model, read_checkpoint, save_checkpoint


@pytest.mark.parametrize("model", list(VARIANTS))
@pytest.mark.parametrize("scale", SCALES)
def test_round_trip_our_format(tmp_path, model, scale):
    torch.manual_seed(0)
    net = RLFN(arch_for(model, scale))
    path = tmp_path / "w.pth"
    save_checkpoint(path, net, value_range=1.0, meta={"steps": 3})
    desc = load_model(scale=scale, model=model, weights=path)
    assert desc.arch == net.arch and desc.meta["steps"] == 3
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        assert torch.equal(desc(x), net(x).clamp(0, 1))
    assert desc(x).shape == (1, 3, 20 * scale, 24 * scale)


def test_parameter_counts_match_paper():
    count = lambda m, s: sum(p.numel() for p in RLFN(arch_for(m, s)).parameters())  # noqa: E731
    # x4 parameter counts published for RLFN (0.543M, paper) and the NTIRE 2022 entry (0.317M).
    assert count("rlfn", 4) // 1000 == 543
    assert count("rlfn_ntire", 4) // 1000 == 317


def _official_state(model, scale, ntire_names=False, prefix=""):
    torch.manual_seed(1)
    sd = RLFN(arch_for(model, scale)).state_dict()
    if ntire_names:
        ren = lambda k: re.sub(r"^block_(\d+)\.", r"B\1.", k.replace("conv_1.", "fea_conv.").replace("conv_2.", "LR_conv."))  # noqa: E731
        sd = {ren(k): v for k, v in sd.items()}
    return {prefix + k: v for k, v in sd.items()}


@pytest.mark.parametrize("ntire_names", [False, True])
@pytest.mark.parametrize("wrap", [None, "params", "state_dict"])
def test_official_checkpoint_conventions(tmp_path, ntire_names, wrap):
    sd = _official_state("rlfn_ntire", 4, ntire_names, prefix="module." if wrap else "")
    path = tmp_path / "official.pth"
    torch.save({wrap: sd} if wrap else sd, path)
    ck = read_checkpoint(path)
    assert ck.variant == "rlfn_ntire" and ck.arch.scale == 4 and ck.value_range == 255
    desc = load_model(scale=None, model=None, weights=path)
    # 0-255 convention: the descriptor feeds x*255 and divides the output by 255, clamped.
    net = RLFN(ck.arch)
    net.load_state_dict(_official_state("rlfn_ntire", 4))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(desc(x), (net(x * 255) / 255).clamp(0, 1))


def test_mismatch_errors_name_the_difference(tmp_path):
    path = tmp_path / "s2.pth"
    save_checkpoint(path, RLFN(arch_for("rlfn_s", 2)), value_range=1.0, meta={})
    with pytest.raises(CheckpointError, match=r"holds rlfn_s x2, not rlfn_s x4: scale 2 \(asked 4\)"):
        load_model(scale=4, model="rlfn_s", weights=path)
    with pytest.raises(CheckpointError, match=r"channels 48 \(asked 52\)"):
        load_model(scale=2, model="rlfn", weights=path)
    sd = _official_state("rlfn", 4)
    del sd["block_3.esa.conv4.bias"]
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="missing block_3.esa.conv4.bias"):
        load_model(scale=4, model="rlfn", weights=path)
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not an RLFN checkpoint: missing conv_1.weight"):
        load_model(scale=4, weights=path, model=None)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_model(scale=4, weights=path)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(scale=4, weights=tmp_path / "absent.pth")


def test_unsafe_pickle_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"obj": print}, path)  # a global reference: weights_only must refuse it
    with pytest.raises(CheckpointError, match="cannot read weights"):
        read_checkpoint(path)


def test_bad_names():
    with pytest.raises(UnknownModelError, match="unknown model 'edsr'"):
        arch_for("edsr", 4)
    with pytest.raises(UnsupportedScaleError, match="unsupported scale 8"):
        arch_for("rlfn", 8)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (14, 30)])
def test_tiny_inputs_are_padded_not_crashed(tmp_path, size):
    path = tmp_path / "w.pth"
    save_checkpoint(path, RLFN(arch_for("rlfn_s", 3)), value_range=1.0, meta={})
    desc = load_model(scale=3, weights=path)
    y = desc(torch.rand(1, 3, *size))
    assert y.shape == (1, 3, size[0] * 3, size[1] * 3)
    assert 0 <= y.min() and y.max() <= 1
