"""train/data_recipe.py: selection and processing on synthetic images (no network, no apt), the hash checks,
the manifest round trip, and, when `python -m train data build` has run, the built folder itself."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch
from PIL import Image

from rlfn_video.resize import imresize
from train import data_recipe as dr

RULES = dict(min_short_side=1024, min_detail=0.25, blocking=1.05)


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """1/f noise in colour: texture at every scale, like foliage or gravel."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    amp = 1 / np.maximum(np.hypot(fy, fx), 1 / max(h, w))
    chans = [np.fft.irfft2(amp * np.exp(2j * np.pi * rng.random(amp.shape)), s=(h, w)) for _ in range(3)]
    x = np.stack([(c - c.mean()) / c.std() for c in chans], -1)
    return np.clip(128 + 40 * x + rng.normal(0, 2, x.shape), 0, 255).astype(np.uint8)


def gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full((h, w), 90)], -1).astype(np.uint8)


def test_photo_texture_kept_gradient_dropped(tmp_path):
    Image.fromarray(photo_like(1100, 1300)).save(tmp_path / "photo.png")
    Image.fromarray(gradient(1100, 1300)).save(tmp_path / "flat.png")
    rgb, info = dr.inspect(tmp_path / "photo.png", **RULES)
    assert rgb is not None and info["processing"] == "full" and info["detail"] > 1
    assert rgb.shape == (1100, 1300, 3)
    rgb, info = dr.inspect(tmp_path / "flat.png", **RULES)
    assert rgb is None and info["reason"].startswith("detail 0.00 < 0.25")
    rgb, info = dr.inspect(tmp_path / "flat.png", allowed=True, **RULES)  # the allow list overrides detail only
    assert rgb is not None


def test_small_transparent_and_non_srgb_are_dropped(tmp_path):
    Image.fromarray(photo_like(800, 1300)).save(tmp_path / "small.png")
    assert dr.inspect(tmp_path / "small.png", **RULES)[1]["reason"] == "1300x800: short side under 1024"
    rgba = np.dstack([photo_like(1024, 1024), np.full((1024, 1024), 255, np.uint8)])
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    assert dr.inspect(tmp_path / "alpha.png", **RULES)[1]["reason"] == "has transparent pixels"
    rgba[0, 0, 3] = 255  # opaque RGBA is fine
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    assert dr.inspect(tmp_path / "opaque.png", **RULES)[0] is not None
    from PIL import ImageCms

    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.fromarray(photo_like(1024, 1024)).save(tmp_path / "lab.png", icc_profile=lab)
    assert "is not sRGB" in dr.inspect(tmp_path / "lab.png", **RULES)[1]["reason"]


def test_halve_is_matlab_bicubic():
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (301, 522, 3), dtype=torch.uint8, generator=g).numpy()
    rgb[:, :100] = photo_like(301, 100)  # smooth and noisy parts
    got = dr.halve(rgb)
    assert got.shape == (150, 261, 3) and got.dtype == np.uint8  # odd height cropped to 300 first
    ref = imresize(torch.from_numpy(rgb[:300].copy()).permute(2, 0, 1).double(), 0.5, quantize=True)
    assert np.array_equal(got, ref.to(torch.uint8).permute(1, 2, 0).numpy())
    ref32 = imresize(torch.from_numpy(rgb[:300].copy()).permute(2, 0, 1), 0.5, quantize=True)  # uint8 path: float32
    assert np.abs(got.astype(int) - ref32.permute(1, 2, 0).numpy().astype(int)).max() <= 1


def test_jpeg_origin_is_halved_png_origin_kept(tmp_path):
    src = photo_like(1200, 1400, seed=1)
    Image.fromarray(src).save(tmp_path / "a.jpg", quality=80)
    rgb, info = dr.inspect(tmp_path / "a.jpg", **RULES)
    assert info["origin"] == "jpeg" and info["processing"] == "halve" and rgb.shape == (600, 700, 3)
    with Image.open(tmp_path / "a.jpg") as im:  # a PNG saved from the decoded JPEG: the grid gives it away
        im.save(tmp_path / "b.png")
    rgb, info = dr.inspect(tmp_path / "b.png", **RULES)
    assert info["origin"].startswith("png, JPEG grid") and info["processing"] == "halve"
    assert dr.jpeg_blocking(dr.luma(src)) < 1.05


