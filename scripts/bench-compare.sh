#!/usr/bin/env bash
# Compares, in one run, with the same wrk settings and interleaved rounds:
#
#   open      examples/basicauth's /healthz (no authentication)
#   basic     examples/basicauth's / with cached Basic credentials
#   lopen     examples/login's /healthz (the open route of the session server)
#   session   examples/login's / with a session cookie (logged in once by curl)
#   caddy     Caddy's open route (respond)
#   caddyba   Caddy's basic_auth route (bcrypt, with Caddy's hash cache)
#
# and prints each round's req/s, the medians and the ratios the performance
# targets name (issue 16): basic/open, basic/caddyba, session/lopen,
# caddyba/caddy.
#
#   scripts/bench-compare.sh [duration, default 4s] [connections, default 16] [rounds, default 5]
#
# Environment:
#   USERS=N    first fill each example's database with N more users
#              (user0000000, ...; e.g. USERS=1000000), to measure the cached
#              paths with a big table.
#   SHARED=1   run servers and wrk unpinned, wrk with two threads.
#
# On a machine with two or more CPUs every server (both examples and Caddy)
# runs on CPU 0 with GOMAXPROCS=1, and wrk (one thread) on CPU 1, so that the
# load generator does not take the servers' time. GOMAXPROCS=1 is what Go
# picks by itself from the affinity mask; it is set explicitly so that Caddy
# (which also reads cgroup quotas) and the examples run alike. Only the
# server under test is loaded at a time; the others wait idle.
#
# Each run must answer 200 throughout: the script checks every route with
# curl before and after each round (a 3xx, such as a session that ended and
# redirects to the login page, is not counted by wrk's "Non-2xx or 3xx"),
# and stops on any non-2xx or socket error that wrk reports.
#
# Installs wrk and caddy from Debian's packages when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-4s}
conns=${2:-16}
rounds=${3:-5}
users=${USERS:-0}
case $users in '' | *[!0-9]*) echo "USERS must be a number" >&2; exit 2 ;; esac

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v caddy >/dev/null || missing+=(caddy)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for c in wrk caddy curl python3; do
  command -v "$c" >/dev/null || { echo "$c is missing" >&2; exit 1; }
done

