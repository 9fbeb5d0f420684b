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


# ---------------------------------------------------------------------------------------------
# Named models (zoo.MODELS): the video model by name everywhere, with stand-in weights


@pytest.fixture
def video_zoo(tmp_path, monkeypatch):
    """Stand-in weights: clean rlfn_s at x2 and x3, rlfn_s_video at x2 only (as shipped: x2 and x4)."""
    from rlfn_video.models import zoo

    from .sr_models import standin_zoo

    folder = standin_zoo(tmp_path / "weights", clean=(2, 3), video=(2,), eval_video={"mean": {"psnr": 30.0, "ssim": 0.8}})
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", folder)
    return folder


def test_registry_names_and_files(video_zoo):
    from rlfn_video.models import zoo

    assert zoo.MODELS["rlfn_s_video"].arch == "rlfn_s" and "compressed video" in zoo.MODELS["rlfn_s_video"].purpose
    assert set(VARIANTS) <= set(zoo.MODELS)  # the architecture names stay model names
    assert [p.name for p in zoo.available()] == ["rlfn_s_video_x2.pth", "rlfn_s_x2.pth", "rlfn_s_x3.pth"]
    assert [(n, s) for n, s, _ in zoo.shipped()] == [("rlfn_s", 2), ("rlfn_s", 3), ("rlfn_s_video", 2)]
    assert zoo.parse_stem("rlfn_s_video_x4") == ("rlfn_s_video", 4) and zoo.parse_stem("rlfn_s") is None
    assert zoo.arch_of("rlfn_s_video", 4) == arch_for("rlfn_s", 4)
    with pytest.raises(UnknownModelError, match=r"^unknown model 'edsr'; choose one of rlfn, rlfn_s, rlfn_ntire, "
                                                r"rlfn_s_video$"):
        load_model(scale=2, model="edsr")


def test_video_model_loads_by_name(video_zoo):
    from rlfn_video.engine import Engine

    desc = load_model(scale=2, model="rlfn_s_video")
    assert desc.name == "rlfn_s_video_x2" and desc.arch == arch_for("rlfn_s", 2)
    assert desc.meta["eval_video"]["mean"]["psnr"] == 30.0
    clean = load_model(scale=2, model="rlfn_s")
    x = torch.rand(1, 3, 16, 16)
    assert not torch.equal(desc(x), clean(x))  # other weights, not the clean ones
    assert Engine.from_options(scale=2, model="rlfn_s_video", device="cpu").name == "rlfn_s_video_x2"
    # a file named by its architecture: --weights keeps working, checked against the name's architecture
    assert load_model(scale=2, model="rlfn_s_video", weights=video_zoo / "rlfn_s_x2.pth").arch.scale == 2
    with pytest.raises(CheckpointError, match=r"holds rlfn_s x2, not rlfn_s_video x4: scale 2 \(asked 4\)"):
        load_model(scale=4, model="rlfn_s_video", weights=video_zoo / "rlfn_s_x2.pth")
    with pytest.raises(CheckpointError, match=r"holds rlfn_s x2, not rlfn x2: channels 48 \(asked 52\)"):
        load_model(scale=2, model="rlfn", weights=video_zoo / "rlfn_s_video_x2.pth")


def test_missing_scale_names_what_is_shipped(video_zoo):
    with pytest.raises(CheckpointError) as e:
        load_model(scale=3, model="rlfn_s_video")
    assert str(e.value) == ("no embedded weights for rlfn_s_video x3 (shipped: rlfn_s_video_x2, rlfn_s_x2, rlfn_s_x3); "
                            "pass --weights FILE")


def test_video_default_falls_back_to_clean(video_zoo, monkeypatch):
    from rlfn_video.models import zoo
    from rlfn_video.segment_job import EncodeSettings

    assert zoo.video_default(2) == "rlfn_s"  # the default is not changed here
    monkeypatch.setattr(zoo, "DEFAULT_VIDEO_MODEL", "rlfn_s_video")
    assert zoo.video_default(2) == "rlfn_s_video" and zoo.video_default(3) == "rlfn_s"
    assert zoo.video_model_for(None, None, 3) == "rlfn_s" and zoo.video_model_for("rlfn", None, 3) == "rlfn"
    assert zoo.video_model_for(None, "w.pth", 2) is None  # a file: its architecture is read from it
    assert EncodeSettings(scale=2).model_name == "rlfn_s_video" and EncodeSettings(scale=3).model_name == "rlfn_s"
    assert EncodeSettings(scale=2, model="rlfn_s").model_name == "rlfn_s"
    assert EncodeSettings(scale=2).fingerprint()["weights_sha256"] != EncodeSettings(scale=2, model="rlfn_s").fingerprint()["weights_sha256"]


def test_upscale_video_uses_the_video_default(video_zoo, monkeypatch, tmp_path):
    import rlfn_video
    from rlfn_video.engine import Engine
    from rlfn_video.models import zoo

    from .conftest import make_clip

    src = make_clip(tmp_path / "in.mp4", size=(32, 24), frames=2)
    loaded = []
    real = Engine.from_options.__func__

    def spy(cls, **kw):
        engine = real(cls, **kw)
        loaded.append((kw["model"], engine.name))
        return engine

    monkeypatch.setattr(Engine, "from_options", classmethod(spy))
    monkeypatch.setattr(zoo, "DEFAULT_VIDEO_MODEL", "rlfn_s_video")
    for scale, name in ((2, "rlfn_s_video_x2"), (3, "rlfn_s_x3")):  # x3: no video weights, the clean model
        rlfn_video.upscale_video(src, tmp_path / f"x{scale}.mp4", scale=scale, device="cpu", fast=False)
        assert loaded[-1][1] == name
    rlfn_video.upscale_video(src, tmp_path / "named.mp4", scale=2, model="rlfn_s", device="cpu", fast=False)
    assert loaded[-1] == ("rlfn_s", "rlfn_s_x2")
