"""Pack the training subset a GPU machine gets: the device call carries at most 64 MiB of working
tree, and the full set (wallpapers + bsd200 + t91, ~118 MiB of PNG) does not fit.

    python scripts/pack_train_subset.py [--src ../shared/data/train] [--out train_subset] [--mib 50]

Keeps the folder names the recipes use; takes all of t91, then wallpapers and bsd200 image by
image (sorted names, alternating) until the budget; PNGs re-saved with maximum compression, so
the pixels are unchanged. Writes SUBSET.md listing what went in. `train_subset/` is git-ignored.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image

ORDER = ("t91", "wallpapers", "bsd200")


def png_bytes(path: Path) -> bytes:
    buf = io.BytesIO()
    with Image.open(path) as im:
        im.save(buf, format="PNG", optimize=True, compress_level=9)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "train")
    ap.add_argument("--out", type=Path, default=Path("train_subset"))
    ap.add_argument("--mib", type=float, default=50.0)
    args = ap.parse_args()
    budget = int(args.mib * 2**20)
    queues = {name: sorted((args.src / name).glob("*.png")) for name in ORDER}
    if not any(queues.values()):
        raise SystemExit(f"no training images under {args.src}")
    taken: dict[str, list[str]] = {name: [] for name in ORDER}
    used = 0
    # t91 whole first (small), then wallpapers and bsd200 alternately.
    plan = [("t91", p) for p in queues["t91"]]
    rest = [queues["wallpapers"], queues["bsd200"]]
    while any(rest):
        for name, q in zip(("wallpapers", "bsd200"), rest):
            if q:
                plan.append((name, q.pop(0)))
    for name, path in plan:
        if used + path.stat().st_size // 2 > budget:  # re-compression never halves a PNG: skip unread
            continue
        data = png_bytes(path)
        if used + len(data) > budget:
            continue
        (args.out / name).mkdir(parents=True, exist_ok=True)
        (args.out / name / path.name).write_bytes(data)
        taken[name].append(path.name)
        used += len(data)
    lines = [f"# Training subset for GPU runs ({used / 2**20:.1f} MiB, budget {args.mib} MiB)", "",
             f"From `{args.src}` by scripts/pack_train_subset.py; pixels unchanged (PNG re-compressed).", "",
             "| folder | images taken | of |", "|---|---|---|"]
    lines += [f"| {n} | {len(taken[n])} | {len(list((args.src / n).glob('*.png')))} |" for n in ORDER]
    lines += ["", "Licenses: see each source folder's README (wallpapers: CC-BY/CC-BY-SA/CC0/GPL/LGPL; "
              "bsd200, t91: research use).", "", *(f"- {n}/{f}" for n in ORDER for f in taken[n])]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "SUBSET.md").write_text("\n".join(lines) + "\n")
    print(f"{args.out}: {sum(map(len, taken.values()))} images, {used / 2**20:.1f} MiB "
          f"({', '.join(f'{n} {len(taken[n])}' for n in ORDER)})")


if __name__ == "__main__":
    main()
