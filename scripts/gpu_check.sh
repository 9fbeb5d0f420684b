#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, install the carried wheels (scripts/pack_wheels.sh
# made them here), run the CUDA tests with FAIL_WITHOUT_CUDA=1 and the benchmark table, and leave
# the logs and JSON in $OUT (default gpu_check_out/). Downloads nothing; ends in a few minutes.
# Without a GPU it stops at once with exit code 2.
# Usage: bash scripts/gpu_check.sh          (device tool: carry ["wheels"])
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
py="${PYTHON:-python3}"
summary="$OUT/summary.txt"
: >"$summary"
say() { echo "gpu_check: $*" | tee -a "$summary"; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  say "no NVIDIA GPU on this machine (nvidia-smi finds none); run this on a GPU machine. Nothing was checked."
  exit 2
fi
if ! "$py" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  say "nvidia-smi sees a GPU but $py's torch does not (no torch, or a CPU build); nothing was checked."
  exit 2
fi
nvidia-smi >>"$summary" 2>&1

# The carried wheels, then this checkout (torch, CuPy and the rest come from the image).
if compgen -G "wheels/*.whl" >/dev/null; then
  "$py" -m pip install --quiet --no-index --no-deps --no-compile wheels/*.whl 2>&1 | tee -a "$summary" \
    || say "installing wheels/ failed"
else
  say "no wheels/ here (run scripts/pack_wheels.sh and carry wheels); using what the image has"
fi
if ! "$py" -m pip install --quiet --no-index --no-deps --no-build-isolation -e . >>"$summary" 2>&1; then
  say "editable install failed; running from the checkout via PYTHONPATH"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 FAIL_WITHOUT_CUDA=1
"$py" -c 'import av, cupy, torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "| cupy", cupy.__version__, "| av", av.__version__)' 2>&1 | tee -a "$summary"

status=0
say "CUDA tests"
timeout 240 "$py" -m pytest -q -rs -p no:cacheprovider tests/ -k "cuda or gpu" 2>&1 | tee "$OUT/pytest.txt"
rc=${PIPESTATUS[0]}; say "CUDA tests: exit $rc"; [ "$rc" -eq 0 ] || status=1

# Shipped weights when there are some, else random ones: speed does not depend on the values.
weights=$("$py" - <<'PY'
from pathlib import Path
from rlfn_video.models import RLFN, arch_for, save_checkpoint
from rlfn_video.models.zoo import available
shipped = {p.stem for p in available()}
for s in (2, 4):
    if f"rlfn_s_x{s}" not in shipped:
        save_checkpoint(Path(f"/tmp/rlfn_s_x{s}.pth"), RLFN(arch_for("rlfn_s", s)), value_range=1.0, meta={})
        print(f"{s}=/tmp/rlfn_s_x{s}.pth", end=" ")
PY
)
bench() {  # bench NAME SCALE args...
  local name=$1 scale=$2; shift 2
  local w; w=$(tr ' ' '\n' <<<"$weights" | sed -n "s/^$scale=//p")
  say "bench $name: x$scale $*${w:+ (random weights)}"
  timeout 150 "$py" -m rlfn_video.cli bench --device cuda --scale "$scale" ${w:+--weights "$w"} "$@" \
    --json "$OUT/$name.json" 2>&1 | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}; say "bench $name: exit $rc"; [ "$rc" -eq 0 ] || status=1
}
bench bench 2 --mode model --mode pipeline --mode e2e --res 540p --res 1080p --frames 40
bench bench_x4 4 --mode model --mode pipeline --res 540p --res 1080p --frames 30
# Segmented path on the GPU (one worker per GPU of the machine; worker start-up included).
bench bench_scaleout 2 --mode scaleout --res 540p --frames 100 --segment 1 --workers 1 --workers 2
say "VapourSynth: vspipe 540p -> x4 with num_streams 1, 2, 4"
PYTHON="$py" OUT="$OUT/vs" timeout 150 bash scripts/gpu_check_vs.sh 60 2>&1 | tail -n 12 | tee -a "$summary"
rc=${PIPESTATUS[0]}; say "VapourSynth: exit $rc"; [ "$rc" -eq 0 ] || status=1
say "done: exit $status; files in $OUT"
exit $status
