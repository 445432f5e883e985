#!/usr/bin/env bash
# Private PostgreSQL clusters (with pg_cron preloaded) for this checkout.
#
#   scripts/local-db.sh up <run|test>   ensure packages + cluster + database; prints the URL
#   scripts/local-db.sh reset test      stop, delete and recreate the test cluster; prints the URL
#   scripts/local-db.sh down <run|test> stop the cluster (no error if it is not running)
#   scripts/local-db.sh status          state of both clusters
#   scripts/local-db.sh delete <run|test> stop and delete the cluster and its data
#
# Layout: .local/pg/<name>/{data,sock}; data/postgresql.log is the server log. When running as
# root, initdb/pg_ctl run as the `postgres` OS user; if that user cannot reach the checkout (or
# the socket path would be too long) the cluster lives in /var/tmp/control-plane-<hash>/<name>
# and .local/pg/<name> is a symlink to it.
# Only the URL goes to stdout (superuser `postgres`, trust over the private Unix socket):
#   postgresql://postgres@/<db>?host=<socket dir>&port=<port>
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SCRIPTS=$ROOT/scripts
unset PGOPTIONS PGSERVICE PGSERVICEFILE PGSSLMODE PGTARGETSESSIONATTRS 2>/dev/null || true

log() { printf 'local-db: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  cat >&2 <<'EOF'
usage: scripts/local-db.sh up <run|test> | reset test | down <run|test> | delete <run|test> | status
EOF
  exit 2
}

# ---------------------------------------------------------------------------------------------
# names

set_name() {
  NAME=$1
  case $NAME in
    run)  DB=control_plane;      PORT=54329 ;;
    test) DB=control_plane_test; PORT=54339 ;;
    *) usage ;;
  esac
  LINK=$ROOT/.local/pg/$NAME
}

IS_ROOT=0
[[ $EUID -eq 0 ]] && IS_ROOT=1

# Run a server-side tool as the cluster's OS user (postgres when we are root).
as_pg() {
  # fd 9 is our lock: never let a server inherit it
  if [[ $IS_ROOT -eq 1 ]]; then
    (cd / && runuser -u postgres -- "$@" 9>&-)
  else
    "$@" 9>&-
  fi
}

