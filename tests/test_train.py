"""Training stages on tiny data: weights move, resume is bit-exact, export ships loadable weights."""

import numpy as np
import pytest
import torch
from PIL import Image

from rlfn_video.models import load_model
from train.trainer import Runtime, Stage, StageConfig


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


@pytest.mark.parametrize("prefetch", [0, 2])
def test_resume_after_stop_is_bit_identical(tmp_path, image_dir, prefetch):
    rt = Runtime(prefetch=prefetch)
    whole = Stage(_cfg(image_dir, steps=5), tmp_path / "whole", runtime=Runtime(prefetch=0))
    whole.run()
    part = Stage(_cfg(image_dir, steps=5), tmp_path / "part", runtime=rt)
    part.run(max_steps=2)  # a forced stop: the checkpoint is all that survives
    del part
    resumed = Stage(_cfg(image_dir, steps=5), tmp_path / "part", runtime=rt)
    assert resumed.step == 2
    resumed.run(max_steps=1)
    resumed.run()  # the same object continues too (prefetched batches are rewound)
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


@pytest.mark.parametrize("amp", [None, "bf16"])
def test_loss_scaler_only_for_fp16(tmp_path, image_dir, amp):
    """No scaler outside fp16: bf16 keeps fp32's exponent range. Its checkpoints carry no scaler
    state, and those without one (older ones too) still resume."""
    st = Stage(_cfg(image_dir, steps=2), tmp_path / "run", runtime=Runtime(amp=amp, prefetch=0))
    assert not st.scaler.is_enabled()
    st.run(max_steps=1)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert "scaler" not in ck and ck["step"] == 1
    resumed = Stage(_cfg(image_dir, steps=2), tmp_path / "run", runtime=Runtime(amp=amp, prefetch=0))
    assert resumed.step == 1 and not resumed.scaler.is_enabled()


@pytest.mark.parametrize("amp, message", [("fp16", r"--amp fp16 trains on CUDA only"),
                                          ("fp8", r"unknown --amp 'fp8'; use bf16 or fp16")])
def test_unsupported_amp_refused_before_anything_is_written(tmp_path, image_dir, amp, message):
    with pytest.raises(ValueError, match=message):
        Stage(_cfg(image_dir), tmp_path / "run", runtime=Runtime(device="cpu", amp=amp))
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_fp16_scaler_state_is_checkpointed_and_resumed(tmp_path, image_dir):
    rt = Runtime(device="cuda", amp="fp16", prefetch=0)
    st = Stage(_cfg(image_dir, steps=3), tmp_path / "run", runtime=rt)
    assert st.scaler.is_enabled()
    st.run(max_steps=2)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["scaler"]["scale"] == st.scaler.get_scale() > 0
    resumed = Stage(_cfg(image_dir, steps=3), tmp_path / "run", runtime=rt)
    assert resumed.step == 2 and resumed.scaler.state_dict() == st.scaler.state_dict()
    resumed.run()
    assert resumed.step == 3 and all(torch.isfinite(v).all() for v in resumed.model.state_dict().values())


def test_resume_refuses_changed_config(tmp_path, image_dir):
    Stage(_cfg(image_dir), tmp_path / "run").run(max_steps=1)
    with pytest.raises(ValueError, match="different config"):
        Stage(_cfg(image_dir, lr=5e-4), tmp_path / "run")


