#!/usr/bin/env bash
# Create .venv with Python >= 3.12 and install rlfn-video into it (editable).
# Usage: bash scripts/setup.sh [EXTRAS]   e.g. `bash scripts/setup.sh dev` for the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

find_python() {
  local c
  for c in "${PYTHON:-}" python3.12 python3; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
      && { command -v "$c"; return; }
  done
  # pyenv installs that are not the active version (the shim refuses them without PYENV_VERSION)
  if command -v pyenv >/dev/null 2>&1; then
    # 3.12 first: the version the wheels (torch, VapourSynth R81) are known to work on
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12\.' | sort -V -r) \
             $(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[3-9]\.' | sort -V); do
      c="$(pyenv root)/versions/$v/bin/python3"
      [ -x "$c" ] && { echo "$c"; return; }
    done
  fi
  return 1
}

if [ ! -x .venv/bin/python ]; then
  py=$(find_python) || { echo "setup: Python >= 3.12 not found (set PYTHON=/path/to/python3.12)" >&2; exit 1; }
  "$py" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
target="."
[ -n "$extras" ] && target=".[$extras]"
.venv/bin/python -m pip install --quiet -e "$target"
