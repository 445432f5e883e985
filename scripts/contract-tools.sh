#!/usr/bin/env bash
# Install the OpenAPI linters pinned in tools/package-lock.json (Spectral, Redocly) into
# tools/node_modules with `npm ci`, only when the lock file changed since the last install (its
# sha256 is stamped in tools/node_modules/.lock.sha256) or a linter is missing. Prints the bin
# directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
TOOLS=$ROOT/tools
STAMP=$TOOLS/node_modules/.lock.sha256
log() { printf 'contract-tools: %s\n' "$*" >&2; }

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { log "error: $tool is not installed (need Node.js >= 20)"; exit 1; }
done
want=$(sha256sum "$TOOLS/package-lock.json" | cut -d' ' -f1)
bin=$TOOLS/node_modules/.bin
if [[ ! -f $STAMP || $(<"$STAMP") != "$want" || ! -x $bin/spectral || ! -x $bin/redocly ]]; then
  log "installing the OpenAPI linters pinned in tools/package-lock.json (npm ci)"
  # --ignore-scripts: the linters need no install scripts; none of their code runs at install.
  (cd "$TOOLS" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  printf '%s\n' "$want" >"$STAMP"
fi
printf '%s\n' "$bin"