# Resolve (and create when missing) the cluster directory; sets DIR, DATA, SOCK.
resolve_dir() {
  local create=${1:-}
  DIR=
  if [[ -L $LINK || -d $LINK ]]; then
    DIR=$(readlink -m -- "$LINK")
  fi
  if [[ -z $DIR ]]; then
    [[ -n $create ]] || return 1
    install -d -m 755 "$ROOT/.local/pg"
    local sock_probe="$LINK/sock/.s.PGSQL.$PORT"
    local fallback=0
    if (( ${#sock_probe} > 100 )); then
      fallback=1
    elif [[ $IS_ROOT -eq 1 ]] && ! (cd / && runuser -u postgres -- test -x "$ROOT/.local/pg"); then
      fallback=1
    fi
    if [[ $fallback -eq 1 ]]; then
      local hash
      hash=$(printf '%s' "$ROOT" | sha256sum | cut -c1-10)
      DIR=/var/tmp/control-plane-$hash/$NAME
      log "using $DIR for the $NAME cluster (linked from .local/pg/$NAME)"
      install -d -m 755 "${DIR%/*}"
      ln -sfn "$DIR" "$LINK"
    else
      DIR=$LINK
    fi
  fi
  DATA=$DIR/data
  SOCK=$DIR/sock
  if [[ -n $create && ! -d $DATA ]]; then
    install -d -m 755 "$DIR"
    install -d -m 700 "$DATA"
    install -d -m 755 "$SOCK"
    if [[ $IS_ROOT -eq 1 ]]; then
      chown postgres:postgres "$DIR" "$DATA" "$SOCK"
    fi
  fi
  if [[ -n $create && ! -d $SOCK ]]; then
    install -d -m 755 "$SOCK"
    [[ $IS_ROOT -eq 0 ]] || chown postgres:postgres "$SOCK"
  fi
  return 0
}

url() {
  # percent-encode the socket path for the URI query (keep the usual path characters)
  local s=$SOCK out='' c i
  for (( i = 0; i < ${#s}; i++ )); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9/._~-]) out+=$c ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf 'postgresql://postgres@/%s?host=%s&port=%s\n' "$DB" "$out" "$PORT"
}

# PID of the postmaster running on our data dir, or failure.
running_pid() {
  local pidfile=$DATA/postmaster.pid pid exe
  [[ -r $pidfile ]] || return 1
  read -r pid <"$pidfile" || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || [[ -d /proc/$pid ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [[ -z $exe || $exe == */postgres* ]] || return 1
  printf '%s\n' "$pid"
}

psql_admin() {
  "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres "$@"
}

ensure_bindir() {
  if [[ -z ${BINDIR:-} ]]; then
    BINDIR=$(bash "$SCRIPTS/ensure-packages.sh")
  fi
}

cluster_conf() {
  local extra=''
  if [[ $NAME == test ]]; then
    # throw-away cluster: durability against OS crashes is not needed (a PostgreSQL crash
    # still loses nothing: fsync only matters when the kernel goes down)
    extra=$'fsync = off\nfull_page_writes = off\n'
  fi
  cat <<EOF
# Written by scripts/local-db.sh on every start: edit the script, not this file.
listen_addresses = ''
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 200
shared_buffers = 256MB
shared_preload_libraries = 'pg_cron'
cron.database_name = '$DB'
# No cron.host (default localhost, unreachable here): migrate registers the jobs at the socket
# directory it connected to, exactly as it must for a socket-only DATABASE_URL server.
log_min_messages = warning
${extra}
EOF
}

write_file_as_owner() {  # path, content on stdin; owned by the cluster user
  local path=$1 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [[ -f $path ]] && cmp -s "$tmp" "$path"; then rm -f "$tmp"; return 1; fi
  install -m 600 "$tmp" "$path"
  [[ $IS_ROOT -eq 0 ]] || chown postgres:postgres "$path"
  rm -f "$tmp"
  return 0
}

# Returns 0 when the configuration changed.
write_config() {
  local changed=1
  if cluster_conf | write_file_as_owner "$DATA/control_plane.conf"; then changed=0; fi
  if ! grep -q "^include_if_exists = 'control_plane.conf'" "$DATA/postgresql.conf"; then
    printf "\ninclude_if_exists = 'control_plane.conf'\n" >>"$DATA/postgresql.conf"
    changed=0
  fi
  if printf 'local all all trust\n' | write_file_as_owner "$DATA/pg_hba.conf"; then changed=0; fi
  return $changed
}

init_cluster() {
  local locale=C
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale=C.UTF-8; fi
  local nosync=()
  [[ $NAME == test ]] && nosync=(--no-sync)
  log "initdb $NAME cluster in $DATA (PostgreSQL $(basename "$(dirname "$BINDIR")"))"
  as_pg "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale="$locale" \
    "${nosync[@]}" >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
}

check_conflicts() {
  # The cluster is socket-only: its port number names the socket file in our private socket
  # directory. A live server answering there that is not our postmaster is a real conflict.
  if [[ -S $SOCK/.s.PGSQL.$PORT ]] \
     && "$BINDIR/pg_isready" -q -h "$SOCK" -p "$PORT" -t 2 >/dev/null 2>&1; then
    die "a server that is not the $NAME cluster (data dir $DATA) answers on $SOCK/.s.PGSQL.$PORT; stop it first"
  fi
  if [[ -e $DATA/postmaster.pid ]]; then
    # running_pid said no postgres holds it (dead, or PID reused by another program)
    log "removing stale $DATA/postmaster.pid"
    rm -f "$DATA/postmaster.pid"
  fi
  # Nothing of ours listens on TCP; someone else using the port number there does not conflict.
  if command -v ss >/dev/null 2>&1 && [[ -n $(ss -Hltn "sport = :$PORT" 2>/dev/null) ]]; then
    log "note: another process listens on TCP port $PORT; the $NAME cluster is socket-only, continuing"
  fi
}

start_cluster() {
  check_conflicts
  log "starting $NAME cluster (socket $SOCK, port $PORT)"
  if ! as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$DATA/postgresql.log" -w -t 120 -s start >&2; then
    tail -n 30 "$DATA/postgresql.log" >&2 2>/dev/null || true
    die "could not start the $NAME cluster (log: $DATA/postgresql.log)"
  fi
}

stop_cluster() {
  local mode=${1:-fast}
  if running_pid >/dev/null; then
    ensure_bindir_for_data
    log "stopping $NAME cluster"
    as_pg "$BINDIR/pg_ctl" -D "$DATA" -m "$mode" -w -t 120 -s stop >&2 \
      || die "could not stop the $NAME cluster"
  fi
}

# bin dir matching the data directory's major (for stop/status without touching apt)
ensure_bindir_for_data() {
  local v
  if [[ -z ${BINDIR:-} && -r $DATA/PG_VERSION ]]; then
    read -r v <"$DATA/PG_VERSION"
    if [[ -x /usr/lib/postgresql/$v/bin/pg_ctl ]]; then BINDIR=/usr/lib/postgresql/$v/bin; fi
  fi
  ensure_bindir
}

check_version() {
  local v want
  read -r v <"$DATA/PG_VERSION"
  want=$("$BINDIR/postgres" -V | awk '{split($3, a, "."); print a[1]}')
  [[ $v == "$want" ]] && return 0
  if [[ $NAME == test ]]; then
    log "test cluster is PostgreSQL $v, packages are $want: recreating it"
    delete_cluster
    resolve_dir create
    init_cluster
    return 0
  fi
  local alt=/usr/lib/postgresql/$v/bin
  if [[ -x $alt/postgres && -e /usr/lib/postgresql/$v/lib/pg_cron.so ]]; then
    log "run cluster is PostgreSQL $v (chosen packages: $want); using $alt"
    BINDIR=$alt
    return 0
  fi
  die "the run cluster in $DATA is PostgreSQL $v but this machine has PostgreSQL $want with pg_cron; dump it, then delete $DIR and retry"
}

delete_cluster() {
  stop_cluster immediate
  log "deleting $NAME cluster in $DIR"
  rm -rf -- "$DATA" "$SOCK" "$DIR/initdb.log"
}

with_lock() {
  install -d -m 755 "$ROOT/.local/pg"
  exec 9>"$ROOT/.local/pg/.$NAME.lock"
  flock -w 300 9 || die "timed out waiting for another local-db.sh on the $NAME cluster"
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_up() {
  with_lock
  ensure_bindir
  resolve_dir create
  if [[ ! -s $DATA/PG_VERSION ]]; then
    init_cluster
  else
    check_version
  fi
  local config_changed=1
  if write_config; then config_changed=0; fi
  if running_pid >/dev/null; then
    if [[ $config_changed -eq 0 ]]; then
      log "configuration changed: restarting $NAME cluster"
      as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$DATA/postgresql.log" -m fast -w -t 120 -s restart >&2 \
        || die "could not restart the $NAME cluster (log: $DATA/postgresql.log)"
    fi
  else
    start_cluster
  fi
  local exists
  exists=$(psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'") \
    || die "cannot connect to the $NAME cluster (log: $DATA/postgresql.log)"
  if [[ $exists != 1 ]]; then
    log "creating database $DB"
    psql_admin -d postgres -c "CREATE DATABASE \"$DB\"" >&2
  fi
  url
}

cmd_reset() {
  [[ $NAME == test ]] || die "reset only applies to the test cluster (delete .local/pg/run yourself)"
  with_lock
  ensure_bindir
  if resolve_dir; then delete_cluster; fi
  exec 9>&-
  cmd_up
}

cmd_down() {
  resolve_dir || { log "$NAME cluster does not exist"; return 0; }
  with_lock
  if running_pid >/dev/null; then
    stop_cluster fast
  else
    log "$NAME cluster is not running"
  fi
}

cmd_delete() {
  resolve_dir || { log "$NAME cluster does not exist"; return 0; }
  with_lock
  stop_cluster immediate
  log "deleting $NAME cluster ($DIR)"
  rm -rf -- "$DIR"
  if [[ -L $LINK ]]; then
    rm -f -- "$LINK"
    rmdir -- "${DIR%/*}" 2>/dev/null || true
  fi
  rm -f -- "$ROOT/.local/pg/.$NAME.lock"
}

cmd_status() {
  local n pid
  for n in run test; do
    set_name "$n"
    if ! resolve_dir; then
      printf '%-4s  absent\n' "$n"
      continue
    fi
    if pid=$(running_pid); then
      printf '%-4s  running  pid %s  %s  (data %s)\n' "$n" "$pid" "$(url)" "$DATA"
    elif [[ -s $DATA/PG_VERSION ]]; then
      printf '%-4s  stopped  (data %s)\n' "$n" "$DATA"
    else
      printf '%-4s  absent\n' "$n"
    fi
  done
}

[[ $# -ge 1 ]] || usage
cmd=$1; shift
case $cmd in
  up)     [[ $# -eq 1 ]] || usage; set_name "$1"; cmd_up ;;
  reset)  [[ $# -eq 1 ]] || usage; set_name "$1"; cmd_reset ;;
  down)   [[ $# -eq 1 ]] || usage; set_name "$1"; cmd_down ;;
  delete) [[ $# -eq 1 ]] || usage; set_name "$1"; cmd_delete ;;
  status) cmd_status ;;
  *) usage ;;
esac
