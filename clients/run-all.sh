#!/usr/bin/env bash
# Runs every client against a real service: builds cwpexportd, the cwpexport
# CLI and cwp-emulator, starts the service on free loopback ports on its
# embedded emulator, runs the Python and Node.js packages' example programs
# (each installed into a fresh environment first, as a user would), the
# grpcurl, curl and CLI examples and the headless-Chromium browser test, then
# stops the service. "resume" restarts a service of its own under the
# packages' and the CLI's open watches (clients/examples/resume.sh). Each client exits
# non-zero when the service does not answer as documented.
#
#   clients/run-all.sh            # from anywhere; needs what clients/install-tools.sh installs
#   CLIENTS="python curl" clients/run-all.sh   # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-python node resume grpcurl curl cli browser}
export PATH="$(go env GOPATH)/bin:$PATH"

work=$(mktemp -d /tmp/cwpexport-clients.XXXXXX)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/" ./cmd/cwpexportd ./cmd/cwpexport ./cmd/cwp-emulator

# Port 0: the kernel picks free ports; the service logs the ones it got.
"$work/cwpexportd" -grpc-addr 127.0.0.1:0 -rest-addr 127.0.0.1:0 -metrics-addr 127.0.0.1:0 -log-format json -data-dir "$work/data" \
  -emulator-pending 1500ms -min-poll-interval 500ms -heartbeat 1s 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q '"msg":"serving"' "$work/server.log" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "the service exited" >&2; exit 1; }
  sleep 0.1
done
serving=$(grep '"msg":"serving"' "$work/server.log" | head -n 1)
[ -n "$serving" ] || { cat "$work/server.log" >&2; echo "the service did not start" >&2; exit 1; }
export CWPEXPORT_GRPC=$(echo "$serving" | jq -r .grpc)
export CWPEXPORT_REST=$(echo "$serving" | jq -r .rest)
echo "service: gRPC $CWPEXPORT_GRPC, REST $CWPEXPORT_REST"

failed=()
for c in $CLIENTS; do
  printf '\n== %s client\n' "$c"
  case $c in
    # The packages' programs run in fresh environments (a venv, an npm
    # project) that setup-env.sh makes under $work on first use.
    python)  cmd=(bash -c 'clients/examples/python/setup-env.sh "$1" && "$1/bin/python" clients/examples/python/example.py "$2"'
                  _ "$work/env-python" "$CWPEXPORT_GRPC") ;;
    node)    cmd=(bash -c 'clients/examples/node/setup-env.sh "$1" && node "$1/example.mjs" "$2"'
                  _ "$work/env-node" "$CWPEXPORT_GRPC") ;;
    resume)  cmd=(clients/examples/resume.sh "$work") ;;
    grpcurl) cmd=(clients/examples/grpcurl/example.sh "$CWPEXPORT_GRPC") ;;
    curl)    cmd=(clients/examples/curl/example.sh "$CWPEXPORT_REST") ;;
    cli)     cmd=(env CWPEXPORT_BIN="$work/cwpexport" clients/examples/cli/example.sh "$CWPEXPORT_GRPC") ;;
    browser) cmd=(node clients/browser/browser-test.mjs "$CWPEXPORT_REST") ;;
    *) echo "unknown client $c" >&2; exit 2 ;;
  esac
  if ! timeout 180 "${cmd[@]}"; then
    failed+=("$c")
  fi
done

total=$(wc -w <<<"$CLIENTS")
if [ ${#failed[@]} -gt 0 ]; then
  echo >&2; echo "clients failed: ${failed[*]}; service log:" >&2; tail -n 30 "$work/server.log" >&2
  echo "clients: $((total - ${#failed[@]})) passed, ${#failed[@]} failed"
  exit 1
fi
echo; echo "all clients passed: $CLIENTS"
echo "clients: $total passed, 0 failed"
