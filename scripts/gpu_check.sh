#!/usr/bin/env bash
# The GPU check: one command on a lent GPU machine that measures what the project has never run
# and brings every number home, even when it is cut short.
#
#   bash scripts/gpu_check.sh                 (device tool: carry ["wheels"]; scripts/pack_wheels.sh made them)
#   DRY_RUN=1 bash scripts/gpu_check.sh       (the same steps on the CPU at toy sizes: what CI runs)
#
# One overall budget (BUDGET seconds, default 480): every step's timeout is cut to what is left,
# the most valuable numbers come first, and a step with too little time left is skipped and named.
# Results in $OUT (default gpu_check_out/), three files, no folders:
#   summary.txt   what ran, exit codes, seconds, the budget, and the table of every measurement
#                 (also printed on stdout as the script ends)
#   bench.jsonl   one JSON line per measurement, appended as soon as it is measured
#   logs.tar.gz   every step's full output, repacked after each step
# Without a GPU (and no DRY_RUN) it stops at once with exit code 2. Downloads nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
BUDGET="${BUDGET:-480}"
DRY="${DRY_RUN:-0}"
RESERVE=15  # kept back for the summary and the last pack
py="${PYTHON:-python3}"
mkdir -p "$OUT"
summary="$OUT/summary.txt" jsonl="$OUT/bench.jsonl"
: >"$summary"
rm -f "$jsonl" "$OUT/logs.tar.gz"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
start=$SECONDS
status=0

say() { echo "gpu_check: $*" | tee -a "$summary"; }
left() { echo $((BUDGET - (SECONDS - start))); }
pack() {
  tar -czf "$OUT/.logs.tar.gz.partial" -C "$logs" . 2>/dev/null && mv -f "$OUT/.logs.tar.gz.partial" "$OUT/logs.tar.gz"
}
# step NAME CAP CMD...: CMD under a timeout of CAP seconds or what the budget has left, whichever
# is less; its output goes to stdout and logs/NAME.txt; a non-zero exit marks the check failed.
step() {
  local name=$1 cap=$2 t rc t0
  shift 2
  t=$(($(left) - RESERVE))
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt 10 ]; then
    say "$name: SKIPPED, budget spent ($(left) s of $BUDGET left)"
    status=1
    return
  fi
  say "$name: start, timeout $t s ($(left) s of $BUDGET left)"
  t0=$SECONDS
  timeout -k 10 "$t" "$@" 2>&1 | tee "$logs/$name.txt"
  rc=${PIPESTATUS[0]}
  local note=""
  [ "$rc" -eq 124 ] && note=" (timed out; what it measured is kept)"
  say "$name: exit $rc after $((SECONDS - t0)) s$note"
  [ "$rc" -eq 0 ] || status=1
  pack
}

if [ "$DRY" = 1 ]; then
  say "DRY RUN on the CPU at toy sizes: proves the script, measures nothing that matters"
  device=cpu x4=64x48 x2=96x64 frames=3 amp=bf16
  train_args=(--device cpu --steps 2 --batch 2 --patch 16)