def _entry(root, tmp_path):
    Image.fromarray(photo_like(64, 80, seed=3)).save(root / "pic.jpg", quality=90)
    rgb = dr.process(root / "pic.jpg", "halve")
    png = tmp_path / "ref.png"
    dr._write_png(rgb, png)
    return {"source": "pic.jpg", "out": "pkg_pic.png", "processing": "halve", "pixels_sha256": dr.pixels_sha256(rgb),
            "sha256": dr.file_sha256(png)}


def test_make_file_writes_and_refuses_a_mismatch(tmp_path):
    root, out = tmp_path / "pkg", tmp_path / "out"
    root.mkdir(), out.mkdir()
    entry = _entry(root, tmp_path)
    assert not dr.is_done(out / "pkg_pic.png", entry)
    assert dr.make_file(root, "pkg", entry, out)
    assert dr.is_done(out / "pkg_pic.png", entry)
    bad = {**entry, "pixels_sha256": "0" * 64}  # another package version: other pixels
    with pytest.raises(dr.DataRecipeError, match=r"^pkg_pic.png: pixels sha256 .* --update") as e:
        dr.make_file(root, "pkg", bad, out)
    assert "\n" not in str(e.value)
    # Other PNG bytes with the same pixels (another zlib) still count as done.
    with Image.open(out / "pkg_pic.png") as im:
        im.save(out / "pkg_pic.png", compress_level=1)
    assert dr.file_sha256(out / "pkg_pic.png") != entry["sha256"] and dr.is_done(out / "pkg_pic.png", entry)


def test_build_refuses_another_deb(tmp_path, monkeypatch):
    manifest = tmp_path / "m.toml"
    root = tmp_path / "pkg"
    root.mkdir()
    entry = _entry(root, tmp_path)
    m = {"suite": "bookworm", "min_short_side": 1024, "min_detail": 0.25, "jpeg_blocking": 1.05,
         "packages": [{"name": "pkg", "version": "1.0-1", "deb_sha256": "0" * 64, "files": [entry]}]}
    manifest.write_text(dr.dumps_manifest(m))
    deb = tmp_path / "pkg_1.0-1_all.deb"
    deb.write_bytes(b"not the recorded deb")
    monkeypatch.setattr(dr, "fetch", lambda name, version, cache: deb)
    with pytest.raises(dr.DataRecipeError, match=r"sha256 .* is not the manifest's .*another build of pkg 1.0-1"):
        dr.build(manifest, tmp_path / "out", tmp_path / "cache", on_log=lambda s: None)


def test_manifest_round_trip():
    m = {"suite": "bookworm", "min_detail": 0.25, "checked_against": ["train/kodak (24)"],
         "examined": [{"name": "x", "version": "1", "reason": "renders"}],
         "packages": [{"name": "p", "version": "4:5.2-1", "include": ["usr/share/*"],
                       "deny": {"*/Autumn/*": "painting", "a b.jpg": 'say "no"'}, "allow": {"c.jpg": "ok"},
                       "dropped": {"usr/x.png": "detail 0.01 < 0.25"},
                       "files": [{"source": "usr/é.jpg", "size": [10, 20], "mpix": 0.0002, "same_as": "w/é.png"},
                                 {"source": "usr/f.jpg", "size": [1, 2], "mpix": 1.5}]}]}
    assert tomllib.loads(dr.dumps_manifest(m)) == m


def test_license_from_dep5_copyright():
    text = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2014 KDE
License: GPL-2+

Files: 16.04/Bridge_by_Sander_Klootwijk.jpg
Copyright: 2018. Sander Klootwijk
License: CC-BY-SA-4.0

Files: desktop/Ubuntu-Mate-*-no-logo.png
Copyright: 2014 Goce Mitevski
License: CC-BY-SA-4.0

