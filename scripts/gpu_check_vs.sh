#!/usr/bin/env bash
# GPU check of the VapourSynth filter (issue #5). Needs .venv (bash scripts/setup.sh dev) and a CUDA GPU:
#   1. tests/test_vapoursynth.py with FAIL_WITHOUT_CUDA=1, so the cuda cases run instead of skipping;
#   2. vspipe fps of examples/rlfn.vpy, 540p -> x4, with num_streams 1, 2 and 4 (and 4 piped as y4m);
#   3. the CLI engine's fps on the same card and input size (`rlfn-video bench`, model + pipeline).
# Usage: bash scripts/gpu_check_vs.sh [FRAMES=120] (run by scripts/gpu_check.sh); results in $OUT (default ./gpu_check_vs).
# RES=WxH changes the input size (a CPU dry run: FAIL_WITHOUT_CUDA= RES=176x144 ... 4); VS_TESTS=0
# skips step 1 (gpu_check.sh runs the CUDA tests itself); JSONL=FILE appends step 3's rows there.
# Without shipped x4 weights a random RLFN-S x4 checkpoint is used: the speed is the same.
set -uo pipefail
cd "$(dirname "$0")/.."
frames="${1:-120}"
res="${RES:-960x540}"
out="${OUT:-gpu_check_vs}"
mkdir -p "$out"
py="${PYTHON:-.venv/bin/python}"  # scripts/gpu_check.sh passes the image's python
# vspipe sits beside python or in its scripts folder (pip --user); vsrlfn and rlfn_video from the checkout.
scripts_dir=$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
export PATH="$(dirname "$(command -v "$py")")${scripts_dir:+:$scripts_dir}:$HOME/.local/bin:$PATH"
export PYTHONPATH="$PWD:$PWD/plugins/vapoursynth${PYTHONPATH:+:$PYTHONPATH}" FAIL_WITHOUT_CUDA="${FAIL_WITHOUT_CUDA-1}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
report="$out/vs_bench.txt"
: >"$report"

{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } | tee -a "$report"
status=0
if [ "${VS_TESTS:-1}" != 0 ]; then
  $py -m pytest tests/test_vapoursynth.py -q -rs 2>&1 | tail -n 20 | tee "$out/vs_tests.txt"
  rc=${PIPESTATUS[0]}; echo "tests: exit $rc" | tee -a "$report"; [ "$rc" -eq 0 ] || status=1
fi

# The source: Big Buck Bunny (shared data) or a synthetic pattern, scaled to $res, H.264, looped to $frames.
$py - "$work/src.mp4" "$res" "$frames" <<'EOF'
import sys
from pathlib import Path

import av
import numpy as np

dst, res, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
w, h = (int(v) for v in res.split("x"))
bbb = Path("../shared/data/video/bigbuckbunny.mp4")
with av.open(dst, "w") as out:
    s = out.add_stream("libx264", rate=25, options={"crf": "18", "preset": "veryfast"})
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.codec_context.colorspace = s.codec_context.color_primaries = s.codec_context.color_trc = 1
    s.codec_context.color_range = 1
    pictures = []
    if bbb.is_file():
        with av.open(str(bbb)) as src:
            pictures = [f.to_ndarray(format="rgb24", width=w, height=h) for f in src.decode(video=0)]
    if not pictures:
        y, x = np.mgrid[0:h, 0:w]
        pictures = [np.stack([(x + i) % 256, (y + 2 * i) % 256, (x + y) % 256], -1).astype(np.uint8) for i in range(50)]
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(pictures[i % len(pictures)], format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
        frame.pts = i
        out.mux(s.encode(frame))
    out.mux(s.encode())
EOF

weights=()
if [ ! -f rlfn_video/weights/rlfn_s_x4.pth ]; then
  $py -c "import sys; from rlfn_video.models import RLFN, arch_for, save_checkpoint
save_checkpoint(sys.argv[1], RLFN(arch_for('rlfn_s', 4)), value_range=1.0, meta={})" "$work/x4.pth"
  weights=(--weights "$work/x4.pth")
  echo "weights: random RLFN-S x4 (no shipped rlfn_s_x4.pth)" | tee -a "$report"
fi
args=(-a "src=$work/src.mp4" -a scale=4)
[ ${#weights[@]} -gt 0 ] && args+=(-a "weights=$work/x4.pth")

fps() {  # the "Output N frames in S seconds (F fps)" line of vspipe -p
  tr '\r' '\n' | grep -a '^Output' | tail -n 1
}
vs_line() {  # vs_line LABEL LINE: report it; a run with no fps line is a failure
  echo "vspipe $res -> x4, $1: ${2:-FAILED (no fps line; see above)}" | tee -a "$report"
  [ -n "$2" ] || status=1
}
command -v vspipe >/dev/null || { echo "vspipe not found on PATH ($PATH)" | tee -a "$report"; status=1; }
for streams in 1 2 4; do
  vs_line "yuv, num_streams=$streams, no output" "$(vspipe -p examples/rlfn.vpy "${args[@]}" -a "streams=$streams" -- 2>&1 | fps)"
done
vs_line "yuv, num_streams=4, y4m to /dev/null" \
  "$( { vspipe -p -c y4m examples/rlfn.vpy "${args[@]}" -a streams=4 - 2>&1 >/dev/null; } | fps)"
vs_line "zimg RGBH, num_streams=2, no output" \
  "$(vspipe -p examples/rlfn.vpy "${args[@]}" -a streams=2 -a via=rgbh -- 2>&1 | fps)"

# The CLI engine on the same input size, for comparison.
$py -m rlfn_video.cli bench --mode model --mode pipeline --res "$res" --scale 4 --frames "$frames" "${weights[@]}" \
  --json "$out/cli_bench.json" ${JSONL:+--jsonl "$JSONL"} 2>&1 | tee -a "$report"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit $status
