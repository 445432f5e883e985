#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install the exact versions pinned in requirements.lock, then
# the project itself (`pip install --no-deps -e .`) and the SDK with its CLI (clients/python),
# only when a pyproject.toml or the lock file changed since the last successful install (their sha256 is stamped in .venv/.install.sha256).
# Refresh the pins with `make lock` (scripts/lock.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
VENV=$ROOT/.venv
LOCK=$ROOT/requirements.lock
STAMP=$VENV/.install.sha256
log() { printf 'venv: %s\n' "$*" >&2; }

[[ -f $LOCK ]] || { log "error: $LOCK is missing (make lock)"; exit 1; }
SDK=$ROOT/clients/python
want=$(cat "$ROOT/pyproject.toml" "$SDK/pyproject.toml" "$LOCK" | sha256sum | cut -d' ' -f1)
if [[ -x $VENV/bin/python && -f $STAMP && $(<"$STAMP") == "$want" ]] \
   && "$VENV/bin/python" -c '' 2>/dev/null; then
  exit 0
fi

find_python() {
  local c
  for c in "${PYTHON:-}" python3.11 python3 python; do
    if [[ -z $c ]] || ! command -v "$c" >/dev/null 2>&1; then continue; fi
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

log "installing requirements.lock and the project (pyproject.toml or the lock changed)"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$VENV/bin/python" -m pip install -q -r "$LOCK" >&2
"$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >&2
# The SDK and its operator CLI (`cpctl`): their dependencies are pinned in the lock too.
"$VENV/bin/python" -m pip install -q --no-deps -e "$SDK" >&2
printf '%s\n' "$want" >"$STAMP"