else
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    say "no NVIDIA GPU on this machine (nvidia-smi finds none); run this on a GPU machine. Nothing was checked."
    exit 2
  fi
  if ! "$py" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    say "nvidia-smi sees a GPU but $py's torch does not (no torch, or a CPU build); nothing was checked."
    exit 2
  fi
  nvidia-smi >"$logs/nvidia-smi.txt" 2>&1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$summary"
  device=cuda x4=540p x2=1080p frames=60 amp=bf16
  train_args=(--device cuda --steps 30 --batch 64 --patch 48)
  # The carried wheels, then this checkout (torch, CuPy and the rest come from the image).
  if compgen -G "wheels/*.whl" >/dev/null; then
    "$py" -m pip install --quiet --no-index --no-deps --no-compile wheels/*.whl >"$logs/install.txt" 2>&1 \
      || say "installing wheels/ failed (see logs/install.txt)"
  else
    say "no wheels/ here (run scripts/pack_wheels.sh and carry wheels); using what the image has"
  fi
  "$py" -m pip install --quiet --no-index --no-deps --no-build-isolation -e . >>"$logs/install.txt" 2>&1 \
    || say "editable install failed; running from the checkout (PYTHONPATH, python -m entry points)"
fi
# Works with or without the editable install: every entry point below is `python -m`.
export PYTHONPATH="$PWD:$PWD/plugins/vapoursynth${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$py" -c 'import av, torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "| av", av.__version__)' 2>&1 \
  | tee -a "$summary"
say "budget $BUDGET s; results in $OUT"

# Shipped weights when there are some, else random ones: speed does not depend on the values.
weights_for() {  # weights_for SCALE: "--weights FILE" when nothing is shipped at that scale
  [ -f "rlfn_video/weights/rlfn_s_x$1.pth" ] && return
  "$py" -c 'import sys; from rlfn_video.models import RLFN, arch_for, save_checkpoint
save_checkpoint(sys.argv[1], RLFN(arch_for("rlfn_s", int(sys.argv[2]))), value_range=1.0, meta={})' \
    "$logs/random_x$1.pth" "$1" && echo "--weights $logs/random_x$1.pth"
}
w4=$(weights_for 4) w2=$(weights_for 2)
bench=("$py" -m rlfn_video.cli bench --device "$device" --jsonl "$jsonl")

# Most valuable first: model-only and end to end at 540p x4, each beside the naive loop.
step bench_x4 150 "${bench[@]}" --scale 4 $w4 --res "$x4" --mode model --mode e2e --frames "$frames"
# CUDA graphs vs eager (fp16) and frames per model call, same size.
step bench_x4_variants 150 "${bench[@]}" --scale 4 $w4 --res "$x4" --mode pipeline \
  --frames-per-call 0 --frames-per-call 1 --frames-per-call 4 --graphs on --graphs off --frames "$frames"
if [ "$DRY" = 1 ]; then  # inductor on the CPU compiles for a minute: nothing to learn in a dry run
  say "bench_compile: not in a dry run"
else  # torch.compile (inductor) beside eager + CUDA graphs: the CUDA default follows these numbers
  step bench_compile 150 "${bench[@]}" --scale 4 $w4 --res "$x4" --mode model --mode pipeline --backend torch \
    --backend torch-compile --frames "$frames"
fi
step bench_x2_1080p 150 "${bench[@]}" --scale 2 $w2 --res "$x2" --mode model --mode pipeline --mode e2e --frames "$frames"
if [ "$DRY" = 1 ]; then
  say "bench_nvenc: not in a dry run"
elif "$py" -c 'import av; av.codec.Codec("h264_nvenc", "w")' >/dev/null 2>&1; then
  step bench_nvenc 90 "${bench[@]}" --scale 4 $w4 --res "$x4" --mode e2e --codec h264_nvenc --frames "$frames"
else
  say "bench_nvenc: not run: this PyAV build has no h264_nvenc encoder (and H100/H200 have no NVENC)"
fi
vs_env=(OUT="$logs/vs" PYTHON="$py" VS_TESTS=0 JSONL="$jsonl")
[ "$DRY" = 1 ] && vs_env+=(RES=176x144 FAIL_WITHOUT_CUDA=)
step vapoursynth 120 env "${vs_env[@]}" bash scripts/gpu_check_vs.sh "$([ "$DRY" = 1 ] && echo 4 || echo 60)"
if [ "$DRY" = 1 ]; then  # the selection only: the CPU suite runs these tests already
  step cuda_tests 60 "$py" -m pytest -q --collect-only -p no:cacheprovider tests/ -k "(cuda or gpu) and not gpu_check and not gpu_train"
else
  step cuda_tests 180 env FAIL_WITHOUT_CUDA=1 "$py" -m pytest -q -rs -p no:cacheprovider tests/ \
    -k "(cuda or gpu) and not gpu_check and not gpu_train"
fi
step train_bench 90 "$py" -m train bench --scale 4 --amp "$amp" "${train_args[@]}"
if [ "$DRY" != 1 ]; then
  step train_bench_fp16 60 "$py" -m train bench --scale 4 --amp fp16 "${train_args[@]}"
fi
# Segmented run on this machine's GPU(s), worker start-up included: least valuable, last.
step bench_scaleout 90 "${bench[@]}" --scale 2 $w2 --mode scaleout --res "$x4" --frames $((frames * 2)) --segment 1 \
  --workers 1 --workers 2

say "measurements (bench.jsonl):"
"$py" -c 'import sys; from rlfn_video.bench import summarize_jsonl; print(summarize_jsonl(sys.argv[1]))' "$jsonl" \
  2>&1 | tee -a "$summary"
pack
files=$(find "$OUT" -type f | wc -l)
say "done: exit $status after $((SECONDS - start)) s of the $BUDGET s budget; $files files in $OUT"
exit $status
