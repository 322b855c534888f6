#!/usr/bin/env bash
# The cwpexport CLI as a script would use it: starts an export, follows it to
# FINISHED and saves the file, then shows that invalid input exits with 2 and
# prints the field violations. Exits non-zero on any other answer.
#
#   clients/examples/cli/example.sh [GRPC_ADDR]   # default 127.0.0.1:9090
# CWPEXPORT_BIN names a built cwpexport; otherwise it runs `go run ./cmd/cwpexport`.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ADDR=${1:-${CWPEXPORT_GRPC:-127.0.0.1:9090}}
fail() { echo "FAIL: $*" >&2; exit 1; }
cwpexport() {
  if [ -n "${CWPEXPORT_BIN:-}" ]; then "$CWPEXPORT_BIN" "$@"; else go run ./cmd/cwpexport "$@"; fi
}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# Follow an export to FINISHED and save its file (plain output: not a terminal).
cwpexport --addr "$ADDR" export --filter LicenseType=1 --watch --download "$out"
head -n 1 "$out" | grep -q '^LicenseId,' || fail "the saved file is not the CSV export"

# -o json: one JSON object per message, for scripts.
task=$(cwpexport --addr "$ADDR" export -o json | jq -r .task.taskId)
state=$(cwpexport --addr "$ADDR" watch "$task" -o json | tail -n 1 | jq -r .task.state)
[ "$state" = EXPORT_TASK_STATE_FINISHED ] || fail "watch -o json ended at $state"

# Invalid input: exit code 2, the violations on stderr.
rc=0
cwpexport --addr "$ADDR" export --filter Bogus= --month 2026-13 || rc=$?
[ "$rc" = 2 ] || fail "invalid input exited $rc, want 2"
echo "cli client: OK"
