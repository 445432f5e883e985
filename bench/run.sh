#!/usr/bin/env bash
# `make bench` → bench/run.sh: the one-command benchmark suite (docs/performance.md).
#
# Installs what it needs (wrk, pgbench, etcd from Debian; py-spy into .venv), uses
# DATABASE_URL or the private run cluster (scripts/env.sh run), migrates, seeds a fleet through
# the product's SQL functions, starts the app (python -m control_plane.serve) and etcd on
# loopback, and measures side by side in one run on this machine: pgbench on the heartbeat
# function, /healthz, heartbeats at 64 and 8 connections, attach, roster, etcd lease keep-alive,
# the sweep, presence HOT ratio, worker/coalescer variants, the bench-only hello-post route (a
# heartbeat without the database), the roster's server CPU before/after its rewrite
# (bench/roster_cpu.py), and the change feed with 1,000 followers (bench/feed.py). Prints a
# table, writes
# bench/results/latest.json and appends bench/results/history.jsonl.
#
# Knobs (environment): BENCH_DURATION (s per main phase, 10), BENCH_ROUNDS (alternating
# hello/heartbeat rounds, 3; medians reported), BENCH_COMPARE_DURATION (8),
# BENCH_CONNECTIONS (64), BENCH_THREADS (wrk threads, 2), BENCH_PORT (18480), BENCH_ETCD_PORT
# (23790), BENCH_COMPARE (1: also measure worker/coalescer variants), BENCH_PROFILE (1:
# py-spy profile of a worker under heartbeat load), BENCH_SWEEP_SIZES (10000,100000,1000000),
# BENCH_NODES (10000 beat nodes) — and the app's own: WEB_CONCURRENCY, HEARTBEAT_MAX_BATCH,
# HEARTBEAT_MAX_IN_FLIGHT, DB_POOL_SIZE.
# Every process it starts is stopped on exit (trap). Loopback only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
SHORT=${BENCH_COMPARE_DURATION:-8}
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
PORT=${BENCH_PORT:-18480}
ETCD_PORT=${BENCH_ETCD_PORT:-23790}
COMPARE=${BENCH_COMPARE:-1}
PROFILE=${BENCH_PROFILE:-1}
SWEEP_SIZES=${BENCH_SWEEP_SIZES:-10000,100000,1000000}
NODES=${BENCH_NODES:-10000}
NODES_PER_SESSION=100       # the roster benchmark reads a 100-node session
NODES_PER_PARTICIPANT=5
ATTACH_NODES=1000
export WEB_CONCURRENCY=${WEB_CONCURRENCY:-2}
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
BASE=http://127.0.0.1:$PORT

WORK=$(mktemp -d /tmp/control-plane-bench.XXXXXX)
export BENCH_LUA_DIR=$ROOT/bench/lua BENCH_SELF_PID=$$
APP_PID='' ETCD_PID='' FLEET_UP=0

