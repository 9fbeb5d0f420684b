"""Recipes: a small TOML file per model and scale listing its stages, run in order.

Top-level keys are defaults for every stage (model, scale, data, patch, batch, lr, ...); each
`[[stages]]` entry names a stage and overrides what it needs (loss, steps, lr, prune_to, init).
A stage warm-starts from the previous stage's weights unless it sets `init` itself: a weights
file, another recipe's stage as "RECIPE/STAGE" (its RUNS/RECIPE/STAGE/last.pt), or "none". Stage NAME runs in RUNS/<recipe>/<NAME>; a finished stage is skipped and an interrupted
one resumes exactly, so rerunning the same command continues the recipe where it stopped.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from .trainer import Runtime, Stage, StageConfig

_FIELDS = {f.name for f in fields(StageConfig)}
PROJECT = Path(__file__).resolve().parents[1]


def _data_dir(data_root: Path, entry: str) -> str:
    """A `data` entry: a folder under data_root, or under the project when it starts with "./"
    (e.g. "./train_data/debian", built by `python -m train data build`); an absolute path as is."""
    return str(PROJECT / entry if entry.startswith("./") else data_root / entry)


def load_recipe(path: Path, runs: Path, data_root: Path) -> list[tuple[str, StageConfig, Path]]:
    """(name, config, run folder) of every stage, with inheritance resolved."""
    raw = tomllib.loads(Path(path).read_text())
    stages = raw.pop("stages", [])
    if not stages:
        raise ValueError(f"{path}: no [[stages]]")
    unknown = set(raw) - _FIELDS - {"description"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    base = {k: v for k, v in raw.items() if k in _FIELDS}
    base["data"] = [_data_dir(data_root, d) for d in base.get("data", [])]
    out, prev = [], None
    for st in stages:
        st = dict(st)
        name = st.pop("name")
        bad = set(st) - _FIELDS
        if bad:
            raise ValueError(f"{path}: stage {name!r} has unknown keys {sorted(bad)}")
        run_dir = runs / Path(path).stem / name
        cfg = {**base, **st}
        if "data" in st:
            cfg["data"] = [_data_dir(data_root, d) for d in st["data"]]
        init = cfg.get("init")
        if init == "none":
            cfg["init"] = None
        elif init is None and prev is not None:
            cfg["init"] = str(prev / "last.pt")
        elif init is not None and Path(init).suffix not in (".pt", ".pth"):
            cfg["init"] = str(runs / init / "last.pt")
        out.append((name, StageConfig(**cfg), run_dir))
        prev = run_dir
    return out


def run_recipe(path: Path, runs: Path, data_root: Path, *, only: str | None = None, runtime: Runtime | None = None,
               on_log=None) -> list[Path]:
    """Run (or resume) the recipe's stages; returns the run folders, first to last."""
    plan = load_recipe(path, runs, data_root)
    names = [n for n, _, _ in plan]
    if only is not None and only not in names:
        raise ValueError(f"{path}: no stage {only!r} (stages: {', '.join(names)})")
    for name, cfg, run_dir in plan:
        if only is not None and name != only:
            continue
        stage = Stage(cfg, run_dir, runtime=runtime)
        if stage.step < cfg.steps:
            stage.run(on_log=(lambda r, n=name: on_log({"stage": n, **r})) if on_log else None)
    return [d for _, _, d in plan]
