#!/usr/bin/env bash
# Re-runs the outside attack of issue 11 against the examples and prints a
# summary table: (1) checks one address gets spraying a password with 32 and
# 8 connections for 60 s, (2) the wrong-password time for users with legacy
# or unusable stored hashes over the time for an unknown user, (3) another
# address's login latency under a registration flood, (4) whether an admin
# lock survives logins in flight, on SQLite and PostgreSQL.
#
#   scripts/attack/run.sh [spray|timing|flood|lockrace|all]...   (default: all)
#
# Environment: OUT (binaries, databases, logs, results; default
# /tmp/attack-<commit>), NOBUILD=1 (reuse the binaries in OUT), PGURL
# (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable; the run
# uses a schema of its own, dropped afterwards; PGURL=none skips PostgreSQL),
# SPRAY_CONNS (default "32 8"), SPRAY_DUR (60s), TIMING_N (25),
# FLOOD_CONNS (200), FLOOD_DUR (25s), RACE_TRIES_SQLITE (10), RACE_TRIES_PG (5).
# It talks to the servers only over HTTP, authctl, sqlite3 and psql, so the
# same script measures the code before and after a fix.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/attack-$(git rev-parse --short HEAD)}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
SPRAY_CONNS=${SPRAY_CONNS:-32 8}
SPRAY_DUR=${SPRAY_DUR:-60s}
TIMING_N=${TIMING_N:-25}
FLOOD_CONNS=${FLOOD_CONNS:-200}
FLOOD_DUR=${FLOOD_DUR:-25s}
RACE_TRIES_SQLITE=${RACE_TRIES_SQLITE:-10}
RACE_TRIES_PG=${RACE_TRIES_PG:-5}
DEMO_PW='attack demo passphrase 2025'
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
mkdir -p "$OUT"
RESULT=${RESULT:-$OUT/results.tsv} # appended to, never truncated: use a fresh OUT (or RESULT) per run

for tool in sqlite3 psql; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (apt-get install -y sqlite3 postgresql-client)" >&2; exit 1; }
done
if [ "${NOBUILD:-}" = "" ]; then
  echo "building into $OUT ($(git rev-parse --short HEAD)$(git diff --quiet || echo ', dirty'))"
  go build -o "$OUT/login" ./examples/login
  go build -o "$OUT/authctl" ./examples/authctl
  go build -o "$OUT/attack" ./scripts/attack
fi
A=$OUT/attack

server_pid=
schema=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
cleanup() {
  stop_server
  if [ -n "${sampler_pid:-}" ]; then kill "$sampler_pid" 2>/dev/null || true; fi
  if [ -n "$schema" ]; then
    PGOPTIONS=--client-min-messages=warning psql "$PGURL" -X -q -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# start_server NAME DB LOCKOUT: a login example on a free port, with a fresh
# database (SQLite file removed first); sets URL and server_pid.
start_server() {
  local name=$1 db=$2 lockout=$3 port
  case "$db" in postgres://*|postgresql://*) ;; *) rm -f "$db" "$db-wal" "$db-shm" ;; esac
  port=$("$A" freeport)
  URL=http://127.0.0.1:$port
  "$OUT/login" -addr "127.0.0.1:$port" -db "$db" -demo-password "$DEMO_PW" -lockout "$lockout" >"$OUT/$name.log" 2>&1 &
  server_pid=$!
  "$A" waitready -url "$URL" -timeout 30s
  echo "== $name: server pid $server_pid on $URL, db $db, lockout $lockout; load $(cut -d' ' -f1-3 /proc/loadavg)"
}

# pg_url: a fresh schema of our own, and the URL that selects it.
pg_fresh() {
  schema=attack_$$_$RANDOM
  psql "$PGURL" -X -q -c "CREATE SCHEMA $schema" >/dev/null
  local sep='?'
  case "$PGURL" in *\?*) sep='&' ;; esac
  PGSCHEMAURL="$PGURL${sep}options=-csearch_path%3D$schema"
}
pg_drop() {
  PGOPTIONS=--client-min-messages=warning psql "$PGURL" -X -q -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null
  schema=
}

want() { for s in "${steps[@]}"; do [ "$s" = all ] || [ "$s" = "$1" ] && return 0; done; return 1; }

# What else loads the machine: a snapshot of the busiest processes every
# 15 s, in $OUT/load.txt (our own server and attack binaries included).
echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
(
  while :; do
    { date +%T; top -b -n1 -o %CPU -w 200 2>/dev/null | sed -n '1p;8,14p'; } >>"$OUT/load.txt"
    sleep 15
  done
) &
sampler_pid=$!

if want spray; then
  n=10
  for conns in $SPRAY_CONNS; do
    # Lockout disabled: no account locks, so every 401 is a real check.
    start_server "spray$conns" "$OUT/spray$conns.db" -1
    "$A" spray -url "$URL" -db "$OUT/spray$conns.db" -conns "$conns" -dur "$SPRAY_DUR" -src "127.0.0.$n" -result "$RESULT"
    stop_server
    # Issue 11, hole 8: every 429 logged a line. Lines the server logged.
    printf '%s\t%s\t%s\t%s\n' "(8) server log lines during the spray" "$conns conns, $SPRAY_DUR" \
      "$(wc -l <"$OUT/spray$conns.log")" "WARN lines: $(grep -c ' WARN ' "$OUT/spray$conns.log" || true)" | tee -a "$RESULT"
    n=$((n + 1))
  done
fi

if want timing; then
  start_server timing "$OUT/timing.db" -1
  "$A" timing -url "$URL" -db "$OUT/timing.db" -n "$TIMING_N" -result "$RESULT"
  stop_server
fi

if want flood; then
  start_server flood "$OUT/flood.db" -1
  "$A" flood -url "$URL" -password "$DEMO_PW" -conns "$FLOOD_CONNS" -dur "$FLOOD_DUR" -result "$RESULT"
  stop_server
  echo "users in the database after the flood: $(sqlite3 "$OUT/flood.db" 'SELECT count(*) FROM users')"
fi

if want lockrace; then
  start_server lockrace-sqlite "$OUT/lockrace.db" 5
  "$A" lockrace -url "$URL" -db "$OUT/lockrace.db" -authctl "$OUT/authctl" -password "$DEMO_PW" -tries "$RACE_TRIES_SQLITE" -net 2 -result "$RESULT"
  stop_server
  if [ "$PGURL" != none ]; then
    pg_fresh
    start_server lockrace-postgres "$PGSCHEMAURL" 5
    "$A" lockrace -url "$URL" -db "$PGSCHEMAURL" -authctl "$OUT/authctl" -password "$DEMO_PW" -tries "$RACE_TRIES_PG" -net 3 -result "$RESULT"
    stop_server
    pg_drop
  fi
fi

echo
echo "Summary ($RESULT; load now $(cut -d' ' -f1-3 /proc/loadavg)):"
"$A" summary "$RESULT"
