#!/usr/bin/env bash
# Test-only tools `make test` needs besides PostgreSQL: promtool (Debian's prometheus package) for
# the alert-rule unit tests in monitoring/. Installed when missing (as root); the package's
# service is never started here (policy-rc.d denies it; CI machines run no init system anyway).
set -euo pipefail

log() { printf 'test-tools: %s\n' "$*" >&2; }

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
[[ $EUID -eq 0 ]] || { log "promtool is missing: apt-get install prometheus (as root)"; exit 1; }
log "installing promtool (Debian package prometheus)"
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
fi
install_pkg() {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends prometheus >&2
}
if ! install_pkg; then
  apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  install_pkg
fi
if (( created_policy )); then rm -f "$policy"; fi
command -v promtool >/dev/null 2>&1 || { log "promtool still missing after the install"; exit 1; }
