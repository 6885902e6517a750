#!/usr/bin/env bash
# Measures examples/basicauth under wrk: requests with cached Basic-auth
# credentials against the unauthenticated /healthz of the same server, same
# connections and duration, one after the other. Prints both and the ratio.
#
#   scripts/bench-wrk.sh [duration, default 10s] [connections, default 32]
#
# Installs wrk from Debian's packages when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-32}
port=${PORT:-18480}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi

tmp=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/basicauth" ./examples/basicauth
password='wrk benchmark passphrase'
"$tmp/basicauth" -addr "127.0.0.1:$port" -db "$tmp/auth.db" -demo-password "$password" >"$tmp/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
auth="Authorization: Basic $(printf 'demo:%s' "$password" | base64 -w0)"
curl -fs -H "$auth" "http://127.0.0.1:$port/" >/dev/null # the one full verification; cached from now on

run() { # path [header]
  if [ $# -gt 1 ]; then wrk -t2 -c"$conns" -d"$duration" --latency -H "$2" "http://127.0.0.1:$port$1"
  else wrk -t2 -c"$conns" -d"$duration" --latency "http://127.0.0.1:$port$1"; fi
}
rps() { awk '/^Requests\/sec/ {print $2}'; }
p99() { awk '$1 == "99%" {print $2}'; }

health=$(run /healthz)
authd=$(run / "$auth")
echo "== /healthz (no authentication)"; echo "$health"
echo "== / (Basic auth, cached credentials)"; echo "$authd"
h=$(echo "$health" | rps); a=$(echo "$authd" | rps)
echo
echo "healthz: $h req/s, p99 $(echo "$health" | p99)"
echo "basic:   $a req/s, p99 $(echo "$authd" | p99)"
echo "ratio basic/healthz: $(awk -v a="$a" -v h="$h" 'BEGIN {printf "%.2f", a / h}')"
if grep -q 'Non-2xx' <<<"$authd"; then echo "WARNING: non-2xx answers under load" >&2; exit 1; fi