Files: debian/*
Copyright: 2018 Someone
License: Expat

License: GPL-2+
 This program is free software ...
"""
    st = dr.parse_copyright(text)
    assert dr.license_for("usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg", st) == \
        ("CC-BY-SA-4.0", "2018. Sander Klootwijk")
    assert dr.license_for("usr/share/backgrounds/mate/desktop/Ubuntu-Mate-Cold-no-logo.png", st)[0] == "CC-BY-SA-4.0"
    assert dr.license_for("usr/share/wallpapers/Path/contents/images/2560x1600.jpg", st) == \
        ("GPL-2.0-or-later", "2014 KDE")
    either = dr.parse_copyright("Files: a\nLicense: GPL-3+ or CC-BY-SA-3.0\n")
    assert dr.license_for("x/a", either)[0] == "GPL-3.0-or-later OR CC-BY-SA-3.0"


def test_names_and_patterns():
    assert dr.out_name("plasma-workspace-wallpapers", "usr/share/wallpapers/Path/contents/images/2560x1600.jpg") \
        == "plasma-workspace-wallpapers_Path.png"
    assert dr.out_name("p", "usr/share/wallpapers/Kay/contents/images_dark/5120x2880.png") == "p_Kay-dark.png"
    assert dr.out_name("mate-backgrounds", "usr/share/backgrounds/mate/nature/Wood.jpg") == "mate-backgrounds_Wood.png"
    deny = {"kde-plasma.png": "render", "*/Autumn/*": "painting"}
    assert dr._matches("usr/share/lxqt/wallpapers/kde-plasma.png", deny) == "kde-plasma.png"
    assert dr._matches("usr/share/wallpapers/Autumn/contents/images/2560x1600.jpg", deny) == "*/Autumn/*"
    assert dr._matches("usr/share/wallpapers/Path/contents/images/2560x1600.jpg", deny) is None


def test_near_identical_thumbnails():
    a = photo_like(300, 400, seed=5)
    noisy = np.clip(a.astype(int) + np.random.default_rng(0).integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    ta = dr.thumb(Image.fromarray(a))
    assert dr.near(ta, dr.thumb(Image.fromarray(noisy)))
    assert dr.near(ta, dr.thumb(Image.fromarray(dr.halve(a))))  # a halved copy is the same picture
    assert not dr.near(ta, dr.thumb(Image.fromarray(photo_like(300, 400, seed=6))))
    assert not dr.near(ta, dr.thumb(Image.fromarray(a[:, :300])))  # other aspect


def test_recipe_data_entry_relative_to_project(tmp_path):
    from train.recipe import load_recipe

    recipe = tmp_path / "r.toml"
    recipe.write_text('data = ["wallpapers", "./train_data/debian"]\n[[stages]]\nname = "a"\n')
    (_, cfg, _), = load_recipe(recipe, tmp_path / "runs", tmp_path / "root")
    assert cfg.data == [str(tmp_path / "root" / "wallpapers"), str(dr.PROJECT / "train_data" / "debian")]


def test_cli_report_and_error_line(monkeypatch):
    from typer.testing import CliRunner

    from train.__main__ import app

    r = CliRunner().invoke(app, ["data", "report"])
    assert r.exit_code == 0 and "total" in r.output and "CC-BY-4.0" in r.output

    def fail(*a, **k):
        raise dr.DataRecipeError("x.png: pixels sha256 … is not the manifest's …")

    monkeypatch.setattr(dr, "build", fail)
    r = CliRunner().invoke(app, ["data", "build"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == ["error: x.png: pixels sha256 … is not the manifest's …"]


def test_built_folder_matches_manifest():
    """Every file of the committed manifest is in the built folder with its hash (after `data build`)."""
    m = dr.load_manifest(dr.MANIFEST)
    entries = [f for p in m["packages"] for f in p["files"]]
    if not dr.OUT.is_dir() or not any(dr.OUT.glob("*.png")):
        pytest.skip(f"{dr.OUT} not built (python -m train data build)")
    missing = [f["out"] for f in entries if not (dr.OUT / f["out"]).exists()]
    assert not missing, f"not built: {missing[:5]}"
    wrong = [f["out"] for f in entries if not dr.is_done(dr.OUT / f["out"], f)]
    assert not wrong, f"hash differs: {wrong[:5]}"