server_cpu=() wrk_cmd=(wrk -t2)
if [ "${SHARED:-}" = "" ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=(env GOMAXPROCS=1 taskset -c 0) wrk_cmd=(taskset -c 1 wrk -t1)
  echo "servers pinned to CPU 0 with GOMAXPROCS=1, wrk (1 thread) to CPU 1"
else
  echo "servers and wrk (2 threads) share all $(nproc) CPUs"
fi

tmp=$(mktemp -d)
pids=()
stop() { # pid...: ends the servers this script started
  local p
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
trap 'stop "${pids[@]}"; rm -rf "$tmp"' EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_up() { # url log: waits until the url answers at all; shows the log if it does not
  for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1; its log:" >&2
  cat "$2" >&2
  exit 1
}

go build -o "$tmp/basicauth" ./examples/basicauth
go build -o "$tmp/login" ./examples/login
password='wrk benchmark passphrase'
bport=$(free_port) lport=$(free_port) cport=$(free_port)

start_example() { # name port: starts examples/<name> on its own database
  "${server_cpu[@]}" "$tmp/$1" -addr "127.0.0.1:$2" -db "$tmp/$1.db" -demo-password "$password" >>"$tmp/$1.log" 2>&1 &
  pids+=($!)
  wait_up "http://127.0.0.1:$2/healthz" "$tmp/$1.log"
}

start_example basicauth "$bport"
start_example login "$lport"

if [ "$users" -gt 0 ]; then
  # The examples created the schema and the demo user; stop them, add the
  # users (with demo's hash: a valid one, never checked here) in one
  # transaction per file, and start them again on the bigger tables.
  stop "${pids[@]}"
  pids=()
  echo "adding $users users to each database"
  python3 - "$users" "$tmp/basicauth.db" "$tmp/login.db" <<'EOF'
import sqlite3, sys, time
n = int(sys.argv[1])
for path in sys.argv[2:]:
    t = time.monotonic()
    db = sqlite3.connect(path)
    (h,) = db.execute("SELECT password_hash FROM users WHERE username = 'demo'").fetchone()
    with db:
        db.executemany(
            "INSERT INTO users (username, password_hash, failed_attempts) VALUES (?, ?, 0)",
            (("user%07d" % i, h) for i in range(n)))
    (count,) = db.execute("SELECT count(*) FROM users").fetchone()
    db.close()
    print(f"  {path.rsplit('/', 1)[1]}: {count} users ({time.monotonic() - t:.1f} s)")
EOF
  start_example basicauth "$bport"
  start_example login "$lport"
fi

# Caddy: the hash is bcrypt from caddy itself; Caddy 2.8 renamed the
# directive basicauth to basic_auth (Debian 12 has 2.6), so take whichever
# this Caddy knows.
hash=$(caddy hash-password --plaintext "$password")
directive=basic_auth
write_caddyfile() {
  cat >"$tmp/Caddyfile" <<EOF
{
	admin off
	auto_https off
}
http://:$cport {
	bind 127.0.0.1
	handle /healthz {
		respond "ok
" 200
	}
	handle {
		$directive {
			demo $hash
		}
		respond "Hello, {http.auth.user.id}. You are authenticated.
" 200
	}
}
EOF
}
write_caddyfile
if ! caddy adapt --config "$tmp/Caddyfile" --adapter caddyfile >/dev/null 2>&1; then
  directive=basicauth
  write_caddyfile
fi
# Its own directories in the temporary one: Caddy saves its config and keeps
# data there, not in the user's home.
XDG_CONFIG_HOME=$tmp/caddy XDG_DATA_HOME=$tmp/caddy "${server_cpu[@]}" caddy run --config "$tmp/Caddyfile" --adapter caddyfile >"$tmp/caddy.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$cport/healthz" "$tmp/caddy.log"

auth="Authorization: Basic $(printf 'demo:%s' "$password" | base64 -w0)"
# Log in once to examples/login; the cookie is reused by every session run.
cookie=$(curl -s -o /dev/null -D - --data-urlencode username=demo --data-urlencode "password=$password" \
  "http://127.0.0.1:$lport/login" | tr -d '\r' | awk -F'[:;] *' 'tolower($1) == "set-cookie" {print $2; exit}')
if [ -z "$cookie" ]; then
  echo "login to examples/login gave no cookie" >&2
  exit 1
fi
cookie="Cookie: $cookie"

names=(open basic lopen session caddy caddyba)
declare -A url hdr
url[open]=http://127.0.0.1:$bport/healthz hdr[open]=
url[basic]=http://127.0.0.1:$bport/ hdr[basic]=$auth
url[lopen]=http://127.0.0.1:$lport/healthz hdr[lopen]=
url[session]=http://127.0.0.1:$lport/ hdr[session]=$cookie
url[caddy]=http://127.0.0.1:$cport/healthz hdr[caddy]=
url[caddyba]=http://127.0.0.1:$cport/ hdr[caddyba]=$auth

check() { # every route answers 200 (the first authenticated requests also fill the caches)
  local n code
  for n in "${names[@]}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' ${hdr[$n]:+-H "${hdr[$n]}"} "${url[$n]}")
    if [ "$code" != 200 ]; then
      echo "$n (${url[$n]}) answered $code, not 200" >&2
      exit 1
    fi
  done
}
run() { # name: one wrk run, printing its req/s
  local out
  out=$("${wrk_cmd[@]}" -c"$conns" -d"$duration" ${hdr[$1]:+-H "${hdr[$1]}"} "${url[$1]}")
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
    echo "$out" >&2
    echo "$1: errors under load" >&2
    exit 1
  fi
  awk '/^Requests\/sec/ {print $2}' <<<"$out"
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

echo "wrk: ${wrk_cmd[*]} -c$conns -d$duration, $rounds rounds; $((users + 1)) users; caddy $(caddy version | cut -d' ' -f1) ($directive)"
check
declare -A rps
r_basic=() r_vcaddy=() r_session=() r_caddy=()
printf '%-6s' round; printf ' %9s' "${names[@]}"; echo
for i in $(seq "$rounds"); do
  # Each round starts one later in the list, so that no route always runs
  # first (after the idle pause of the checks) or last.
  for k in "${!names[@]}"; do
    n=${names[$(((k + i - 1) % ${#names[@]}))]}
    rps[$n]=$(run "$n")
  done
  check
  printf '%-6s' "$i"; for n in "${names[@]}"; do printf ' %9s' "${rps[$n]}"; done; echo
  for n in "${names[@]}"; do echo "${rps[$n]}" >>"$tmp/rps.$n"; done
  r_basic+=("$(div "${rps[basic]}" "${rps[open]}")")
  r_vcaddy+=("$(div "${rps[basic]}" "${rps[caddyba]}")")
  r_session+=("$(div "${rps[session]}" "${rps[lopen]}")")
  r_caddy+=("$(div "${rps[caddyba]}" "${rps[caddy]}")")
done

declare -A med
printf '%-6s' median
for n in "${names[@]}"; do med[$n]=$(median <"$tmp/rps.$n"); printf ' %9s' "${med[$n]}"; done
echo
echo
echo "ratio                             median of rounds  of medians  rounds            target"
ratio() { # label a b per-round-ratios... target
  local label=$1 a=$2 b=$3 target=${*: -1}
  local rs=("${@:4:$#-4}")
  printf '%-33s %16s %11s  %-17s %s\n' "$label" "$(printf '%s\n' "${rs[@]}" | median)" \
    "$(div "${med[$a]}" "${med[$b]}")" "$(printf '%s\n' "${rs[@]}" | sort -n | sed -n '1p;$p' | paste -sd-)" "$target"
}
ratio "cached Basic / own open route" basic open "${r_basic[@]}" ">= 0.8"
ratio "cached Basic / Caddy basic_auth" basic caddyba "${r_vcaddy[@]}" ">= 1.2"
ratio "session page / own open route" session lopen "${r_session[@]}" ">= 0.7"
ratio "Caddy basic_auth / Caddy open" caddyba caddy "${r_caddy[@]}" "(reference)"
