#!/usr/bin/env bash
# Issue 26's figure: the password checks one address gets spraying a 30 s
# spray at 32 connections against one server, and against several
# instances of examples/login on one database sprayed in turn (two on one
# SQLite file, three on PostgreSQL), with the ratio to one server's figure.
# One budget for all the instances gives about 1.0x; a budget per process
# gives about the number of instances.
#
#   scripts/attack/instances.sh
#
# Environment: OUT (default /tmp/instances-<commit>), DUR (30s), CONNS
# (32), LOCKOUT (5; -1 checks every password with no claim), PGURL (as
# run.sh; PGURL=none skips PostgreSQL). Servers listen on free ports of
# 127.0.0.1; each run sprays from an address of its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/instances-$(git rev-parse --short HEAD)}
DUR=${DUR:-30s}
CONNS=${CONNS:-32}
LOCKOUT=${LOCKOUT:-5}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
mkdir -p "$OUT"
RESULT=$OUT/results.tsv
: >"$RESULT"
echo "building into $OUT ($(git rev-parse --short HEAD)$(git diff --quiet || echo ', dirty'))"
go build -o "$OUT/login" ./examples/login
go build -o "$OUT/attack" ./scripts/attack
A=$OUT/attack

pids=()
schema=
stop_servers() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_servers
  if [ -n "$schema" ]; then
    PGOPTIONS=--client-min-messages=warning psql "$PGURL" -X -q -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# start_servers NAME DB N: N instances of examples/login on DB, one after
# the other (the first creates the demo user); sets URLS.
start_servers() {
  local name=$1 db=$2 n=$3 port url
  URLS=
  for i in $(seq "$n"); do
    port=$("$A" freeport)
    url=http://127.0.0.1:$port
    "$OUT/login" -addr "127.0.0.1:$port" -db "$db" -demo-password 'instances demo passphrase 42' -lockout "$LOCKOUT" >"$OUT/$name-$i.log" 2>&1 &
    pids+=($!)
    "$A" waitready -url "$url" -timeout 30s
    URLS=${URLS:+$URLS,}$url
  done
  echo "== $name: $n server(s) on $db; load $(cut -d' ' -f1-3 /proc/loadavg)"
}

src=40
spray() { # NAME DB N
  start_servers "$1" "$2" "$3"
  "$A" spray -url "$URLS" -db "$2" -conns "$CONNS" -dur "$DUR" -src "127.0.0.$src" -result "$RESULT" | tee "$OUT/$1.txt"
  src=$((src + 1))
  stop_servers
}
checks() { sed -n 's/.*401 (password checks): \([0-9]*\).*/\1/p' "$OUT/$1.txt"; }

echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$OUT"/one.db* "$OUT"/two.db*
spray sqlite-1 "$OUT/one.db" 1
spray sqlite-2 "$OUT/two.db" 2
if [ "$PGURL" != none ]; then
  for n in 1 3; do
    schema=instances_$$_$RANDOM
    psql "$PGURL" -X -q -c "CREATE SCHEMA $schema" >/dev/null
    sep='?'; case "$PGURL" in *\?*) sep='&' ;; esac
    spray "postgres-$n" "$PGURL${sep}options=-csearch_path%3D$schema" "$n"
    PGOPTIONS=--client-min-messages=warning psql "$PGURL" -X -q -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null
    schema=
  done
fi

echo
echo "password checks one address got, $DUR at $CONNS connections (lockout $LOCKOUT):"
one=$(checks sqlite-1)
printf '  SQLite, 1 server:              %s\n' "$one"
printf '  SQLite, 2 servers on one file: %s (%s x one server)\n' "$(checks sqlite-2)" "$(awk -v a="$(checks sqlite-2)" -v b="$one" 'BEGIN{printf "%.2f", a/b}')"
if [ "$PGURL" != none ]; then
  one=$(checks postgres-1)
  printf '  PostgreSQL, 1 server:          %s\n' "$one"
  printf '  PostgreSQL, 3 servers:         %s (%s x one server)\n' "$(checks postgres-3)" "$(awk -v a="$(checks postgres-3)" -v b="$one" 'BEGIN{printf "%.2f", a/b}')"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
