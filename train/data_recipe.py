"""Training images rebuilt from Debian packages: `python -m train data build` (train/recipes/data_debian.toml).

The manifest names each package at an exact version and, per kept image, its path in the package,
its license, the processing, the output size and the sha256 of the PNG. `build` fetches each .deb
with `apt-get download PKG=VERSION` (nothing is installed), checks the .deb's sha256, unpacks it with
`dpkg-deb -x`, remakes every listed PNG that is not already in OUT and refuses one whose pixels differ
from the manifest. `build --update` selects again instead, from the version apt offers now, and
rewrites the manifest:

- every image under the package's `include` globs, at least `min_short_side` px on its short side,
  opaque, sRGB (or no profile), not on the package's `deny` list;
- JPEG or WebP files, and PNGs that still show the 8x8 JPEG block grid (`jpeg_blocking`), are cropped
  to even size and halved with the MATLAB bicubic of `rlfn_video.resize`, so their artifacts shrink
  below a pixel; other PNGs stay full size. Everything becomes 8-bit RGB PNG;
- kept when the result has detail: the median over 32x32 blocks of Immerkaer's noise/detail estimate
  is at least `min_detail` (flat renders, gradients and bokeh score near 0); `allow` overrides this
  one test, `deny` catches the renders it lets through;
- dropped when near-identical (16x16 thumbnail) to an evaluation image (Set5, Set14, Kodak) or to an
  image already kept; one that matches the existing training set is kept and marked `same_as`.

Leaves out: installing anything, network access other than apt's, parallel work (one process).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps

from rlfn_video.atomic import atomic_output
from rlfn_video.resize import _weights

PROJECT = Path(__file__).resolve().parents[1]
MANIFEST = PROJECT / "train" / "recipes" / "data_debian.toml"
OUT = PROJECT / "train_data" / "debian"
CACHE = PROJECT / "train_data" / "cache"
SHARED_DATA = PROJECT.parent / "shared" / "data"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
EVAL_SETS = ["benchmarks/Set5/HR", "benchmarks/Set14/HR", "train/kodak"]
SPDX = {"GPL-2": "GPL-2.0-only", "GPL-2+": "GPL-2.0-or-later", "GPL-3": "GPL-3.0-only", "GPL-3+": "GPL-3.0-or-later",
        "LGPL-2.1": "LGPL-2.1-only", "LGPL-2.1+": "LGPL-2.1-or-later", "LGPL-3": "LGPL-3.0-only",
        "LGPL-3+": "LGPL-3.0-or-later", "Expat": "MIT"}


class DataRecipeError(RuntimeError):
    """A build that cannot go on; the message is one line and names the fix."""


# ---- pixels -------------------------------------------------------------------------------------------

def _banded(mat: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """`mat` (out, in) applied along `dim` (1: rows, 2: columns) of (C, H, W), 256 outputs at a time over
    only the inputs they weigh: imresize's dense matmul without its zeros, rounded like uint8."""
    nz = mat != 0
    first = nz.int().argmax(1)
    last = mat.shape[1] - 1 - nz.flip(1).int().argmax(1)
    parts = []
    for r0 in range(0, mat.shape[0], 256):
        r1 = min(r0 + 256, mat.shape[0])
        c0, c1 = int(first[r0:r1].min()), int(last[r0:r1].max()) + 1
        m = mat[r0:r1, c0:c1]
        parts.append(torch.matmul(m, x[:, c0:c1]) if dim == 1 else torch.matmul(x[:, :, c0:c1], m.T))
    return torch.cat(parts, dim=dim).round().clamp(0, 255)