def test_warm_start_across_scales_and_export(tmp_path, image_dir):
    from train.export import export

    Stage(_cfg(image_dir), tmp_path / "x2").run()
    st = Stage(_cfg(image_dir, scale=3, init=str(tmp_path / "x2" / "last.pt")), tmp_path / "x3",
               runtime=Runtime(channels_last=True))
    assert st.skipped == ["upsampler.0.weight", "upsampler.0.bias"]
    src = torch.load(tmp_path / "x2" / "last.pt", weights_only=True)["model"]
    assert torch.equal(st.model.state_dict()["block_2.c1_r.weight"], src["block_2.c1_r.weight"])
    st.run()
    out = tmp_path / "rlfn_s_x3.pth"
    meta = export([tmp_path / "x2", tmp_path / "x3"], out)
    assert meta["steps"] == 8 and [s["steps"] for s in meta["stages"]] == [4, 4]
    # each stage states where it ran (recorded by the trainer, not guessed at export)
    devices = [s["device"] for s in meta["stages"]]
    assert all(f"{torch.get_num_threads()} threads" in d and torch.__version__ in d for d in devices)
    assert "channels_last" not in devices[0] and "channels_last" in devices[1]
    desc = load_model(scale=3, model="rlfn_s", weights=out)
    assert desc.value_range == 1.0 and desc.meta["stages"][1]["init"].endswith("last.pt")


def test_contrastive_loss_documented_values():
    from train.losses import ContrastiveLoss

    cl = ContrastiveLoss()
    g = torch.Generator().manual_seed(0)
    anchor = torch.rand(2, 3, 24, 24, generator=g)
    near_neg = anchor + 0.1 * torch.randn(2, 3, 24, 24, generator=g)
    far_neg = anchor + 0.5 * torch.randn(2, 3, 24, 24, generator=g)
    pos = anchor + 0.05 * torch.randn(2, 3, 24, 24, generator=g)
    assert cl(anchor, anchor, near_neg).item() == 0.0  # positive = anchor
    assert cl(anchor, pos, far_neg) < cl(anchor, pos, near_neg)  # farther negative, lower loss
    # frozen extractor: gradients reach the anchor only
    a = anchor.clone().requires_grad_(True)
    cl(a, pos, near_neg).backward()
    assert a.grad.abs().sum() > 0 and all(p.grad is None for p in cl.parameters())


def test_prune_shapes_function_and_load(tmp_path):
    from rlfn_video.models import RLFN, arch_for, save_checkpoint
    from train.prune import prune

    torch.manual_seed(0)
    big = RLFN(arch_for("rlfn_s", 4))
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(prune(big, 48, 48)(x), big(x))  # keeping every channel changes nothing
    small = prune(big, 46, 48)
    assert small.conv_1.weight.shape == (46, 3, 3, 3) and small.block_1.c1_r.weight.shape == (48, 46, 3, 3)
    assert small.block_6.esa.conv1.weight.shape == (16, 46, 1, 1) and small.upsampler[0].weight.shape == (48, 46, 3, 3)
    path = tmp_path / "pruned.pth"
    save_checkpoint(path, small, value_range=1.0, meta={})
    desc = load_model(scale=4, model=None, weights=path)
    assert desc(x).shape == (1, 3, 96, 96)


RECIPE = """
model = "rlfn_s"
scale = 2
data = ["{data}"]
patch = 16
batch = 2
checkpoint_every = 2
log_every = 2

[[stages]]
name = "l1"
steps = 3
[[stages]]
name = "warm"
steps = 2
[[stages]]
name = "contrastive"
loss = "l1+contrastive"
steps = 2
[[stages]]
name = "prune"
prune_to = [40, 44]
steps = 2
[[stages]]
name = "mse"
loss = "mse"
lr = 1e-5
steps = 2
"""


def test_recipe_runs_every_stage_and_resumes(tmp_path, image_dir):
    from train.recipe import load_recipe, run_recipe

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE.replace("{data}", image_dir.name))
    root = image_dir.parent
    plan = load_recipe(recipe, tmp_path / "runs", root)
    assert [n for n, _, _ in plan] == ["l1", "warm", "contrastive", "prune", "mse"]
    assert plan[0][1].init is None and plan[2][1].init.endswith("warm/last.pt")
    run_recipe(recipe, tmp_path / "runs", root, only="l1")
    first = torch.load(tmp_path / "runs/tiny/l1/last.pt", weights_only=True)["model"]
    run_recipe(recipe, tmp_path / "runs", root)  # skips the finished stage, runs the rest
    assert torch.equal(torch.load(tmp_path / "runs/tiny/l1/last.pt", weights_only=True)["model"]["conv_1.weight"],
                       first["conv_1.weight"])
    states = {n: torch.load(tmp_path / f"runs/tiny/{n}/last.pt", weights_only=True) for n, _, _ in plan}
    assert all(s["step"] == c.steps for (n, c, _), s in zip(plan, states.values()))
    # every stage moved the weights it started from
    for (prev, _, _), (name, _, _) in zip(plan, plan[1:]):
        if name != "prune":
            assert not torch.equal(states[prev]["model"]["conv_1.weight"], states[name]["model"]["conv_1.weight"])
    assert states["prune"]["model"]["conv_1.weight"].shape[0] == 40
    assert states["mse"]["model"]["block_1.c1_r.weight"].shape[:2] == (44, 40)


