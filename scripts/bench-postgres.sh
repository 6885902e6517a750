#!/usr/bin/env bash
# The hot reads on PostgreSQL (issue 27): examples/login on a fresh
# PostgreSQL database, loaded by wrk route after route, interleaved rounds:
#
#   open     /healthz (no authentication)
#   basic    /api/ with cached Basic credentials (the user's row read)
#   session  / with a session cookie (the session read)
#   token    /api/ with an app token as Bearer (the token read)
#
# For each run it prints req/s, and the CPU time per request of the server
# process and of the PostgreSQL backends serving this database, both read
# from /proc/PID/stat (utime + stime) before and after the run: CPU per
# request is much less sensitive to other load on the machine than req/s.
# At the end: medians, the ratio of each cached route to /healthz, and the
# server CPU beyond /healthz.
#
#   scripts/bench-postgres.sh [duration, default 4s] [connections, default 16] [rounds, default 3]
#
# Then it runs scripts/pgread on the same database: what a bare prepared
# point read costs the client through database/sql and through pgxpool,
# 16 goroutines on 4 connections, no HTTP: the driver's floor.
#
# Environment:
#   PGURL      an administrator's URL of the PostgreSQL server (default
#              postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable);
#              the script creates a database of its own there and drops it
#              at the end. Its backends must run on this machine (their CPU
#              is read from /proc).
#   SERVER_ARGS  more flags for examples/login (e.g. "-db-conns 8").
#   THREADS    wrk threads (default 1).
#   LOGIN      an examples/login binary to measure instead of this tree's
#              (e.g. one built from another commit, to compare).
#
# Servers, PostgreSQL and wrk share the CPUs (as in the issue's figures);
# run it on a quiet machine for req/s worth comparing.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-4s}
conns=${2:-16}
rounds=${3:-3}
admin=${PGURL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi
for c in wrk curl psql python3 go; do
  command -v "$c" >/dev/null || { echo "$c is missing" >&2; exit 1; }
done
hz=$(getconf CLK_TCK)

tmp=$(mktemp -d)
dbname=minimost_bench_$$
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  psql "$admin" -qAtc "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

psql "$admin" -qAtc "CREATE DATABASE $dbname" >/dev/null
# The same server, this database: replace the path of the admin URL.
dburl=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$admin" "$dbname")

if [ -n "${LOGIN:-}" ]; then cp "$LOGIN" "$tmp/login"; else go build -o "$tmp/login" ./examples/login; fi
go build -o "$tmp/authctl" ./examples/authctl
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password='wrk benchmark passphrase'
# shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
"$tmp/login" -addr "127.0.0.1:$port" -db "$dburl" -demo-password "$password" ${SERVER_ARGS:-} >"$tmp/login.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
curl -s -o /dev/null "http://127.0.0.1:$port/healthz" || { cat "$tmp/login.log" >&2; exit 1; }

base=http://127.0.0.1:$port
basic="Authorization: Basic $(printf 'demo:%s' "$password" | base64 -w0)"
cookie=$(curl -s -o /dev/null -D - --data-urlencode username=demo --data-urlencode "password=$password" \
  "$base/login" | tr -d '\r' | awk -F'[:;] *' 'tolower($1) == "set-cookie" {print $2; exit}')
[ -n "$cookie" ] || { echo "login gave no cookie" >&2; exit 1; }
token=$("$tmp/authctl" -db "$dburl" token add demo bench)
[ -n "$token" ] || { echo "authctl gave no token" >&2; exit 1; }

names=(open basic session token)
declare -A url hdr
url[open]=$base/healthz hdr[open]=
url[basic]=$base/api/ hdr[basic]=$basic
url[session]=$base/ hdr[session]="Cookie: $cookie"
url[token]=$base/api/ hdr[token]="Authorization: Bearer $token"

check() { # every route answers 200 (the first Basic request also fills the cache)
  local n code
  for n in "${names[@]}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' ${hdr[$n]:+-H "${hdr[$n]}"} "${url[$n]}")
    [ "$code" = 200 ] || { echo "$n (${url[$n]}) answered $code, not 200" >&2; exit 1; }
  done
}
ticks() { # pid...: utime + stime of these processes, in clock ticks (0 for one gone)
  local p sum=0 t
  for p in "$@"; do
    t=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null || echo 0)
    sum=$((sum + t))
  done
  echo "$sum"
}
backends() { # the pids of the PostgreSQL backends of this database
  psql "$admin" -qAtc "SELECT pid FROM pg_stat_activity WHERE datname = '$dbname' AND pid <> pg_backend_pid()"
}
switches() { # pid: its threads' context switches so far, voluntary and not
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'
}
sessions() { psql "$admin" -qAtc "SELECT sessions FROM pg_stat_database WHERE datname = '$dbname'"; }
declare -A before
run() { # name: one wrk run; prints "req/s serverµs pgµs new-sessions"
  local out s0 s1 x0 x1 pids p0 p1 n0 n1 reqs t
  pids=$(backends)
  declare -A seen=()
  for p in $pids; do before[$p]=$(ticks "$p"); seen[$p]=1; done
  n0=$(sessions)
  s0=$(ticks "$server") x0=$(switches "$server")
  out=$(wrk -t"${THREADS:-1}" -c"$conns" -d"$duration" ${hdr[$1]:+-H "${hdr[$1]}"} "${url[$1]}")
  s1=$(ticks "$server") x1=$(switches "$server")
  n1=$(sessions)
  p0=0 p1=0
  # A backend that ended during the run is left out (its time is lost with
  # it: "new conns" says whether the pool opened and closed connections);
  # one that started during it counts from zero.
  for p in $(backends); do
    [ "${seen[$p]:-}" = done ] && continue
    t=$(ticks "$p")
    [ "$t" -gt 0 ] || continue
    p0=$((p0 + ${before[$p]:-0})) p1=$((p1 + t))
    seen[$p]=done
  done
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
    echo "$out" >&2; echo "$1: errors under load" >&2; exit 1
  fi
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")" -v n="$reqs" -v s=$((s1 - s0)) -v p=$((p1 - p0)) \
    -v hz="$hz" -v c=$((n1 - n0)) -v x=$((x1 - x0)) \
    'BEGIN {printf "%.0f %.1f %.1f %d %.2f", rps, s / hz / n * 1e6, p / hz / n * 1e6, c, x / n}'
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "examples/login on PostgreSQL $(psql "$admin" -qAtc 'SHOW server_version'), wrk -t${THREADS:-1} -c$conns -d$duration, $rounds rounds, $(nproc) CPUs, server flags: ${SERVER_ARGS:-none}"
check
printf '%-6s %-8s %9s %11s %11s %9s %9s\n' round route 'req/s' 'server µs' 'pg µs' 'new conns' 'switches'
for i in $(seq "$rounds"); do
  for k in "${!names[@]}"; do
    n=${names[$(((k + i - 1) % ${#names[@]}))]}
    res=$(run "$n")
    read -r rps scpu pcpu newc sw <<<"$res"
    printf '%-6s %-8s %9s %11s %11s %9s %9s\n' "$i" "$n" "$rps" "$scpu" "$pcpu" "$newc" "$sw"
    echo "$rps" >>"$tmp/rps.$n"; echo "$scpu" >>"$tmp/cpu.$n"; echo "$pcpu" >>"$tmp/pg.$n"
  done
  check
done
echo
printf '%-8s %9s %8s %11s %14s %11s\n' median 'req/s' ratio 'server µs' 'beyond open' 'pg µs'
open_rps=$(median <"$tmp/rps.open") open_cpu=$(median <"$tmp/cpu.open")
for n in "${names[@]}"; do
  rps=$(median <"$tmp/rps.$n") cpu=$(median <"$tmp/cpu.$n") pg=$(median <"$tmp/pg.$n")
  awk -v n="$n" -v r="$rps" -v o="$open_rps" -v c="$cpu" -v oc="$open_cpu" -v pg="$pg" \
    'BEGIN {printf "%-8s %9s %8.2f %11.1f %14.1f %11.1f\n", n, r, r / o, c, c - oc, pg}'
done

# The driver's floor: a bare prepared point read, 16 goroutines on 4
# connections, no HTTP (scripts/pgread), in the same database.
go build -o "$tmp/pgread" ./scripts/pgread
echo
for mode in sql pgxpool; do
  "$tmp/pgread" -db "$dburl" -mode "$mode" -goroutines 16 -conns 4 -d "$duration"
done
# Requests cancelled by wrk's closing connections at the end of each run
# are logged as failed closed; other lines would be news.
grep -iv 'context canceled\|operation was canceled' "$tmp/login.log" | grep -i 'error\|warn' >&2 || true