def halve(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> MATLAB-bicubic 1/2 of its even-size crop, uint8.

    Equal to `imresize(x.double(), 0.5, quantize=True)`; float64 so that rounding does not hang on the
    BLAS's summation order (float32 flips a few hundred pixels by 1 between machines)."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    x = torch.from_numpy(rgb[:h, :w].copy()).permute(2, 0, 1).double()
    x = _banded(_weights(h, h // 2, 0.5), x, 1)
    x = _banded(_weights(w, w // 2, 0.5), x, 2)
    return x.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def jpeg_blocking(y: np.ndarray) -> float:
    """How much stronger steps are across 8-px block boundaries than at the other 7 phases (the larger
    of both axes): about 1 for camera or rendered pixels, above 1.05 where a JPEG's grid survives."""
    ratios = []
    for d in (np.abs(np.diff(y, axis=1)).mean(axis=0), np.abs(np.diff(y, axis=0)).mean(axis=1)):
        n = len(d) // 8 * 8
        phase = d[:n].reshape(-1, 8).mean(axis=0)
        ratios.append(float(phase[7] / max(np.median(phase[:7]), 1e-6)))
    return max(ratios)


def detail(y: np.ndarray) -> float:
    """Median over 32x32 blocks of Immerkaer's estimate (mean |Laplacian-difference kernel| * sqrt(pi/2)/6):
    sensor noise plus fine texture in grey levels; flat art and gradients give ~0, photos 0.3-50."""
    m = (y[:-2, :-2] - 2 * y[:-2, 1:-1] + y[:-2, 2:] - 2 * y[1:-1, :-2] + 4 * y[1:-1, 1:-1] - 2 * y[1:-1, 2:]
         + y[2:, :-2] - 2 * y[2:, 1:-1] + y[2:, 2:])
    h, w = m.shape[0] // 32 * 32, m.shape[1] // 32 * 32
    if not h or not w:
        return 0.0
    blocks = np.abs(m[:h, :w]).reshape(h // 32, 32, w // 32, 32).mean(axis=(1, 3))
    return float(np.median(blocks) * np.sqrt(np.pi / 2) / 6)


def thumb(im: Image.Image) -> tuple[np.ndarray, float]:
    """Unit-norm zero-mean 16x16 grey thumbnail and the aspect ratio: what near-identical compares."""
    t = np.asarray(im.convert("L").resize((16, 16), Image.BOX), np.float64).ravel()
    t = t - t.mean()
    return t / (np.linalg.norm(t) or 1.0), im.width / im.height


def near(a: tuple[np.ndarray, float], b: tuple[np.ndarray, float]) -> bool:
    return abs(a[1] / b[1] - 1) < 0.03 and float(a[0] @ b[0]) >= 0.95


def pixels_sha256(rgb: np.ndarray) -> str:
    return hashlib.sha256(f"{rgb.shape[0]}x{rgb.shape[1]}x3:".encode() + rgb.tobytes()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def process(path: Path, processing: str) -> np.ndarray:
    """The output pixels of one source file: EXIF-upright RGB, halved when `processing` is "halve"."""
    with Image.open(path) as im:
        rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    return halve(rgb) if processing == "halve" else rgb


def inspect(path: Path, *, min_short_side: int, min_detail: float, blocking: float,
            allowed: bool = False) -> tuple[np.ndarray | None, dict]:
    """Decide one source file: (output pixels, info) when kept, (None, {"reason": ...}) when not."""
    with Image.open(path) as im:
        fmt, mode, (w, h) = im.format, im.mode, im.size
        if min(w, h) < min_short_side:
            return None, {"reason": f"{w}x{h}: short side under {min_short_side}"}
        if mode not in ("RGB", "RGBA", "L", "LA", "P"):
            return None, {"reason": f"mode {mode}"}
        icc = im.info.get("icc_profile")
        if icc:
            desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
            if "srgb" not in desc.lower():
                return None, {"reason": f"ICC profile {desc!r} is not sRGB"}
        if mode in ("RGBA", "LA") or (mode == "P" and "transparency" in im.info):
            if im.convert("RGBA").getchannel("A").getextrema()[0] < 255:
                return None, {"reason": "has transparent pixels"}
        rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    if fmt in ("JPEG", "WEBP"):
        origin = fmt.lower()
    else:
        grid = jpeg_blocking(luma(rgb))
        origin = f"png, JPEG grid {grid:.2f}" if grid >= blocking else "png"
    processing = "full" if origin == "png" else "halve"
    out = halve(rgb) if processing == "halve" else rgb
    d = detail(luma(out))
    info = {"origin": origin, "processing": processing, "detail": round(d, 3)}
    if d < min_detail and not allowed:
        return None, {"reason": f"detail {d:.2f} < {min_detail} ({origin}, {processing})"}
    return out, info


# ---- Debian packages ------------------------------------------------------------------------------------

def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise DataRecipeError(f"{cmd[0]} not found: the data build needs Debian's apt-get and dpkg-deb") from None
    if r.returncode:
        msg = " ".join((r.stderr or r.stdout).strip().splitlines()[-1:])
        raise DataRecipeError(f"`{' '.join(cmd)}` failed: {msg}")
    return r.stdout


def available_version(name: str) -> str:
    m = re.search(r"Candidate:\s*(\S+)", _run(["apt-cache", "policy", name]))
    if not m or m.group(1) == "(none)":
        raise DataRecipeError(f"apt offers no {name} (run apt-get update, or take it out of the manifest)")
    return m.group(1)


def fetch(name: str, version: str, cache: Path) -> Path:
    """The .deb of name=version in CACHE/debs, downloaded by apt-get when not there yet."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        for deb in sorted(debs.glob(f"{name}_*.deb")):
            if _run(["dpkg-deb", "-f", str(deb), "Version"]).strip() == version:
                return deb
        if attempt == 0:
            try:
                _run(["apt-get", "download", "-q", f"{name}={version}"], cwd=debs)
            except DataRecipeError as e:
                raise DataRecipeError(f"{name} {version} cannot be downloaded ({e}); `python -m train data build "
                                      f"--update` moves the manifest to the version apt offers") from None
    raise DataRecipeError(f"apt-get download {name}={version} left no such .deb in {debs}")


def unpack(deb: Path, name: str, version: str, cache: Path) -> Path:
    root = cache / "pkgs" / f"{name}_{version.replace(':', '%3a')}"
    if not (root / ".unpacked").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(root)])
        (root / ".unpacked").touch()
    return root


def parse_copyright(text: str) -> list[tuple[list[str], str, str]]:
    """(Files patterns, Copyright, License name) of each `Files:` paragraph of a DEP-5 copyright file."""
    out = []
    for para in re.split(r"\n[ \t]*\n", text):
        fields, key = {}, None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        if "Files" in fields and "License" in fields:
            cr = "; ".join(s for s in fields.get("Copyright", "").splitlines() if s and s != ".")
            out.append((fields["Files"].split(), cr, fields["License"].splitlines()[0].strip()))
    return out


def _dep5_match(rel: str, pattern: str) -> bool:
    """DEP-5 patterns name source-tree paths; installed files sit elsewhere, so a pattern matches a path
    that ends like it, or (when its last part is not a bare `*`) a file of the same name."""
    if pattern == "*" or fnmatch.fnmatchcase(rel, "*/" + pattern) or fnmatch.fnmatchcase(rel, pattern):
        return True
    base = pattern.rsplit("/", 1)[-1]
    return base != "*" and fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], base)


def license_for(rel: str, stanzas: list[tuple[list[str], str, str]]) -> tuple[str, str] | None:
    """(SPDX license, copyright) of the last paragraph that matches, as DEP-5 says; None without one."""
    hit = None
    for patterns, cr, lic in stanzas:
        if any(_dep5_match(rel, p) for p in patterns):
            hit = (" OR ".join(SPDX.get(p.strip(), p.strip()) for p in lic.split(" or ")), cr)
    return hit


def _matches(rel: str, patterns) -> str | None:
    """The first pattern (file name, or path when it holds a /) that `rel` matches."""
    name = rel.rsplit("/", 1)[-1]
    return next((p for p in patterns if fnmatch.fnmatchcase(rel if "/" in p else name, p)), None)


def out_name(package: str, rel: str) -> str:
    """`<package>_<stem>.png`; a size-named file (plasma's .../<Name>/contents/images/2560x1600.jpg) takes the
    wallpaper's folder name, with `-dark` for images_dark."""
    parts = rel.split("/")
    stem = Path(rel).stem
    if re.fullmatch(r"\d+x\d+", stem) and "contents" in parts:
        i = parts.index("contents")
        stem = parts[i - 1] + ("-dark" if parts[i + 1].endswith("_dark") else "")
    return f"{package}_{stem}.png"


# ---- manifest ------------------------------------------------------------------------------------------

HEADER = """\
# Training images rebuilt from Debian packages: `python -m train data build` writes them to train_data/debian/
# (train/data_recipe.py says how files are chosen and processed). Written by `python -m train data build --update`:
# edit only suite/thresholds, [[examined]], and per package name, include, license_note, deny and allow;
# versions, hashes, files and dropped are rewritten from the packages. Licenses are SPDX ids taken from each
# package's /usr/share/doc/PKG/copyright (as stated there; not legal advice); mpix is the output size.
"""


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {type(v).__name__}")


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def dumps_manifest(m: dict) -> str:
    """The manifest as TOML: top-level values, [[examined]], then per package its values, its deny/allow/
    dropped tables and its [[packages.files]]."""
    lines = [HEADER]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in m.items() if not isinstance(v, (dict, list)) or
              (isinstance(v, list) and not (v and isinstance(v[0], dict)))]
    for k, v in m.items():
        if isinstance(v, dict):
            lines += ["", f"[{_key(k)}]"] + [f"{_key(a)} = {_value(b)}" for a, b in v.items()]
    for e in m.get("examined", []):
        lines += ["", "[[examined]]"] + [f"{_key(a)} = {_value(b)}" for a, b in e.items()]
    for p in m.get("packages", []):
        lines += ["", "[[packages]]"]
        lines += [f"{_key(a)} = {_value(b)}" for a, b in p.items() if not isinstance(b, dict) and a != "files"]
        for table in ("deny", "allow", "dropped"):
            if p.get(table):
                lines += [f"[packages.{table}]"] + [f"{_key(a)} = {_value(b)}" for a, b in p[table].items()]
        for f in p.get("files", []):
            lines += ["[[packages.files]]"] + [f"{_key(a)} = {_value(b)}" for a, b in f.items()]
    return "\n".join(lines) + "\n"


def load_manifest(path: Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataRecipeError(f"no manifest {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise DataRecipeError(f"{path}: {e}") from None


# ---- build -----------------------------------------------------------------------------------------------

def _write_png(rgb: np.ndarray, dest: Path) -> None:
    with atomic_output(dest, overwrite=True) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG", compress_level=6)


def is_done(dest: Path, entry: dict) -> bool:
    """The PNG is there with the manifest's bytes, or (another Pillow/zlib) its pixels."""
    if not dest.exists():
        return False
    if file_sha256(dest) == entry["sha256"]:
        return True
    with Image.open(dest) as im:
        return pixels_sha256(np.asarray(im.convert("RGB"))) == entry["pixels_sha256"]


def make_file(root: Path, package: str, entry: dict, out: Path) -> bool:
    """Remake one manifest file in OUT; refuse pixels that differ from the manifest. True when the PNG
    bytes match too (False: same pixels, another PNG encoder build)."""
    rgb = process(root / entry["source"], entry["processing"])
    got = pixels_sha256(rgb)
    if got != entry["pixels_sha256"]:
        raise DataRecipeError(
            f"{entry['out']}: pixels sha256 {got[:12]}… is not the manifest's {entry['pixels_sha256'][:12]}… "
            f"({package} or the processing is not what the manifest recorded); `python -m train data build "
            f"--update` re-selects and rewrites the manifest")
    dest = out / entry["out"]
    _write_png(rgb, dest)
    return file_sha256(dest) == entry["sha256"]


def _references(shared: Path, on_log) -> tuple[list, list, list[str]]:
    """Thumbnails of the evaluation sets and of the existing training folders under SHARED (data/)."""
    evals, train, checked = [], [], []
    folders = [(shared / s, evals) for s in EVAL_SETS]
    if (shared / "train").is_dir():
        folders += [(d, train) for d in sorted((shared / "train").iterdir())
                    if d.is_dir() and str(d.relative_to(shared)) not in EVAL_SETS]
    for folder, into in folders:
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in SUFFIXES | {".bmp"}) if folder.is_dir() \
            else []
        if not files:
            on_log(f"warning: {folder} has no images: not checked against it")
            continue
        for p in files:
            with Image.open(p) as im:
                into.append((f"{folder.relative_to(shared)}/{p.name}", thumb(im)))
        checked.append(f"{folder.relative_to(shared)} ({len(files)})")
    return evals, train, checked


def select(m: dict, out: Path, cache: Path, shared: Path, on_log) -> dict:
    """`--update`: every package at apt's version, every image chosen again, PNGs written; returns the new
    manifest."""
    evals, train, checked = _references(shared, on_log)
    m = {**m, "checked_against": checked}
    kept_thumbs: list[tuple[str, tuple]] = []
    rules = dict(min_short_side=m["min_short_side"], min_detail=m["min_detail"], blocking=m["jpeg_blocking"])
    for p in m["packages"]:
        name = p["name"]
        p["version"] = available_version(name)
        deb = fetch(name, p["version"], cache)
        p["deb_sha256"] = file_sha256(deb)
        root = unpack(deb, name, p["version"], cache)
        stanzas = parse_copyright((root / "usr/share/doc" / name / "copyright").read_text(errors="replace"))
        files, dropped = [], {}
        rels = sorted({str(f.relative_to(root)) for g in p.get("include", ["**/*"]) for f in root.glob(g)
                       if f.is_file() and not f.is_symlink() and f.suffix.lower() in SUFFIXES})
        for rel in rels:
            if hit := _matches(rel, p.get("deny", {})):
                dropped[rel] = f"deny: {p['deny'][hit]}"
                continue
            lic = license_for(rel, stanzas)
            if lic is None:
                dropped[rel] = "no license for it in the package's copyright file"
                continue
            rgb, info = inspect(root / rel, allowed=_matches(rel, p.get("allow", {})) is not None, **rules)
            if rgb is None:
                dropped[rel] = info["reason"]
                on_log(f"drop {name}: {rel}: {info['reason']}")
                continue
            t = thumb(Image.fromarray(rgb))
            ev = next((n for n, r in evals if near(t, r)), None)
            dup = next((n for n, r in kept_thumbs if near(t, r)), None)
            if ev or dup:
                dropped[rel] = f"near-identical to {ev}" if ev else f"same picture as {dup}"
                on_log(f"drop {name}: {rel}: {dropped[rel]}")
                continue
            entry = {"source": rel, "out": out_name(name, rel), "license": lic[0], "copyright": lic[1], **info,
                     "size": [rgb.shape[1], rgb.shape[0]], "mpix": round(rgb.shape[0] * rgb.shape[1] / 1e6, 3)}
            if same := next((n for n, r in train if near(t, r)), None):
                entry["same_as"] = same
            if any(f["out"] == entry["out"] for f in files):
                raise DataRecipeError(f"{name}: two kept files would both be {entry['out']}")
            dest = out / entry["out"]
            _write_png(rgb, dest)
            entry |= {"pixels_sha256": pixels_sha256(rgb), "sha256": file_sha256(dest)}
            files.append(entry)
            kept_thumbs.append((entry["out"], t))
            on_log(f"keep {name}: {rel} -> {entry['out']} ({info['processing']}, {rgb.shape[1]}x{rgb.shape[0]}, "
                   f"detail {info['detail']})")
        p["dropped"], p["files"] = dropped, files
    return m


def build(manifest: Path = MANIFEST, out: Path = OUT, cache: Path = CACHE, *, update: bool = False,
          shared: Path = SHARED_DATA, on_log=print) -> dict:
    """Make OUT from the manifest (or, with `update`, select again and rewrite it). Returns counts and time."""
    t0 = time.monotonic()
    torch.set_num_threads(1)
    m = load_manifest(manifest)
    out.mkdir(parents=True, exist_ok=True)
    stats = {"written": 0, "skipped": 0, "encoder_differs": 0}
    if update:
        m = select(m, out, cache, shared, on_log)
        Path(manifest).write_text(dumps_manifest(m))
        stats["written"] = sum(len(p["files"]) for p in m["packages"])
        on_log(f"rewrote {manifest}")
    else:
        for p in m["packages"]:
            name, version = p["name"], p["version"]
            todo = [f for f in p["files"] if not is_done(out / f["out"], f)]
            stats["skipped"] += len(p["files"]) - len(todo)
            if not todo:
                continue
            deb = fetch(name, version, cache)
            if (got := file_sha256(deb)) != p["deb_sha256"]:
                raise DataRecipeError(f"{deb.name}: sha256 {got[:12]}… is not the manifest's "
                                      f"{p['deb_sha256'][:12]}… "
                                      f"(another build of {name} {version}); `python -m train data build --update` "
                                      f"re-selects from it")
            root = unpack(deb, name, version, cache)
            for f in todo:
                stats["encoder_differs"] += not make_file(root, name, f, out)
                stats["written"] += 1
                on_log(f"wrote {f['out']}")
    listed = {f["out"] for p in m["packages"] for f in p["files"]}
    extra = sorted(p.name for p in out.glob("*.png") if p.name not in listed)
    if extra:
        on_log(f"warning: {len(extra)} PNGs in {out} are not in the manifest (training would read them): "
               f"{', '.join(extra[:5])}{' …' if len(extra) > 5 else ''}")
    if stats["encoder_differs"]:
        on_log(f"note: {stats['encoder_differs']} PNGs have the manifest's pixels but other bytes (another "
               f"Pillow/zlib build)")
    stats["seconds"] = round(time.monotonic() - t0, 1)
    return stats


def report(manifest: Path = MANIFEST, out: Path = OUT) -> str:
    """Images and megapixels per license (from the manifest), and what OUT holds of them."""
    m = load_manifest(manifest)
    per: dict[str, list] = {}
    present, size = 0, 0
    for p in m["packages"]:
        for f in p["files"]:
            row = per.setdefault(f["license"], [0, 0.0])
            row[0] += 1
            row[1] += f["mpix"]
            if (out / f["out"]).exists():
                present += 1
                size += (out / f["out"]).stat().st_size
    width = max([len(k) for k in per] + [7])
    lines = [f"{'license':{width}}  images    MPix"]
    lines += [f"{k:{width}}  {n:6d}  {mp:6.1f}" for k, (n, mp) in sorted(per.items(), key=lambda kv: -kv[1][1])]
    total = sum(n for n, _ in per.values()), sum(mp for _, mp in per.values())
    lines.append(f"{'total':{width}}  {total[0]:6d}  {total[1]:6.1f}")
    lines.append(f"{out}: {present} of {total[0]} files, {size / 2**20:.1f} MiB")
    return "\n".join(lines)
