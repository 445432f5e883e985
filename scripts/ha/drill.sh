#!/usr/bin/env bash
# `make ha-drill`: stand the HA topology up (scripts/ha/ha.sh up), run the HA drills
# (python -m drills.ha), and stop everything again, whatever happened. Loopback only, ~6 min.
#   bash scripts/ha/drill.sh [name ...]   all drills, or some of: rolling-app-restart
#                                         switchover primary-crash sync-standby-lost
set -euo pipefail

main() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
  cd "$root"
  trap 'bash scripts/ha/ha.sh down || true' EXIT
  bash scripts/ha/ha.sh up
  # The apps were started before this run's functions may have changed: restart them on the
  # code of this checkout (ha.sh up keeps running instances).
  local a
  for a in a1 a2; do bash scripts/ha/ha.sh stop-app "$a"; bash scripts/ha/ha.sh start-app "$a"; done
  local start=$SECONDS rc=0
  .venv/bin/python -m drills.ha "$@" || rc=$?
  [[ $# -gt 0 ]] || .venv/bin/python -m drills.ha.walbeat || rc=$?
  printf 'ha-drill: %s in %d s\n' "$([[ $rc -eq 0 ]] && echo pass || echo FAIL)" \
    $((SECONDS - start)) >&2
  return "$rc"
}

main "$@"; exit $?
