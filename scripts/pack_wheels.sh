#!/usr/bin/env bash
# Fetch the wheels the GPU check carries to a machine that has no network: PyAV, VapourSynth and
# its BestSource plugin (the image there has torch, CuPy, typer, numpy, pytest). Pinned to the
# versions of .venv where installed. Writes wheels/ (git-ignored); the check installs them.
# Usage: bash scripts/pack_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
limit_mib=56  # the device tool carries at most 64 MiB, working tree included

pins=()
for name in av vapoursynth vapoursynth-bestsource; do
  version=$("$py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null || true)
  pins+=("$name${version:+==$version}")
done

rm -rf wheels && mkdir wheels
"$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d wheels "${pins[@]}"
ls -l wheels
size=$(du -sm wheels | cut -f1)
echo "pack_wheels: ${pins[*]}: ${size} MiB in wheels/"
if [ "$size" -gt "$limit_mib" ]; then
  echo "pack_wheels: over ${limit_mib} MiB; with the working tree that may not fit the 64 MiB the device tool carries" >&2
  exit 1
fi
