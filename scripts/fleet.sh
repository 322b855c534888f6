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
# FLEET_REPLICAS (default 3), FLEET_FLAGS (more cwpexportd flags),
# FLEET_REST_PORT (default 8081), FLEET_GRPC_PORT (default 9091),
# FLEET_EMULATOR_PORT (default 9100), FLEET_METRICS_PORT (default 9461).
# Replica i (1..N) serves REST on 127.0.0.1:FLEET_REST_PORT+i-1 and gRPC on
# 127.0.0.1:FLEET_GRPC_PORT+i-1, metrics on 127.0.0.1:FLEET_METRICS_PORT+i-1; the emulator listens on
# 127.0.0.1:FLEET_EMULATOR_PORT. The banner prints each process's id: stop
# one replica by its id, never by a pattern (on a shared host a pattern
# matches other people's processes).
set -euo pipefail
cd "$(dirname "$0")/.."

rest_port=${FLEET_REST_PORT:-8081}
grpc_port=${FLEET_GRPC_PORT:-9091}
metrics_port=${FLEET_METRICS_PORT:-9461}
emulator=127.0.0.1:${FLEET_EMULATOR_PORT:-9100}

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

"$dir/bin/cwp-emulator" -listen "$emulator" -state-dir "$dir/emulator" 2>"$dir/emulator.log" &
pids+=($!)
echo "fleet: emulator http://$emulator, pid $! (log $dir/emulator.log)"

grpc_addrs=()
for i in $(seq 1 "$replicas"); do
	rest=127.0.0.1:$((rest_port + i - 1)) grpc=127.0.0.1:$((grpc_port + i - 1)) metrics=127.0.0.1:$((metrics_port + i - 1))
	# shellcheck disable=SC2086 # FLEET_FLAGS are words
	"$dir/bin/cwpexportd" -database "$db" -cloud-endpoint "$emulator" -cloud-scheme HTTP -insecure-allow-private-cloud \
		-rest-addr "$rest" -grpc-addr "$grpc" -metrics-addr "$metrics" -data-dir "$dir/replica$i" \
		-log-format json ${FLEET_FLAGS:-} 2>"$dir/replica$i.log" &
	pids+=($!)
	grpc_addrs+=("$grpc")
	echo "fleet: replica $i REST http://$rest, gRPC $grpc, metrics http://$metrics/metrics, pid $! (log $dir/replica$i.log)"
done

first_rest=127.0.0.1:$rest_port last_rest=127.0.0.1:$((rest_port + replicas - 1))
cat <<EOF

Console: http://$first_rest/ (any replica's)
Try it (any replica answers for the whole fleet):
  curl -s -X POST http://$first_rest/v1/license-detail:export -H 'Content-Type: application/json' -d '{}'
  curl -sN http://$last_rest/v1/export-tasks/TASK_ID:watch   # TASK_ID: the task.taskId answered above
  go run ./cmd/cwpexport --addr $(IFS=,; echo "${grpc_addrs[*]}") export --watch
  kill -KILL ${pids[1]}    # replica 1 dies; the others go on
Ctrl-C (or kill $$) stops the fleet.
EOF
# Killing a replica is part of trying a fleet: wait for all of them.
wait || true
