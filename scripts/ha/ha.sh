#!/usr/bin/env bash
# The HA topology on one machine (docs/deploy.md): 3 etcd members, 3 Patroni-managed
# PostgreSQL 15 members (pg_cron preloaded, synchronous replication), HAProxy, 2 app instances.
#
#   scripts/ha/ha.sh up                 install what is missing, start whatever is not running
#   scripts/ha/ha.sh down               stop everything `up` started (data is kept)
#   scripts/ha/ha.sh delete             down, then delete .local/ha
#   scripts/ha/ha.sh status             patronictl list + process table
#   scripts/ha/ha.sh env                print the export lines of the topology's URLs
#   scripts/ha/ha.sh start-member mN | stop-member mN | start-app aN | stop-app aN
#
# Addresses: member N (1..3) is 127.0.0.1N (loopback /8: no interface set-up needed).
#   etcd client 127.0.0.1N:12379, peer :12380; PostgreSQL :15432; Patroni REST :18008;
#   HAProxy: PostgreSQL primary 127.0.0.11:15400, app load balancer 127.0.0.11:18080,
#   stats 127.0.0.11:18404; app instance N (1..2): 127.0.0.1N:18001.
# Everything lives under .local/ha (or /var/tmp/control-plane-ha-<hash>, linked from there, when
# the postgres OS user cannot enter the checkout). Run as root: PostgreSQL and Patroni run as the
# `postgres` OS user, the apps, etcd and HAProxy as the caller.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
LINK=$ROOT/.local/ha
MEMBERS=(m1 m2 m3)
APPS=(a1 a2)
SCOPE=control-plane
DB=control_plane
PATRONI_SPEC='patroni[etcd3,psycopg3]>=4.0,<5'
ETCD_PORT=12379 ETCD_PEER_PORT=12380 PG_PORT=15432 REST_PORT=18008
HAPROXY_PG=127.0.0.11:15400 HAPROXY_APP=127.0.0.11:18080 HAPROXY_STATS=127.0.0.11:18404
APP_PORT=18001
unset PGOPTIONS PGSERVICE PGSERVICEFILE PGSSLMODE PGTARGETSESSIONATTRS PGHOST PGPORT 2>/dev/null || true

