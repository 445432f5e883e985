#!/usr/bin/env bash
# `make lock`: re-resolve requirements.lock (exact versions for every platform, Python 3.11) from
# pyproject.toml's dependencies plus the dev extra, with uv (pinned in the lock itself).
# Pass uv options through, e.g. `make lock LOCK_ARGS=--upgrade` or `--upgrade-package litestar`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
# shellcheck disable=SC2086  # LOCK_ARGS is a list of options
.venv/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 --universal \
  --annotation-style line --custom-compile-command "make lock" -q -o requirements.lock \
  ${LOCK_ARGS:-}
echo "lock: requirements.lock written; the next make run/test reinstalls .venv" >&2
