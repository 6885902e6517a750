#!/usr/bin/env bash
# Measures examples/basicauth under wrk: requests with cached Basic-auth
# credentials against the unauthenticated /healthz of the same server, same
# connections and duration, alternating, for a number of rounds. Prints each
# run, each round's ratio and the median ratio.
#
#   scripts/bench-wrk.sh [duration, default 10s] [connections, default 8] [rounds, default 3]
#
# On a machine with two or more CPUs the server runs on CPU 0 and wrk (one
# thread) on CPU 1, so that the load generator does not take the server's
# time: otherwise the comparison measures the scheduler as much as the
# server. SHARED=1 runs both unpinned, wrk with two threads, as does a
# machine without taskset (util-linux).
#
# Installs wrk from Debian's packages when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-8}
rounds=${3:-3}
port=${PORT:-18480}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi

server_cpu=() wrk_cmd=(wrk -t2)
if [ "${SHARED:-}" = "" ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=(taskset -c 0) wrk_cmd=(taskset -c 1 wrk -t1)
  echo "server pinned to CPU 0, wrk (1 thread) to CPU 1"
else
  echo "server and wrk (2 threads) share all $(nproc) CPUs"
fi

tmp=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/basicauth" ./examples/basicauth
password='wrk benchmark passphrase'
"${server_cpu[@]}" "$tmp/basicauth" -addr "127.0.0.1:$port" -db "$tmp/auth.db" -demo-password "$password" >"$tmp/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
auth="Authorization: Basic $(printf 'demo:%s' "$password" | base64 -w0)"
curl -fs -H "$auth" "http://127.0.0.1:$port/" >/dev/null # the one full verification; cached from now on

run() { # path [header]
  local args=(-c"$conns" -d"$duration" --latency)
  if [ $# -gt 1 ]; then args+=(-H "$2"); fi
  "${wrk_cmd[@]}" "${args[@]}" "http://127.0.0.1:$port$1"
}
rps() { awk '/^Requests\/sec/ {print $2}'; }
p99() { awk '$1 == "99%" {print $2}'; }

echo "wrk: $conns connections, $duration per run, $rounds rounds"
ratios=()
for i in $(seq "$rounds"); do
  health=$(run /healthz)
  authd=$(run / "$auth")
  if grep -q 'Non-2xx' <<<"$authd$health"; then
    echo "$health"; echo "$authd"
    echo "non-2xx answers under load" >&2
    exit 1
  fi
  h=$(rps <<<"$health") a=$(rps <<<"$authd")
  r=$(awk -v a="$a" -v h="$h" 'BEGIN {printf "%.2f", a / h}')
  ratios+=("$r")
  echo "round $i: healthz $h req/s p99 $(p99 <<<"$health") | basic $a req/s p99 $(p99 <<<"$authd") | ratio $r"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
echo "median ratio basic/healthz: $median"
