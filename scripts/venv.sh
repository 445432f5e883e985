#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and `pip install -e '.[dev]'`, only when pyproject.toml changed
# since the last successful install (its sha256 is stamped in .venv/.pyproject.sha256).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
VENV=$ROOT/.venv
STAMP=$VENV/.pyproject.sha256
log() { printf 'venv: %s\n' "$*" >&2; }

want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
if [[ -x $VENV/bin/python && -f $STAMP && $(<"$STAMP") == "$want" ]] \
   && "$VENV/bin/python" -c '' 2>/dev/null; then
  exit 0
fi

find_python() {
  local c
  for c in "${PYTHON:-}" python3.11 python3 python; do
    [[ -n $c ]] && command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
  py=$(find_python) || { log "error: need Python >= 3.11 with venv/ensurepip (set PYTHON=...)"; exit 1; }
  log "creating .venv with $py ($("$py" -V 2>&1))"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
fi

log "installing the project and dev dependencies (pyproject.toml changed)"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$VENV/bin/python" -m pip install -q -e "$ROOT[dev]" >&2
printf '%s\n' "$want" >"$STAMP"