# --- the GPU training kit, run here on the CPU ------------------------------------------------

from .shared import TRAIN, needs_train  # noqa: E402

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@needs_train
def test_pack_train_subset_keeps_folders_and_pixels(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "subset"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "pack_train_subset.py"), "--src", str(TRAIN),
                          "--out", str(out), "--mib", "3"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    files = sorted(out.glob("*/*.png"))
    assert files and sum(f.stat().st_size for f in files) <= 3 * 2**20
    assert {f.parent.name for f in files} <= {"t91", "wallpapers", "bsd200"}
    for f in files[:5]:
        with Image.open(f) as a, Image.open(TRAIN / f.parent.name / f.name) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
    assert "t91" in (out / "SUBSET.md").read_text()


@needs_train
def test_gpu_train_script_dry_run_on_cpu(tmp_path):
    """scripts/gpu_train.sh with DEVICE=cpu: bench, stage from the shipped weights, files in $OUT."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DEVICE": "cpu", "DATA": str(TRAIN), "BATCH": "2", "PATCH": "24", "OUT": str(tmp_path),
           "RUN_DIR": str(tmp_path / "run"), "PYTHON": sys.executable, "SEED": "1"}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train.sh"), "2", "0.05"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "it/s ->" in (tmp_path / "bench.txt").read_text()
    ck = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    assert ck["step"] >= 10 and ck["config"]["init"].endswith("rlfn_s_x2.pth")


def test_ema_is_an_average_resumes_bit_exactly_and_export_ships_the_better(tmp_path, image_dir):
    from train.export import _mean_psnr, export

    whole = Stage(_cfg(image_dir, steps=5, ema=0.5), tmp_path / "whole")
    start = [p.detach().clone() for p in whole.model.parameters()]
    whole.run()
    raw = list(whole.model.parameters())
    # an average of the path: different from the last weights, and between start and end on average
    assert all(not torch.equal(e, p) for e, p in zip(whole.ema, raw))
    assert sum((e - p).abs().sum() for e, p in zip(whole.ema, raw)) < sum((s - p).abs().sum() for s, p in zip(start, raw))
    part = Stage(_cfg(image_dir, steps=5, ema=0.5), tmp_path / "part")
    part.run(max_steps=2)
    resumed = Stage(_cfg(image_dir, steps=5, ema=0.5), tmp_path / "part")
    resumed.run()
    assert all(torch.equal(a, b) for a, b in zip(whole.ema, resumed.ema))
    ck = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    assert set(ck["ema"]) == set(ck["model"])
    meta = export([tmp_path / "whole"], tmp_path / "w.pth")
    choice = meta["ema"]
    assert choice["decay"] == 0.5 and {choice["shipped"]} <= {"ema", "raw"}
    best = "ema" if _mean_psnr(choice["ema"]) > _mean_psnr(choice["raw"]) else "raw"  # a tie keeps the raw weights
    assert choice["shipped"] == best and meta["eval"] == choice[best]
    shipped = load_model(scale=2, model="rlfn_s", weights=tmp_path / "w.pth").net.state_dict()
    source = ck["ema"] if best == "ema" else ck["model"]
    assert all(torch.equal(shipped[k], source[k].float()) for k in shipped)
