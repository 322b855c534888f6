#!/usr/bin/env bash
# curl client of the CWP license export gateway's REST API. Starts an export
# and watches it to FINISHED over the streaming endpoint (newline-delimited
# JSON: one {"result": ...} per message, or a final {"error": ...}), then shows
# an InvalidArgument (HTTP 400) with its field violations.
# Exits non-zero if the service does not answer as documented.
#
#   clients/examples/curl/example.sh [REST_URL]   # default http://127.0.0.1:8080
# Needs curl and jq.
set -euo pipefail
REST=${1:-${CWPEXPORT_REST:-http://127.0.0.1:8080}}
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. Start an export: the answer carries the task id at once.
created=$(curl -fsS -X POST "$REST/v1/license-detail:export" -H 'Content-Type: application/json' \
          -d '{"filters":[{"name":"LicenseType","values":["1"]}]}')
task=$(echo "$created" | jq -r .task.taskId)
[ -n "$task" ] && [ "$task" != null ] || fail "no task id in $created"
echo "started task $task (cloud RequestId $(echo "$created" | jq -r .upstreamRequestId))"

# 2. Watch it: -N shows each line as the service flushes it.
lines=$(curl -fsSN --max-time 60 "$REST/v1/export-tasks/$task:watch")
echo "$lines" | jq -c 'if .error then {error: .error.message} else .result | {kind, state: .task.state, polls: .progress.pollCount, elapsed: .progress.taskElapsed} end'
last=$(echo "$lines" | tail -n 1)
[ "$(echo "$last" | jq -r .result.task.state)" = EXPORT_TASK_STATE_FINISHED ] || fail "the stream did not end at FINISHED: $last"
echo "FINISHED: $(echo "$last" | jq -r .result.task.downloadUrl)"

# 3. An invalid request: HTTP 400 with a google.rpc.Status whose
#    google.rpc.BadRequest lists every field violation.
body=$(mktemp)
trap 'rm -f "$body"' EXIT
code=$(curl -sS -o "$body" -w '%{http_code}' -X POST "$REST/v1/license-detail:export" \
       -H 'Content-Type: application/json' -d '{"filters":[{"name":"Bogus"}],"exportMonth":"2026-13"}')
[ "$code" = 400 ] || fail "invalid request answered HTTP $code, want 400: $(cat "$body")"
echo "HTTP 400: $(jq -r .message "$body")"
jq -r '.details[] | select(."@type" | endswith("google.rpc.BadRequest")) | .fieldViolations[] | "  \(.field): \(.description)"' "$body"
for f in 'filters[0].name' 'filters[0].values' export_month; do
  jq -e --arg f "$f" '[.details[].fieldViolations[]?.field] | index($f)' "$body" >/dev/null || fail "no field violation for $f"
done
echo "curl client: OK"
