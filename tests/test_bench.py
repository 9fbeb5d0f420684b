"""The benchmark measures ours and the naive baseline in one run and reports both."""

import json

from typer.testing import CliRunner

from rlfn_video.cli import app
from rlfn_video.models import RLFN, arch_for, save_checkpoint


def test_bench_all_modes_small(tmp_path):
    weights = tmp_path / "w.pth"
    save_checkpoint(weights, RLFN(arch_for("rlfn_ntire", 2)), value_range=1.0, meta={})
    res = CliRunner().invoke(app, ["bench", "--res", "64x48", "--frames", "2", "--scale", "2", "--weights", str(weights),
                                   "--device", "cpu", "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "b.json").read_text())
    got = {(r["mode"], r["variant"]) for r in report["results"]}
    assert got == {(m, v) for m in ("model", "pipeline", "e2e") for v in ("ours", "naive")}
    assert all(r["fps"] > 0 and r["frames"] == 2 for r in report["results"])
    assert report["environment"]["device"] == "cpu" and "torch" in report["environment"]
    assert "e2e 64x48:" in res.output and "the naive baseline" in res.output
    bad = CliRunner().invoke(app, ["bench", "--res", "4k"])
    assert bad.exit_code == 1 and "unknown resolution '4k'" in bad.output
