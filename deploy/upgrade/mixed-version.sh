#!/usr/bin/env bash
# A rolling upgrade on one PostgreSQL, for real: a replica built from the
# previous release (deploy/upgrade/previous-release) serves; a replica built
# from this commit starts beside it (and migrates the schema forward); both
# serve creations; the old one stops (SIGTERM) while watches are open on it.
# Then: the watches resumed on the new replica and saw their tasks finish,
# every creation is one cloud task and one registry row (none lost, none
# duplicated), and the shared budget held under the cloud's 20 per second
# across both versions. Prints the figures. Needs PostgreSQL's server
# (scripts/pg-cluster.sh), jq, curl.
#   CREATIONS   creations per phase (default 10; three phases)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${CREATIONS:-10}
prev=$(awk '$1 == "commit" {print $2}' deploy/upgrade/previous-release)
tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/pg-cluster.sh stop "$tmp/pg" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "mixed-version: $*" >&2; tail -n 20 "$tmp"/*.log >&2 || true; exit 1; }
port() { python3 -c 'import socket,random
while True:
    p=random.randint(20000,32000); s=socket.socket()
    try: s.bind(("127.0.0.1",p)); print(p); break
    except OSError: pass'; }
t0=$(date +%s.%N)
mkdir -p "$tmp/prev" "$tmp/bin"
git archive "$prev" | tar -x -C "$tmp/prev"
(cd "$tmp/prev" && go build -buildvcs=false -o "$tmp/bin/old-cwpexportd" ./cmd/cwpexportd)
go build -buildvcs=false -o "$tmp/bin/" ./cmd/cwpexportd ./cmd/cwp-emulator ./cmd/cwpexport
echo "built $prev and this commit in $(python3 -c "print(round($(date +%s.%N)-$t0))") s"

db=$(scripts/pg-cluster.sh start "$tmp/pg" "$(port)")
export TENCENTCLOUD_SECRET_ID=AKIDmixedversion TENCENTCLOUD_SECRET_KEY=mixedversionkey0123456789abcdef
emu=127.0.0.1:$(port)
"$tmp/bin/cwp-emulator" -listen "$emu" -pending -1s -rate-limit 20 >"$tmp/emulator.log" 2>&1 &
pids+=($!)

# replica NAME BINARY GRPC_PORT REST_PORT [FLAG...]: start one on the
# shared database and cloud, and wait until it is ready.
replica() {
  local g=$3 r=$4
  DATABASE_URL=$db "$2" -grpc-addr "127.0.0.1:$g" -rest-addr "127.0.0.1:$r" -data-dir "$tmp/$1" \
    -cloud-endpoint "$emu" -cloud-scheme HTTP -log-format json "${@:5}" >"$tmp/$1.log" 2>&1 &
  pids+=($!)
  eval "${1}_pid=$! ${1}_grpc=127.0.0.1:$g ${1}_rest=127.0.0.1:$r"
  for _ in $(seq 1200); do
    curl -fsS "http://127.0.0.1:$r/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$!" 2>/dev/null || fail "replica $1 exited"
    sleep 0.1
  done
  fail "replica $1 never became ready"
}
# create ADDR: one export; prints its task id.
create() { "$tmp/bin/cwpexport" --addr "$1" -o json export | jq -r .task.taskId; }

# Both replicas' ports are chosen now: the watches opened on the old one
# know where to resume.
old_ports=($(port) $(port)) new_ports=($(port) $(port))
replica old "$tmp/bin/old-cwpexportd" "${old_ports[@]}"
for i in $(seq "$N"); do create "$old_grpc"; done >"$tmp/ids"
# Watches on the old replica; they may resume on the new one.
mkdir "$tmp/watch"
while read -r id; do
  "$tmp/bin/cwpexport" --addr "$old_grpc,127.0.0.1:${new_ports[0]}" --reconnect-timeout 3m -o json watch "$id" \
    >"$tmp/watch/$id.out" 2>"$tmp/watch/$id.err" &
  echo $! >>"$tmp/watch.pids"
done <"$tmp/ids"

# This commit calls a plain-HTTP cloud with credentials only when told it
# is a private one (the previous release has no such flag), and serves
# /metrics on an address of its own: a free port, not the shared default.
replica new "$tmp/bin/cwpexportd" "${new_ports[@]}" -insecure-allow-private-cloud -metrics-addr "127.0.0.1:$(port)"
for i in $(seq "$N"); do create "$old_grpc"; create "$new_grpc"; done >>"$tmp/ids"
kill -TERM "$old_pid"
wait "$old_pid" || fail "the old replica did not drain cleanly"
for i in $(seq "$N"); do create "$new_grpc"; done >>"$tmp/ids"

# The cloud finishes every task; the watches must see it.
while read -r id; do curl -fsS -X POST "http://$emu/_emulator/tasks/$id/finish" >/dev/null; done <"$tmp/ids"
resumed=0 finished=0
while read -r p; do wait "$p" && finished=$((finished + 1)) || true; done <"$tmp/watch.pids"
for f in "$tmp"/watch/*.err; do grep -q reconnecting "$f" && resumed=$((resumed + 1)); done

stats=$(curl -fsS "http://$emu/_emulator/stats")
created=$(jq .Actions.ExportLicenseDetail.TasksCreated <<<"$stats")
peak_read=$(jq .Actions.ExportTasks.PeakPerSecond <<<"$stats")
peak_create=$(jq .Actions.ExportLicenseDetail.PeakPerSecond <<<"$stats")
throttled=$(jq '[.Actions[].Errors.RequestLimitExceeded // 0] | add' <<<"$stats")
pg=$(scripts/pg-cluster.sh bindir)
rows=$("$pg/psql" -tA "$db" -c "SELECT count(*) FROM export_tasks WHERE task_id IS NOT NULL")
distinct=$(sort -u "$tmp/ids" | grep -c .)
total=$(grep -c . "$tmp/ids")
echo "mixed-version: previous release $prev + this commit on one PostgreSQL:"
echo "  creations $total (distinct task ids $distinct, cloud tasks $created, registry rows $rows)"
echo "  watches opened on the old replica $(wc -l <"$tmp/watch.pids"), resumed on the new one $resumed, saw FINISHED $finished"
echo "  budget peak per second: ExportTasks $peak_read, ExportLicenseDetail $peak_create (cloud limit 20); refused $throttled"
[ "$distinct" = "$total" ] && [ "$created" = "$total" ] && [ "$rows" = "$total" ] || fail "a creation was lost or duplicated"
[ "$finished" = "$N" ] || fail "only $finished of $N watches saw their task finish"
[ "$resumed" -ge 1 ] || fail "no watch resumed across the switch"
[ "$peak_read" -le 20 ] && [ "$peak_create" -le 20 ] || fail "the budget exceeded the cloud's 20 per second"
echo "mixed-version: OK ($(python3 -c "print(round($(date +%s.%N)-$t0))") s)"
