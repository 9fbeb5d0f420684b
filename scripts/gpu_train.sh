#!/usr/bin/env bash
# One training stage on a lent GPU, warm-starting from the shipped weights, sized to a time budget.
# Here first: python scripts/pack_train_subset.py (-> train_subset/, ~50 MiB). Then on the device:
#   device run: bash scripts/gpu_train.sh 4 8      carry ["train_subset"], timeout_s 600
# Measures iterations/s for 30 steps, trains SCALE for about MINUTES at that rate, and leaves
# last.pt, log.jsonl and bench.txt in $OUT (default gpu_train_out/). Back here:
#   mkdir -p runs/gpu && cp -r <files_at> runs/gpu/x4_<date> &&
#   .venv/bin/python -m train export runs/rlfn_s_x4/... runs/gpu/x4_<date> --out /tmp/x4.pth
# and ship it (and log it in train/LOG.md) if Set5/Set14 improved.
# DEVICE=cpu DATA=../shared/data/train runs the same path on a CPU (a dry run; tests use it).
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-4}"
minutes="${2:-8}"
OUT="${OUT:-$PWD/gpu_train_out}"
DEVICE="${DEVICE:-cuda}"
DATA="${DATA:-train_subset}"
BATCH="${BATCH:-64}"
PATCH="${PATCH:-48}"
LR="${LR:-2e-4}"
SEED="${SEED:-$(date +%s)}"
py="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ "$DEVICE" != cpu ] && ! "$py" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu_train: torch sees no CUDA GPU here; nothing trained" | tee "$OUT/bench.txt"
  exit 2
fi
folders=()
for f in wallpapers bsd200 t91; do [ -d "$DATA/$f" ] && folders+=(--data "$DATA/$f"); done
[ ${#folders[@]} -gt 0 ] || { echo "gpu_train: no image folders under $DATA (run scripts/pack_train_subset.py)"; exit 2; }
common=(--scale "$scale" --batch "$BATCH" --patch "$PATCH" --device "$DEVICE" --amp bf16 --channels-last)

"$py" -m train bench "${common[@]}" "${folders[@]}" --steps 30 | tee "$OUT/bench.txt"
ips=$(sed -n 's/.*: \([0-9.]*\) it\/s.*/\1/p' "$OUT/bench.txt")
steps=$("$py" -c "print(max(10, int(float('$ips') * 60 * float('$minutes') * 0.9)))")
echo "gpu_train: ${ips} it/s -> $steps steps (~$minutes min) from rlfn_video/weights/rlfn_s_x$scale.pth, seed $SEED" \
  | tee -a "$OUT/bench.txt"
run="${RUN_DIR:-/tmp/gpu_train_runs/x$scale}"
rm -rf "$run"
"$py" -m train stage "$run" "${common[@]}" "${folders[@]}" --steps "$steps" --lr "$LR" --seed "$SEED" \
  --init "rlfn_video/weights/rlfn_s_x$scale.pth" --loss l1 2>&1 | tail -n 5 | tee -a "$OUT/bench.txt"
cp "$run/last.pt" "$run/log.jsonl" "$OUT/"
echo "gpu_train: done; $OUT holds last.pt, log.jsonl, bench.txt" | tee -a "$OUT/bench.txt"
