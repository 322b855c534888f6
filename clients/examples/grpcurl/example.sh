#!/usr/bin/env bash
# grpcurl client of the CWP license export gateway, through server reflection
# (no proto files needed). Starts an export and watches it to FINISHED in one
# streaming call, then shows an InvalidArgument with its field violations.
# Exits non-zero if the service does not answer as documented.
#
#   clients/examples/grpcurl/example.sh [GRPC_ADDR]   # default 127.0.0.1:9090
# Needs grpcurl (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4) and jq.
set -euo pipefail
ADDR=${1:-${CWPEXPORT_GRPC:-127.0.0.1:9090}}
SVC=cwpexport.v1.LicenseExportService
fail() { echo "FAIL: $*" >&2; exit 1; }

# Reflection lists the service and describes its messages.
# (The list is read whole first: `grep -q` stopping at the match would end
# grpcurl with SIGPIPE, which pipefail reports as a failure.)
services=$(grpcurl -plaintext "$ADDR" list)
grep -qx "$SVC" <<<"$services" || fail "reflection does not list $SVC: $services"

# 1+2. Start an export and follow it: one JSON object per stream message.
out=$(grpcurl -plaintext -max-time 60 -d '{"filters":[{"name":"LicenseType","values":["1"]}]}' \
      "$ADDR" "$SVC/ExportLicenseDetailAndWatch")
echo "$out" | jq -c '{kind, taskId: .task.taskId, state: .task.state, polls: .progress.pollCount}'
last=$(echo "$out" | jq -s -c 'last')
[ "$(echo "$last" | jq -r .task.state)" = EXPORT_TASK_STATE_FINISHED ] || fail "the stream did not end at FINISHED: $last"
url=$(echo "$last" | jq -r '.task.downloadUrl // empty')
[ -n "$url" ] || fail "FINISHED without a download URL"
echo "FINISHED: $url"

# 3. An invalid request: grpcurl exits non-zero and, with -format-error,
#    prints the status with its google.rpc.BadRequest as JSON.
set +e
err=$(grpcurl -plaintext -format-error -d '{"filters":[{"name":"Bogus"}],"exportMonth":"2026-13"}' \
      "$ADDR" "$SVC/ExportLicenseDetail" 2>&1)
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "an invalid request was accepted"
[ "$(echo "$err" | jq -r .code)" = 3 ] || fail "invalid request answered $err, want code 3 (InvalidArgument)"
echo "InvalidArgument: $(echo "$err" | jq -r .message)"
echo "$err" | jq -r '.details[] | select(."@type" | endswith("google.rpc.BadRequest")) | .fieldViolations[] | "  \(.field): \(.description)"'
for f in 'filters[0].name' 'filters[0].values' export_month; do
  echo "$err" | jq -e --arg f "$f" '[.details[].fieldViolations[]?.field] | index($f)' >/dev/null || fail "no field violation for $f"
done
echo "grpcurl client: OK"
