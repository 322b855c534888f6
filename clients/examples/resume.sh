#!/usr/bin/env bash
# A watch outlives a restart of the service, with each client package's
# helper and with the CLI: the Python and Node.js resume programs, and
# `cwpexport export --watch --download`, start an export and watch it; after
# their first message this script restarts the service (SIGTERM, then a new
# process on the same ports and data directory), and each must reopen its
# watch by itself and follow the task to FINISHED.
#
# The cloud is a separate cwp-emulator process, so its tasks outlive the
# service's restart as a real cloud's do.
#
#   clients/examples/resume.sh BIN_DIR [python node cli]
# BIN_DIR holds built cwpexportd, cwp-emulator and cwpexport binaries; the
# client environments are made with clients/examples/<lang>/setup-env.sh
# under it.
set -euo pipefail
bin=$(realpath "${1:?usage: resume.sh BIN_DIR [python node cli]}")
shift
langs=${*:-python node cli}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/cwpexport-resume.XXXXXX)
emu_pid="" svc_pid=""
cleanup() {
  for pid in $svc_pid $emu_pid; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -n 20 "$work/service.log" >&2 || true; exit 1; }

# A throw-away credential shared by the emulator and the service, never printed.
export TENCENTCLOUD_SECRET_ID="AKIDresume$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export TENCENTCLOUD_SECRET_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# Tasks stay pending 4s: long enough for the restart to fall within the watch.
"$bin/cwp-emulator" -listen 127.0.0.1:0 -pending 4s 2>"$work/emulator.log" &
emu_pid=$!
for _ in $(seq 1 100); do grep -q 'cwp emulator listening' "$work/emulator.log" && break; sleep 0.1; done
emu=$(sed -n 's/.*cwp emulator listening.* addr=\([^ ]*\).*/\1/p' "$work/emulator.log" | head -n 1)
[ -n "$emu" ] || { cat "$work/emulator.log" >&2; fail "the emulator did not start"; }

# start_service GRPC_ADDR REST_ADDR: starts the service and waits until it serves.
start_service() {
  local before
  before=$(grep -c '"msg":"serving"' "$work/service.log" 2>/dev/null || true)
  "$bin/cwpexportd" -grpc-addr "$1" -rest-addr "$2" -metrics-addr 127.0.0.1:0 -cloud-endpoint "$emu" -cloud-scheme HTTP -insecure-allow-private-cloud \
    -data-dir "$work/data" -log-format json -min-poll-interval 500ms -heartbeat 1s 2>>"$work/service.log" &
  svc_pid=$!
  for _ in $(seq 1 200); do
    [ "$(grep -c '"msg":"serving"' "$work/service.log" 2>/dev/null || true)" -gt "${before:-0}" ] && return 0
    kill -0 "$svc_pid" 2>/dev/null || fail "the service exited"
    sleep 0.1
  done
  fail "the service did not start"
}
start_service 127.0.0.1:0 127.0.0.1:0
serving=$(grep '"msg":"serving"' "$work/service.log" | tail -n 1)
grpc=$(jq -r .grpc <<<"$serving")
rest=$(jq -r .rest <<<"$serving")
rest=${rest#http://}

for lang in $langs; do
  # started: what the program prints once its watch has begun.
  started='^watching '
  case $lang in
    python)
      "$here/python/setup-env.sh" "$bin/env-python" >/dev/null
      prog=("$bin/env-python/bin/python" "$here/python/resume.py" "$grpc") ;;
    node)
      "$here/node/setup-env.sh" "$bin/env-node" >/dev/null
      prog=(node "$bin/env-node/resume.mjs" "$grpc") ;;
    cli)
      started=' SNAPSHOT '
      prog=("$bin/cwpexport" export --filter LicenseType=2 --watch --download "$work/cli.csv" --addr "$grpc") ;;
    *) fail "unknown language $lang" ;;
  esac
  out="$work/$lang.out"
  timeout 120 "${prog[@]}" >"$out" 2>&1 &
  prog_pid=$!
  for _ in $(seq 1 300); do
    grep -q "$started" "$out" && break
    kill -0 "$prog_pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "$started" "$out" || { cat "$out" >&2; fail "$lang: no watch began"; }
  echo "$lang: $(grep "$started" "$out" | head -n 1); restarting the service"
  kill -TERM "$svc_pid"
  wait "$svc_pid" || true
  start_service "$grpc" "$rest"
  rc=0
  wait "$prog_pid" || rc=$?
  cat "$out"
  [ "$rc" -eq 0 ] || fail "$lang resume program exited $rc"
  if [ "$lang" = cli ]; then
    grep -q ' RECONNECTING ' "$out" || fail "cli: the watch did not say it was reconnecting"
    [ "$(grep -c ' SNAPSHOT ' "$out")" -ge 2 ] || fail "cli: the resumed watch did not start with a SNAPSHOT"
    grep -q '^saved ' "$out" || fail "cli: the file was not saved"
    echo "cli resume: OK"
  fi
done
echo "resume: OK ($langs)"
