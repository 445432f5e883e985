#!/usr/bin/env bash
# Make sure a PostgreSQL server major with pg_cron, pgTAP, pg_prove and plpgsql_check is
# installed, then print that major's bin directory on stdout:
#
#   export PG_BINDIR="$(scripts/ensure-packages.sh)"
#
# Choice of major: an installed server major whose postgresql-M-cron package is installed or
# installable; otherwise the distribution's default major (dependency of the `postgresql`
# metapackage), otherwise the highest major for which apt has postgresql-M-cron.
# Fast path (everything installed): a couple of dpkg-query calls, no apt.
# Override: PG_BINDIR=/usr/lib/postgresql/M/bin skips all of this (nothing is installed).
# All messages go to stderr; only the bin directory goes to stdout.
set -euo pipefail

log() { printf 'ensure-packages: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -n "${PG_BINDIR:-}" ]]; then
  [[ -x "$PG_BINDIR/postgres" ]] || die "PG_BINDIR=$PG_BINDIR has no postgres binary"
  printf '%s\n' "$PG_BINDIR"
  exit 0
fi

command -v dpkg-query >/dev/null 2>&1 \
  || die "not a Debian-family system: install PostgreSQL with pg_cron and set PG_BINDIR"

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C  # apt-cache output is parsed ("Candidate:")

# Run a command as root (directly, or via passwordless sudo).
can_root() {
  [[ $EUID -eq 0 ]] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }
}
as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif can_root; then
    sudo -n env DEBIAN_FRONTEND=noninteractive "$@"
  else
    die "root is needed to run: $* (run as root, or install these packages yourself)"
  fi
}

# True when every named package is installed.
installed() {
  local p st
  for p in "$@"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) || return 1
    [[ $st == installed ]] || return 1
  done
}

# apt-get update at most once per call, and only when lists are missing or older than a day
# (or when forced because a lookup came back empty).
APT_UPDATED=0
apt_update() {
  local force=${1:-}
  [[ $APT_UPDATED -eq 1 ]] && return 0
  local stamp=/var/lib/apt/periodic/control-plane-update-stamp
  if [[ -z $force ]] \
     && compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null \
     && [[ -n $(find "$stamp" /var/lib/apt/lists/partial -maxdepth 0 -mmin -1440 2>/dev/null) ]]; then
    return 0
  fi
  APT_UPDATED=1
  can_root || { log "not root: cannot refresh apt lists; using existing ones"; return 0; }
  log "apt-get update"
  as_root apt-get update -qq >&2 || log "warning: apt-get update failed; using existing lists"
  { as_root mkdir -p "${stamp%/*}" && as_root touch "$stamp"; } || true
}

# True when apt has an installation candidate for the package.
available() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
  [[ -n $c && $c != "(none)" ]]
}

available_after_update() {
  available "$1" && return 0
  [[ $APT_UPDATED -eq 1 ]] && return 1
  apt_update force
  available "$1"
}

installed_majors() {
  local d
  for d in /usr/lib/postgresql/*/bin/postgres; do
    [[ -x $d ]] || continue
    d=${d#/usr/lib/postgresql/}
    printf '%s\n' "${d%%/*}"
  done | sort -rn
}

default_major() {
  local m
  m=$(apt-cache depends postgresql 2>/dev/null \
        | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | sort -rn | head -n1)
  if [[ -n $m ]] && available "postgresql-$m" && available "postgresql-$m-cron"; then
    printf '%s\n' "$m"; return 0
  fi
  apt-cache search --names-only '^postgresql-[0-9]+-cron$' 2>/dev/null \
    | sed -n 's/^postgresql-\([0-9][0-9]*\)-cron .*/\1/p' | sort -rn \
    | while read -r m; do
        if available "postgresql-$m"; then printf '%s\n' "$m"; break; fi
      done
}

choose_major() {
  local m
  # 1. installed server with its cron package installed: no apt at all
  for m in $(installed_majors); do
    if installed "postgresql-$m-cron"; then MAJOR=$m; return 0; fi
  done
  # 2. installed server whose cron package apt can install
  apt_update
  for m in $(installed_majors); do
    if available_after_update "postgresql-$m-cron"; then MAJOR=$m; return 0; fi
  done
  # 3. the distribution's default major
  m=$(default_major)
  if [[ -z $m && $APT_UPDATED -eq 0 ]]; then apt_update force; m=$(default_major); fi
  [[ -n $m ]] || die "apt offers no postgresql-<major>-cron package; install PostgreSQL + pg_cron and set PG_BINDIR"
  MAJOR=$m
}

MAJOR=
choose_major
BINDIR=/usr/lib/postgresql/$MAJOR/bin

# plpgsql_check: `make lint` checks every PL/pgSQL function with it.
required=("postgresql-$MAJOR" "postgresql-client-$MAJOR" "postgresql-$MAJOR-cron"
          "postgresql-$MAJOR-pgtap" libtap-parser-sourcehandler-pgtap-perl
          "postgresql-$MAJOR-plpgsql-check")
optional=()
# Optional packages are looked up once per machine (or whenever we install anyway), so the
# fast path never calls apt when an optional package simply does not exist.
optional_stamp=/var/lib/apt/periodic/control-plane-optional-checked-$MAJOR

missing=()
for p in "${required[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${optional[@]}"; do
  installed "$p" && continue
  if [[ ${#missing[@]} -gt 0 || ! -e $optional_stamp ]]; then
    apt_update
    if available_after_update "$p"; then missing+=("$p")
    else log "optional package $p is not available; skipping"; fi
  fi
done

apt_install() {
  as_root apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >&2
}

if [[ ${#missing[@]} -gt 0 ]]; then
  apt_update
  for p in "${missing[@]}"; do
    available_after_update "$p" || die "package $p is not available from apt"
  done
  log "installing (PostgreSQL $MAJOR): ${missing[*]}"
  if ! apt_install "${missing[@]}"; then
    [[ $APT_UPDATED -eq 1 ]] && die "apt-get install failed"
    log "install failed; refreshing package lists and retrying"
    apt_update force
    apt_install "${missing[@]}" || die "apt-get install failed"
  fi
fi
if [[ ! -e $optional_stamp ]] && can_root; then
  { as_root mkdir -p "${optional_stamp%/*}" && as_root touch "$optional_stamp"; } || true
fi

[[ -x "$BINDIR/postgres" && -x "$BINDIR/initdb" && -x "$BINDIR/pg_ctl" ]] \
  || die "PostgreSQL $MAJOR server binaries not found in $BINDIR"
printf '%s\n' "$BINDIR"
