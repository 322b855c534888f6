#!/usr/bin/env bash
# Time from process start to ready (/healthz 200), cold: a fresh data
# directory (SQLite) or a fresh PostgreSQL database, so every migration
# runs. RUNS runs each (default 5); prints each and the median, in ms.
#   DAEMON   the cwpexportd binary (default bin/cwpexportd)
set -euo pipefail
cd "$(dirname "$0")/../.."
DAEMON=${DAEMON:-bin/cwpexportd}
RUNS=${RUNS:-5}
tmp=$(mktemp -d)
chmod 755 "$tmp"
trap 'scripts/pg-cluster.sh stop "$tmp/pg" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
port() { python3 -c 'import socket,random
while True:
    p=random.randint(20000,32000); s=socket.socket()
    try: s.bind(("127.0.0.1",p)); print(p); break
    except OSError: pass'; }
pg=$(scripts/pg-cluster.sh bindir)
url=$(scripts/pg-cluster.sh start "$tmp/pg" "$(port)")
export TENCENTCLOUD_SECRET_ID=AKIDstartup TENCENTCLOUD_SECRET_KEY=startupkey0123456789abcdef01234
emu=127.0.0.1:$(port)
bin/cwp-emulator -listen "$emu" >/dev/null 2>&1 &
emu_pid=$!
trap 'kill $emu_pid 2>/dev/null; scripts/pg-cluster.sh stop "$tmp/pg" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
# once ENGINE N: one cold start; prints milliseconds to ready.
once() {
  local r g db=() dir="$tmp/data-$1-$2"
  r=$(port) g=$(port)
  if [ "$1" = postgres ]; then
    "$pg/psql" -q "$url" -c "CREATE DATABASE cold_$2"
    db=(-database "${url%/*}/cold_$2")
  fi
  local start end
  start=$(date +%s%N)
  "$DAEMON" -grpc-addr "127.0.0.1:$g" -rest-addr "127.0.0.1:$r" -data-dir "$dir" "${db[@]}" \
    -cloud-endpoint "$emu" -cloud-scheme HTTP -insecure-allow-private-cloud -metrics-addr "127.0.0.1:$(port)" \
    -log-format json >"$dir.log" 2>&1 &
  local pid=$!
  until curl -fsS "http://127.0.0.1:$r/healthz" >/dev/null 2>&1; do
    kill -0 $pid 2>/dev/null || { cat "$dir.log" >&2; exit 1; }
    sleep 0.005
  done
  end=$(date +%s%N)
  kill $pid && wait $pid || true
  echo $(((end - start) / 1000000))
}
for engine in sqlite postgres; do
  runs=()
  for n in $(seq "$RUNS"); do runs+=("$(once $engine $n)"); done
  median=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
  echo "$engine: start to ready, cold (ms): ${runs[*]}; median $median"
done