log() { printf 'ha: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

addr() { printf '127.0.0.1%s' "${1#[ma]}"; }   # m2 → 127.0.0.12, a1 → 127.0.0.11

# --- layout --------------------------------------------------------------------------------------

resolve_dir() {
  if [[ -L $LINK || -d $LINK ]]; then
    DIR=$(readlink -m -- "$LINK")
  else
    mkdir -p "$ROOT/.local"
    if [[ $EUID -eq 0 ]] && ! (cd / && runuser -u postgres -- test -x "$ROOT/.local"); then
      DIR=/var/tmp/control-plane-ha-$(printf '%s' "$ROOT" | sha256sum | cut -c1-10)
      log "the postgres user cannot enter $ROOT: using $DIR (linked from .local/ha)"
      mkdir -p "$DIR"
      ln -sfn "$DIR" "$LINK"
    else
      DIR=$LINK
    fi
  fi
  mkdir -p "$DIR/run" "$DIR/log" "$DIR/etcd" "$DIR/pg" "$DIR/app"
  chmod 755 "$DIR" "$DIR/run" "$DIR/log" "$DIR/etcd" "$DIR/pg" "$DIR/app"
  VENV=$DIR/patroni-venv
}

pidfile() { printf '%s/run/%s.pid' "$DIR" "$1"; }

# PID from a pidfile when that process is alive.
alive_pid() {
  local f pid
  f=$(pidfile "$1")
  [[ -r $f ]] || return 1
  read -r pid <"$f" || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

# --- packages ----------------------------------------------------------------------------------

ensure_packages() {
  PG_BINDIR=$(bash "$ROOT/scripts/ensure-packages.sh")
  [[ $PG_BINDIR == */15/bin ]] || log "note: PostgreSQL from $PG_BINDIR (the drills were measured on 15)"
  local missing=()
  command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
  command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  if (( ${#missing[@]} )); then
    [[ $EUID -eq 0 ]] || die "install ${missing[*]} (needs root)"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || log "apt-get update failed; trying anyway"
    # policy-rc.d 101: on a systemd host the packages' own services must not start (ports).
    local policy=/usr/sbin/policy-rc.d created=0
    if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; created=1; fi
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2 \
      || { [[ $created -eq 0 ]] || rm -f "$policy"; die "apt-get install ${missing[*]} failed"; }
    [[ $created -eq 0 ]] || rm -f "$policy"
  fi
  # Patroni from PyPI in a venv of the *system* Python (the postgres user must be able to run it:
  # not a Python under root's home), readable by everyone.
  if ! "$VENV/bin/patroni" --version >/dev/null 2>&1; then
    log "installing Patroni ($PATRONI_SPEC) into $VENV"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$PATRONI_SPEC" >&2
    chmod -R a+rX "$VENV"
  fi
}

# --- secrets -----------------------------------------------------------------------------------

secret() {  # secret NAME → generated once, 0600, under run/
  local f=$DIR/run/$1.secret
  if [[ ! -s $f ]]; then
    (umask 077; /usr/bin/python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$f")
  fi
  cat "$f"
}

# --- etcd --------------------------------------------------------------------------------------

etcd_endpoints() {
  local m out=()
  for m in "${MEMBERS[@]}"; do out+=("$(addr "$m"):$ETCD_PORT"); done
  (IFS=,; printf '%s' "${out[*]}")
}

start_etcd() {
  local m=$1 a cluster=() x
  alive_pid "etcd-$m" >/dev/null && return 0
  a=$(addr "$m")
  for x in "${MEMBERS[@]}"; do cluster+=("e${x#m}=http://$(addr "$x"):$ETCD_PEER_PORT"); done
  local state=new
  [[ -d $DIR/etcd/$m/member ]] && state=existing
  mkdir -p "$DIR/etcd/$m"
  chmod 700 "$DIR/etcd/$m"
  setsid etcd --name "e${m#m}" --data-dir "$DIR/etcd/$m" \
    --listen-client-urls "http://$a:$ETCD_PORT" --advertise-client-urls "http://$a:$ETCD_PORT" \
    --listen-peer-urls "http://$a:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://$a:$ETCD_PEER_PORT" \
    --initial-cluster "$(IFS=,; printf '%s' "${cluster[*]}")" \
    --initial-cluster-state "$state" --initial-cluster-token "$SCOPE-etcd" \
    --heartbeat-interval 100 --election-timeout 1000 --quota-backend-bytes $((256 * 1024 * 1024)) \
    >>"$DIR/log/etcd-$m.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "etcd-$m")"
}

wait_etcd() {
  local i
  for ((i = 0; i < 100; i++)); do
    ETCDCTL_API=3 etcdctl --endpoints "$(etcd_endpoints)" --dial-timeout 1s endpoint health \
      >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "etcd did not become healthy (see $DIR/log/etcd-*.log)"
}

# --- Patroni -----------------------------------------------------------------------------------

write_patroni_config() {
  local m=$1 a data
  a=$(addr "$m")
  data=$DIR/pg/$m/data
  mkdir -p "$DIR/pg/$m"
  chown postgres:postgres "$DIR/pg/$m"
  chmod 700 "$DIR/pg/$m"
  (umask 077; cat >"$DIR/pg/$m/patroni.yml" <<EOF
# Generated by scripts/ha/ha.sh (settings explained in docs/deploy.md).
scope: $SCOPE
name: $m
log:
  level: INFO
  dir: $DIR/pg/$m
  file_num: 2
restapi:
  listen: $a:$REST_PORT
  connect_address: $a:$REST_PORT
etcd3:
  hosts: $(etcd_endpoints)
bootstrap:
  dcs:
    # Leader key TTL (Patroni's minimum is 20 s): a hard-killed primary is replaced ~ttl later.
    ttl: 20
    loop_wait: 2
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: true
    synchronous_node_count: 1
    failsafe_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        shared_preload_libraries: pg_cron
        cron.database_name: $DB
        cron.use_background_workers: 'on'
        max_worker_processes: 16
        max_connections: 200
        wal_level: replica
        hot_standby: 'on'
        wal_log_hints: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
        synchronous_commit: 'on'
        statement_timeout: 0
        shared_buffers: 64MB
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - data-checksums
postgresql:
  listen: $a:$PG_PORT
  connect_address: $a:$PG_PORT
  data_dir: $data
  bin_dir: $PG_BINDIR
  pgpass: $DIR/pg/$m/pgpass
  authentication:
    superuser:
      username: postgres
      password: $(secret superuser)
    replication:
      username: replicator
      password: $(secret replication)
    rewind:
      username: postgres
      password: $(secret superuser)
  parameters:
    unix_socket_directories: $DIR/pg/$m
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.0/8 scram-sha-256
    - host all all 127.0.0.0/8 scram-sha-256
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
EOF
  )
  chown postgres:postgres "$DIR/pg/$m/patroni.yml"
}

start_member() {
  local m=$1
  alive_pid "patroni-$m" >/dev/null && return 0
  write_patroni_config "$m"
  local pf
  pf=$(pidfile "patroni-$m")
  touch "$pf" "$DIR/log/patroni-$m.log"
  chown postgres:postgres "$pf" "$DIR/log/patroni-$m.log"
  # cd /: postgres may not enter the caller's cwd. exec: the pidfile names Patroni itself.
  # shellcheck disable=SC2016  # expanded by the inner bash, on purpose
  (cd / && exec setsid runuser -u postgres -- /bin/bash -c \
      'echo $$ >"$1"; exec "$2/bin/patroni" "$3"' _ "$pf" "$VENV" "$DIR/pg/$m/patroni.yml") \
      >>"$DIR/log/patroni-$m.log" 2>&1 </dev/null &
  local i
  for ((i = 0; i < 50; i++)); do alive_pid "patroni-$m" >/dev/null && return 0; sleep 0.1; done
  die "Patroni $m did not start (see $DIR/log/patroni-$m.log)"
}

# The postmaster of a member (from its data dir), when running.
postmaster_pid() {
  local f=$DIR/pg/$1/data/postmaster.pid pid
  [[ -r $f ]] || return 1
  read -r pid <"$f" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

stop_member() {
  local m=$1 pid i
  if pid=$(alive_pid "patroni-$m"); then
    kill -TERM "$pid" 2>/dev/null || true  # Patroni stops its PostgreSQL (fast), then exits
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "Patroni $m did not stop: SIGKILL"; kill -9 "$pid" || true; }
  fi
  # A postmaster left behind (Patroni killed -9 by a drill): stop it too.
  if pid=$(postmaster_pid "$m"); then
    (cd / && runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$DIR/pg/$m/data" -m fast -w -t 30 stop \
      >/dev/null 2>&1) || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "patroni-$m")"
}

rest() { curl -fsS --max-time 2 "http://$(addr "$1"):$REST_PORT/$2" 2>/dev/null; }

primary_member() {
  local m
  for m in "${MEMBERS[@]}"; do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
          "http://$(addr "$m"):$REST_PORT/primary" 2>/dev/null) == 200 ]] && { echo "$m"; return 0; }
  done
  return 1
}

wait_cluster() {
  local i primary=''
  for ((i = 0; i < 300; i++)); do
    primary=$(primary_member) && break
    sleep 0.5
  done
  [[ -n $primary ]] || die "no Patroni primary after 150 s (see $DIR/log/patroni-*.log, $DIR/pg/*/patroni.log)"
  # Both replicas streaming and one of them synchronous.
  for ((i = 0; i < 240; i++)); do
    if rest "$primary" cluster | /usr/bin/python3 -c '
import json, sys
c = json.load(sys.stdin)["members"]
streaming = [m for m in c if m["role"] in ("replica", "sync_standby") and m["state"] == "streaming"]
sync = [m for m in c if m["role"] == "sync_standby"]
sys.exit(0 if len(streaming) == 2 and sync else 1)'; then
      return 0
    fi
    sleep 0.5
  done
  die "replicas did not start streaming (see patronictl list: scripts/ha/ha.sh status)"
}

# --- URLs --------------------------------------------------------------------------------------

multi_hosts() {
  local m out=()
  for m in "${MEMBERS[@]}"; do out+=("$(addr "$m"):$PG_PORT"); done
  (IFS=,; printf '%s' "${out[*]}")
}

superuser_url() {
  printf 'postgresql://postgres:%s@%s/%s?target_session_attrs=read-write&connect_timeout=3' \
    "$(secret superuser)" "$(multi_hosts)" "$DB"
}

emit_env() {
  printf 'export %s=%q\n' \
    HA_DIR "$DIR" \
    HA_DATABASE_URL "$(superuser_url)" \
    HA_HAPROXY_DATABASE_URL "postgresql://postgres:$(secret superuser)@$HAPROXY_PG/$DB?connect_timeout=3" \
    HA_APP_URL "http://$HAPROXY_APP" \
    HA_APP1_URL "http://$(addr a1):$APP_PORT" \
    HA_APP2_URL "http://$(addr a2):$APP_PORT" \
    HA_ADMIN_TOKEN "$(secret admin-token)" \
    HA_STATE_DIR "$DIR/app" \
    PG_BINDIR "$PG_BINDIR" \
    HA_PATRONICTL "$VENV/bin/patronictl -c $DIR/pg/m1/patroni.yml"
}

ensure_database() {
  local url
  url="postgresql://postgres:$(secret superuser)@$(multi_hosts)/postgres?target_session_attrs=read-write&connect_timeout=3"
  if [[ -z $("$PG_BINDIR/psql" -X -At -d "$url" -c "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
    log "creating database $DB"
    "$PG_BINDIR/psql" -X -q -d "$url" -c "CREATE DATABASE $DB"
  fi
}

migrate() {
  log "migrating through the multi-host URL (target_session_attrs=read-write)"
  DATABASE_URL=$(superuser_url) CONTROL_PLANE_STATE_DIR=$DIR/app "$ROOT/.venv/bin/python" \
    -m control_plane.migrate
}

# --- HAProxy -----------------------------------------------------------------------------------

start_haproxy() {
  alive_pid haproxy >/dev/null && return 0
  local m a
  {
    cat <<EOF
# Generated by scripts/ha/ha.sh (docs/deploy.md).
global
    maxconn 4096
    log stderr format short local0 notice
    stats socket $DIR/run/haproxy.sock mode 600 level admin

defaults
    log global
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 1s
    retries 3

# PostgreSQL: the member whose Patroni REST says it is the primary (200 on GET /primary).
listen pg_primary
    mode tcp
    bind $HAPROXY_PG
    option httpchk
    http-check send meth GET uri /primary
    http-check expect status 200
    default-server inter 1s fastinter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
EOF
    for m in "${MEMBERS[@]}"; do
      a=$(addr "$m")
      printf '    server %s %s:%s check port %s\n' "$m" "$a" "$PG_PORT" "$REST_PORT"
    done
    cat <<EOF

# The app instances. A draining instance (SIGTERM) closes its listener first: its health check
# fails and a connection it refuses is retried on the other instance (retry-on conn-failure,
# redispatch); nothing is retried once a request was sent (writes are not replayed here).
frontend app
    mode http
    bind $HAPROXY_APP
    timeout http-request 10s
    default_backend apps

backend apps
    mode http
    balance roundrobin
    option http-server-close
    option httpchk
    http-check send meth GET uri /healthz
    http-check expect status 200
    retry-on conn-failure
    option redispatch 1
    timeout server 30s
    default-server inter 500ms fastinter 250ms fall 1 rise 2
EOF
    for a in "${APPS[@]}"; do
      printf '    server %s %s:%s check\n' "$a" "$(addr "$a")" "$APP_PORT"
    done
    cat <<EOF

frontend stats
    mode http
    bind $HAPROXY_STATS
    stats enable
    stats uri /
EOF
  } >"$DIR/run/haproxy.cfg"
  haproxy -c -q -f "$DIR/run/haproxy.cfg" || die "invalid HAProxy configuration"
  setsid haproxy -W -f "$DIR/run/haproxy.cfg" -p "$(pidfile haproxy).tmp" \
    >>"$DIR/log/haproxy.log" 2>&1 </dev/null &
  echo $! >"$(pidfile haproxy)"
}

# --- app instances -----------------------------------------------------------------------------

app_database_url() {
  # a1 reaches the primary through the multi-host URL, a2 through HAProxy: both forms are
  # exercised by every drill. The app logs in as control_plane_api (password from the state dir);
  # its pool has its own connect timeout.
  case $1 in
    a1) printf 'postgresql://postgres:%s@%s/%s?target_session_attrs=read-write' \
          "$(secret superuser)" "$(multi_hosts)" "$DB" ;;
    *) printf 'postgresql://postgres:%s@%s/%s' "$(secret superuser)" "$HAPROXY_PG" "$DB" ;;
  esac
}

start_app() {
  local a=$1 i
  alive_pid "app-$a" >/dev/null && return 0
  (cd "$ROOT" && DATABASE_URL=$(app_database_url "$a") CONTROL_PLANE_STATE_DIR=$DIR/app \
    CONTROL_PLANE_ADMIN_TOKEN=$(secret admin-token) HOST=$(addr "$a") PORT=$APP_PORT \
    WEB_CONCURRENCY=${HA_WEB_CONCURRENCY:-1} PYTHONUNBUFFERED=1 \
    exec setsid "$ROOT/.venv/bin/python" -m control_plane.serve) \
    >>"$DIR/log/app-$a.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "app-$a")"
  for ((i = 0; i < 150; i++)); do
    curl -fsS --max-time 1 "http://$(addr "$a"):$APP_PORT/healthz" >/dev/null 2>&1 && return 0
    alive_pid "app-$a" >/dev/null || die "app $a exited (see $DIR/log/app-$a.log)"
    sleep 0.2
  done
  die "app $a did not answer /healthz (see $DIR/log/app-$a.log)"
}

stop_app() {
  local a=$1 pid i
  pid=$(alive_pid "app-$a") || return 0
  kill -TERM "$pid" 2>/dev/null || true  # stop accepting, drain, exit
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { log "app $a did not stop: SIGKILL"; kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" || true; }
  rm -f "$(pidfile "app-$a")"
}

stop_pidfile() {
  local name=$1 pid i
  pid=$(alive_pid "$name") || { rm -f "$(pidfile "$name")"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$(pidfile "$name")"
}

# --- commands ----------------------------------------------------------------------------------

cmd_up() {
  [[ $EUID -eq 0 ]] || die "run as root (PostgreSQL and Patroni are started as the postgres user)"
  id postgres >/dev/null 2>&1 || true
  ensure_packages
  id postgres >/dev/null 2>&1 || die "no postgres OS user (is postgresql-common installed?)"
  bash "$ROOT/scripts/venv.sh"
  local m a t0=$SECONDS
  for m in "${MEMBERS[@]}"; do start_etcd "$m"; done
  wait_etcd
  for m in "${MEMBERS[@]}"; do start_member "$m"; done
  if [[ -e $DIR/run/paused ]]; then  # left in maintenance mode by `down`
    patronictl resume --wait >/dev/null 2>&1 || patronictl resume >/dev/null 2>&1 || true
    rm -f "$DIR/run/paused"
  fi
  wait_cluster
  ensure_database
  migrate
  start_haproxy
  for a in "${APPS[@]}"; do start_app "$a"; done
  log "up in $((SECONDS - t0)) s: primary $(primary_member); app via http://$HAPROXY_APP"
  patronictl list >&2 || true
}

patronictl() { "$VENV/bin/patronictl" -c "$DIR/pg/m1/patroni.yml" "$@"; }

cmd_down() {
  local a m pid
  for a in "${APPS[@]}"; do stop_app "$a"; done
  stop_pidfile haproxy
  # Maintenance mode first: Patroni then neither fails over nor touches PostgreSQL while the
  # members go down one by one, and on exit it leaves its PostgreSQL running (stopped below,
  # primary first so that the replicas receive its shutdown checkpoint). Without it, stopping
  # the replicas first blocks every commit of the primary (synchronous_mode_strict).
  local primary='' paused=0
  if alive_pid patroni-m1 >/dev/null || alive_pid patroni-m2 >/dev/null || alive_pid patroni-m3 >/dev/null; then
    primary=$(primary_member 2>/dev/null || true)
    if timeout 20 "$VENV/bin/patronictl" -c "$DIR/pg/m1/patroni.yml" pause --wait >/dev/null 2>&1; then
      paused=1
    else
      log "could not pause the cluster (etcd down?): stopping the members anyway"
    fi
  fi
  for m in "${MEMBERS[@]}"; do
    if pid=$(alive_pid "patroni-$m"); then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for m in "${MEMBERS[@]}"; do
    if pid=$(alive_pid "patroni-$m"); then
      local i
      for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && { log "Patroni $m did not stop: SIGKILL"; kill -9 "$pid" || true; }
    fi
    rm -f "$(pidfile "patroni-$m")"
  done
  [[ -z $primary ]] || stop_member "$primary"
  for m in "${MEMBERS[@]}"; do stop_member "$m"; done
  [[ $paused -eq 0 ]] || touch "$DIR/run/paused"
  for m in "${MEMBERS[@]}"; do stop_pidfile "etcd-$m"; done
  log "down"
}

cmd_status() {
  local n
  for n in etcd-m1 etcd-m2 etcd-m3 patroni-m1 patroni-m2 patroni-m3 haproxy app-a1 app-a2; do
    if pid=$(alive_pid "$n"); then printf '%-12s running (pid %s)\n' "$n" "$pid"; else printf '%-12s stopped\n' "$n"; fi
  done
  "$VENV/bin/patronictl" -c "$DIR/pg/m1/patroni.yml" list 2>/dev/null || true
}

main() {
  local cmd=${1:-}
  shift || true
  resolve_dir
  case $cmd in
    up) cmd_up ;;
    down) PG_BINDIR=$(bash "$ROOT/scripts/ensure-packages.sh"); cmd_down ;;
    delete) PG_BINDIR=$(bash "$ROOT/scripts/ensure-packages.sh"); cmd_down; rm -rf -- "$DIR"; rm -f "$LINK" ;;
    status) cmd_status ;;
    env) PG_BINDIR=$(bash "$ROOT/scripts/ensure-packages.sh"); emit_env ;;
    start-member) PG_BINDIR=$(bash "$ROOT/scripts/ensure-packages.sh"); start_member "$1" ;;
    stop-member) PG_BINDIR=$(bash "$ROOT/scripts/ensure-packages.sh"); stop_member "$1" ;;
    start-app) PG_BINDIR=$(bash "$ROOT/scripts/ensure-packages.sh"); start_app "$1" ;;
    stop-app) stop_app "$1" ;;
    *) sed -n '2,17p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
  esac
}

main "$@"
