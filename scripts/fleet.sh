#!/usr/bin/env bash
# A local fleet on loopback, for trying the service as several replicas:
# a throwaway PostgreSQL (scripts/pg-cluster.sh), one CWP emulator that every
# replica shares as its cloud (enforcing the cloud's 20 requests per second
# per action), and three replicas of cwpexportd on that database and cloud.
# Ctrl-C stops them all; the data stays in the fleet's directory for the
# next run (delete it to start afresh).
#
#   scripts/fleet.sh            # or: make fleet
#
# Environment: FLEET_DIR (default data/fleet), FLEET_PG_DIR (default
# FLEET_DIR/pg, or, as root when the postgres user cannot reach FLEET_DIR,
# a directory under /tmp named after it), FLEET_PG_PORT (default 25432),
# FLEET_REPLICAS (default 3), FLEET_FLAGS (more cwpexportd flags).
# Replica i (1..N) serves REST on 127.0.0.1:808i, gRPC on 127.0.0.1:909i, metrics on 127.0.0.1:946i/metrics;
# the emulator listens on 127.0.0.1:9100.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$(mkdir -p "${FLEET_DIR:-data/fleet}" && cd "${FLEET_DIR:-data/fleet}" && pwd)
replicas=${FLEET_REPLICAS:-3}
# As root, PostgreSQL runs as the postgres user, who cannot enter a private
# directory: the service keeps its data directory (data/) to its own user.
pgdir=${FLEET_PG_DIR:-$dir/pg}
if [[ -z "${FLEET_PG_DIR:-}" && $EUID -eq 0 ]] && ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
	pgdir=/tmp/cwpexport-fleet-pg-$(printf %s "$dir" | sha256sum | cut -c1-12)
fi
pids=()
stop() {
	trap - INT TERM EXIT
	echo
	echo "fleet: stopping"
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	scripts/pg-cluster.sh stop "$pgdir" >/dev/null 2>&1 || true
}
trap stop INT TERM EXIT

echo "fleet: building cwpexportd and cwp-emulator"
go build -o "$dir/bin/" ./cmd/cwpexportd ./cmd/cwp-emulator

db=$(scripts/pg-cluster.sh start "$pgdir" "${FLEET_PG_PORT:-25432}")
echo "fleet: PostgreSQL $db (in $pgdir)"

# One account for the whole fleet, kept with the emulator's state.
if [[ ! -s "$dir/account" ]]; then
	umask 077
	printf 'AKIDfleet%s %s\n' "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" "$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')" >"$dir/account"
fi
read -r TENCENTCLOUD_SECRET_ID TENCENTCLOUD_SECRET_KEY <"$dir/account"
export TENCENTCLOUD_SECRET_ID TENCENTCLOUD_SECRET_KEY

"$dir/bin/cwp-emulator" -listen 127.0.0.1:9100 -state-dir "$dir/emulator" 2>"$dir/emulator.log" &
pids+=($!)
echo "fleet: emulator http://127.0.0.1:9100 (log $dir/emulator.log)"

for i in $(seq 1 "$replicas"); do
	# shellcheck disable=SC2086 # FLEET_FLAGS are words
	"$dir/bin/cwpexportd" -database "$db" -cloud-endpoint 127.0.0.1:9100 -cloud-scheme HTTP -insecure-allow-private-cloud \
		-rest-addr "127.0.0.1:808$i" -grpc-addr "127.0.0.1:909$i" -metrics-addr "127.0.0.1:946$i" -data-dir "$dir/replica$i" \
		-log-format json ${FLEET_FLAGS:-} 2>"$dir/replica$i.log" &
	pids+=($!)
	echo "fleet: replica $i REST http://127.0.0.1:808$i, gRPC 127.0.0.1:909$i, metrics http://127.0.0.1:946$i/metrics (log $dir/replica$i.log)"
done

cat <<EOF

Try it (any replica answers for the whole fleet):
  curl -s -X POST http://127.0.0.1:8081/v1/license-detail:export -H 'Content-Type: application/json' -d '{}'
  curl -sN http://127.0.0.1:8082/v1/export-tasks/TASK_ID:watch
  go run ./cmd/cwpexport --addr 127.0.0.1:9091,127.0.0.1:9092,127.0.0.1:9093 export --watch
  pkill -KILL -f 'rest-addr 127.0.0.1:8081'    # one replica dies; the others go on
Ctrl-C stops the fleet.
EOF
# Killing a replica is part of trying a fleet: wait for all of them.
wait || true