cleanup() {
  local rc=$?
  set +e
  [[ -n $APP_PID ]] && stop_app
  if [[ -n $ETCD_PID ]]; then kill "$ETCD_PID" 2>/dev/null; wait "$ETCD_PID" 2>/dev/null; fi
  if [[ $FLEET_UP == 1 ]]; then
    # Leave no bench node online: detach the fleet (slot and presence → offline), so the sweep's
    # stall guard never sees 10,000 silent nodes. The next run re-attaches the same nodes.
    psql_su -q -c "DO \$\$ DECLARE r record; BEGIN
                     FOR r IN SELECT digest, node_id FROM bench.nodes LOOP
                       PERFORM control_plane.runtime_node_detach(r.digest, r.node_id);
                     END LOOP; END \$\$" >/dev/null 2>&1 \
      || log "warning: could not detach the bench fleet"
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -----------------------------------------------------------------------------------

apt_missing=()
command -v wrk >/dev/null || apt_missing+=(wrk)
command -v etcd >/dev/null || apt_missing+=(etcd-server)
command -v etcdctl >/dev/null || apt_missing+=(etcd-client)
if (( ${#apt_missing[@]} )); then
  [[ $EUID -eq 0 ]] || die "missing ${apt_missing[*]}: run as root or install them"
  log "installing ${apt_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >&2
fi

[[ -x .venv/bin/python ]] || bash scripts/venv.sh
PY=${BENCH_PYTHON:-$ROOT/.venv/bin/python}
pip_need=()
[[ $PROFILE == 1 ]] && ! "$PY" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("py_spy") is None)' 2>/dev/null \
  && ! command -v py-spy >/dev/null && pip_need+=(py-spy)
if (( ${#pip_need[@]} )); then
  log "pip install ${pip_need[*]} into $(dirname "$(dirname "$PY")")"
  "$PY" -m pip install -q "${pip_need[@]}" >&2
fi
PYSPY=$(dirname "$PY")/py-spy
[[ -x $PYSPY ]] || PYSPY=$(command -v py-spy || true)

# --- database --------------------------------------------------------------------------------

out=$(bash scripts/env.sh run)   # DATABASE_URL (kept when set, else the private run cluster)
eval "$out"
[[ -x $PG_BINDIR/pgbench ]] || die "no pgbench in $PG_BINDIR (postgresql-client)"
psql_su() { "$PG_BINDIR/psql" -X -v ON_ERROR_STOP=1 -d "$DATABASE_URL" "$@"; }
export BENCH_PG_PID=''
data_dir=$(psql_su -At -c 'SHOW data_directory' 2>/dev/null || true)
[[ -n $data_dir && -r $data_dir/postmaster.pid ]] && BENCH_PG_PID=$(head -n1 "$data_dir/postmaster.pid")

log "migrating"
"$PY" -m control_plane.migrate >&2
log "seeding: $NODES nodes in $((NODES / NODES_PER_SESSION)) sessions (reused when still valid)"
FLEET_UP=1
psql_su -q -v beat_sessions=$((NODES / NODES_PER_SESSION)) -v nodes_per_session=$NODES_PER_SESSION \
  -v nodes_per_participant=$NODES_PER_PARTICIPANT -v attach_nodes=$ATTACH_NODES \
  -f bench/sql/seed.sql >"$WORK/seed.log"
psql_su -At -F' ' -c "SELECT token, node_id FROM bench.nodes WHERE kind = 'beat' ORDER BY i" \
  >"$WORK/beat.rows"
psql_su -At -F' ' -c "SELECT token, session_id, participant_id, node_id FROM bench.nodes
                      WHERE kind = 'attach' ORDER BY i" >"$WORK/attach.rows"
psql_su -At -F' ' -c "SELECT DISTINCT ON (session_id) token, session_id FROM bench.nodes
                      WHERE kind = 'beat' ORDER BY session_id, i" >"$WORK/roster.rows"
# Start every run from a compact presence table (earlier runs' sweep filler is gone).
psql_su -q -c 'VACUUM (FULL, ANALYZE) control_plane.runtime_node_presence'

# --- measuring helpers -----------------------------------------------------------------------

# phase NAME CMD...: run a load generator; CPU per process group is sampled in the middle of
# the run (both snapshots while it runs). Writes $WORK/NAME.out and $WORK/NAME.cpu.json.
phase() {
  local name=$1 dur=$2; shift 2
  "$@" >"$WORK/$name.out" 2>&1 &
  local pid=$! span=$(( dur > 3 ? dur - 2 : 1 ))
  sleep 1
  "$PY" bench/cpu.py snapshot >"$WORK/$name.cpu0"
  sleep "$span"
  "$PY" bench/cpu.py diff "$WORK/$name.cpu0" >"$WORK/$name.cpu.json"
  echo "{\"seconds\": $span}" >"$WORK/$name.span.json"
  wait "$pid" || { cat "$WORK/$name.out" >&2; die "phase $name failed"; }
}

wrk_phase() {  # NAME CONNECTIONS DURATION SCRIPT URL [ARGS...]
  local name=$1 conns=$2 dur=$3 script=$4 url=$5; shift 5
  log "$name: wrk -c$conns -d${dur}s ($(basename "$script"))"
  phase "$name" "$dur" wrk -t"$THREADS" -c"$conns" -d"${dur}s" -s "$script" "$url" ${1:+--} "$@"
  grep -q BENCH_JSON "$WORK/$name.out" || { cat "$WORK/$name.out" >&2; die "$name: no result"; }
}

# Capacity rows measure what the service can do, not its overload policy: per-token rate limits
# off (each load generator uses one token) and admission queueing rather than shedding, as in the
# runs before admission control existed (docs/reliability.md measures the policy itself).
BENCH_CAPACITY_ENV=(RATE_LIMIT_WRITES_PER_S=0 RATE_LIMIT_READS_PER_S=0 RATE_LIMIT_ADMIN_PER_S=0
                    ADMISSION_QUEUE=100000 ADMISSION_QUEUE_WAIT_MS=8000)

start_app() {  # extra environment as NAME=VALUE arguments
  local _
  env CONTROL_PLANE_BENCH_ROUTES=1 "${BENCH_CAPACITY_ENV[@]}" "$@" HOST=127.0.0.1 PORT="$PORT" \
    setsid "$PY" -m control_plane.serve >"$WORK/app.log" 2>&1 &
  APP_PID=$!
  export BENCH_APP_PID=$APP_PID
  for _ in $(seq 150); do
    curl -sf "$BASE/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$APP_PID" 2>/dev/null || { cat "$WORK/app.log" >&2; die "the app exited"; }
    sleep 0.1
  done
  die "the app did not answer /healthz"
}

stop_app() {
  local _
  kill -TERM -- "-$APP_PID" 2>/dev/null || kill -TERM "$APP_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$APP_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$APP_PID" 2>/dev/null || true
  wait "$APP_PID" 2>/dev/null || true
  APP_PID=''
}

warm_up() {  # connections, pools and caches: not measured
  wrk -t"$THREADS" -c"$CONNS" -d3s -s bench/lua/heartbeat.lua "$BASE" -- "$WORK/beat.rows" >/dev/null
  wrk -t"$THREADS" -c"$CONNS" -d1s -s bench/lua/hello.lua "$BASE" >/dev/null
}

uptime >"$WORK/uptime_before"

# --- the main configuration ------------------------------------------------------------------

log "app: WEB_CONCURRENCY=$WEB_CONCURRENCY"
start_app
warm_up
psql_su -q -c "SELECT pg_stat_reset_single_table_counters('control_plane.runtime_node_presence'::regclass)" >/dev/null
# hello and heartbeat alternate in ROUNDS rounds (the report takes the median of each): a
# neighbour's burst on the shared cores then hits both sides of the ratio, not one phase.
for round in $(seq "$ROUNDS"); do
  wrk_phase "hello_r$round" "$CONNS" "$DURATION" bench/lua/hello.lua "$BASE"
  wrk_phase "hello_post_r$round" "$CONNS" "$DURATION" bench/lua/hello_post.lua "$BASE" "$WORK/beat.rows"
  wrk_phase "heartbeat_r$round" "$CONNS" "$DURATION" bench/lua/heartbeat.lua "$BASE" "$WORK/beat.rows"
done
wrk_phase heartbeat_c8 8 "$DURATION" bench/lua/heartbeat.lua "$BASE" "$WORK/beat.rows"
sleep 1.5  # backends report table statistics at most once a second
psql_su -At -c "SELECT json_build_object('n_tup_upd', n_tup_upd, 'n_tup_hot_upd', n_tup_hot_upd)
                  FROM pg_stat_user_tables WHERE relid = 'control_plane.runtime_node_presence'::regclass" \
  >"$WORK/hot.json"
wrk_phase attach 8 10 bench/lua/attach.lua "$BASE" "$WORK/attach.rows"
wrk_phase roster 8 10 bench/lua/roster.lua "$BASE" "$WORK/roster.rows"
log "roster: backend CPU per call, before (bench.runtime_node_roster_v1) and after; plans"
"$PY" bench/roster_cpu.py "$DATABASE_URL" "$WORK/roster_cpu.json" \
  --explain bench/results/roster-explain.txt >&2
log "feed: ${BENCH_FEED_SUBSCRIBERS:-1000} followers over 100 sessions, ~${BENCH_FEED_RATE:-200} events/s"
"$PY" bench/feed.py "$BASE" "$DATABASE_URL" "$WORK/roster.rows" "$WORK/beat.rows" "$WORK/feed.json" >&2

if [[ $PROFILE == 1 && -n $PYSPY ]]; then
  worker=$(pgrep -P "$APP_PID" -f spawn_main | tail -n1 || true)
  [[ -n $worker ]] || worker=$APP_PID
  log "profile: py-spy on worker $worker under heartbeat load"
  wrk -t"$THREADS" -c"$CONNS" -d10s -s bench/lua/heartbeat.lua "$BASE" -- "$WORK/beat.rows" >/dev/null &
  wrk_pid=$!
  sleep 1
  "$PYSPY" record -p "$worker" -d 7 -r 250 -f raw -o "$WORK/profile.raw" >/dev/null 2>&1 \
    || log "warning: py-spy failed (ptrace not permitted?)"
  wait "$wrk_pid"
fi
stop_app

# --- pgbench: the shipped heartbeat function without HTTP -------------------------------------

log "pgbench: runtime_node_heartbeat, -M prepared -c8 -j2, ${DURATION}s"
phase pgbench "$DURATION" "$PG_BINDIR/pgbench" -n -M prepared -c8 -j2 -T"$DURATION" \
  -f bench/sql/heartbeat.pgbench -D nodes="$NODES" "$DATABASE_URL"
log "pgbench: runtime_node_heartbeat_batch, 64 beats per call, -c4"
phase pgbench_batch64 "$SHORT" "$PG_BINDIR/pgbench" -n -M prepared -c4 -j2 -T"$SHORT" \
  -f bench/sql/heartbeat_batch.pgbench -D batches=200 -D batch=64 "$DATABASE_URL"
# What plan_cache_mode = force_generic_plan buys: the shipped function against a copy of it
# with the default plan cache mode (in schema bench, dropped again), 1-beat calls.
psql_su -q -f bench/sql/plan_cache_copy.sql
for variant in generic custom; do
  fn=control_plane.runtime_node_heartbeat_batch
  [[ $variant == custom ]] && fn=bench.heartbeat_batch_custom_plans
  sed "s/control_plane.runtime_node_heartbeat_batch(/$fn(/" bench/sql/heartbeat_batch.pgbench \
    >"$WORK/batch_$variant.pgbench"
  phase "pgbench_batch1_$variant" 6 "$PG_BINDIR/pgbench" -n -M prepared -c2 -j2 -T6 \
    -f "$WORK/batch_$variant.pgbench" -D batches=200 -D batch=1 "$DATABASE_URL"
done
psql_su -q -c 'DROP FUNCTION bench.heartbeat_batch_custom_plans(bytea[], text[], text[])'

log "asyncpg pool: default reset on release vs the app's no-op reset"
"$PY" bench/pool_reset.py "$DATABASE_URL" 3 >"$WORK/pool_reset.json"

# --- etcd: lease keep-alive through its gRPC gateway ------------------------------------------

log "etcd: lease keep-alive on 127.0.0.1:$ETCD_PORT"
etcd --name bench --data-dir "$WORK/etcd" --log-level error --logger zap \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
  --initial-cluster "bench=http://127.0.0.1:$((ETCD_PORT + 10))" >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && break
  kill -0 "$ETCD_PID" 2>/dev/null || { cat "$WORK/etcd.log" >&2; die "etcd exited"; }
  sleep 0.1
done
"$PY" bench/etcd_leases.py "http://127.0.0.1:$ETCD_PORT" "$NODES" >"$WORK/leases.rows"
wrk -t"$THREADS" -c"$CONNS" -d2s -s bench/lua/etcd_keepalive.lua "http://127.0.0.1:$ETCD_PORT" \
  -- "$WORK/leases.rows" >/dev/null
wrk_phase etcd "$CONNS" "$DURATION" bench/lua/etcd_keepalive.lua "http://127.0.0.1:$ETCD_PORT" \
  "$WORK/leases.rows"
kill "$ETCD_PID"; wait "$ETCD_PID" 2>/dev/null || true; ETCD_PID=''

# --- variants: what each choice buys, measured in this same run ------------------------------

variants=()
if [[ $COMPARE == 1 ]]; then
  # name | environment
  variants=(
    "uncoalesced|HEARTBEAT_MAX_BATCH=1 HEARTBEAT_MAX_IN_FLIGHT=8"
    "in_flight_2|HEARTBEAT_MAX_IN_FLIGHT=2"
    "in_flight_4|HEARTBEAT_MAX_IN_FLIGHT=4"
    "workers_1|WEB_CONCURRENCY=1"
    "workers_3|WEB_CONCURRENCY=3"
    "baseline|"
  )
  for v in "${variants[@]}"; do
    name=${v%%|*} envs=${v#*|}
    log "variant $name: ${envs:-(main configuration)}"
    # shellcheck disable=SC2086
    start_app $envs
    warm_up
    wrk_phase "v_${name}_hello" "$CONNS" "$SHORT" bench/lua/hello.lua "$BASE"
    wrk_phase "v_${name}_heartbeat" "$CONNS" "$SHORT" bench/lua/heartbeat.lua "$BASE" "$WORK/beat.rows"
    stop_app
  done
fi

# --- sweep -----------------------------------------------------------------------------------

log "sweep: $SWEEP_SIZES rows, 0 % and 10 % transitions; heartbeat wait (rolled back)"
"$PY" bench/sweep.py "$WORK/sweep.json" --database-url "$DATABASE_URL" --sizes "$SWEEP_SIZES" >&2

uptime >"$WORK/uptime_after"

# --- report ----------------------------------------------------------------------------------

"$PY" bench/report.py "$WORK" --variants "$(printf '%s\n' "${variants[@]}")" \
  --rounds "$ROUNDS" --results bench/results --pg-version "$(psql_su -At -c 'SHOW server_version')"
