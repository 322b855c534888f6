#!/usr/bin/env bash
# Makes DIR a fresh Python environment with cwpexport-client installed from
# this repository, the way CI proves the package from a clean environment:
# a venv over Debian's python3-grpcio and python3-protobuf, the package
# installed with no package index (none is reachable here), and
# googleapis-common-protos from a local stand-in wheel
# (clients/python/ci/googleapis-standin.sh). Does nothing if DIR is ready.
#
#   clients/examples/python/setup-env.sh DIR && DIR/bin/python PROGRAM.py
set -euo pipefail
dir=$(realpath -m "${1:?usage: setup-env.sh DIR}")
[ -f "$dir/.cwpexport-ready" ] && exit 0
repo=$(cd "$(dirname "$0")/../../.." && pwd)
/usr/bin/python3 -m venv --system-site-packages "$dir"
"$repo/clients/python/ci/googleapis-standin.sh" "$dir/wheels" >/dev/null
"$dir/bin/pip" install --quiet --disable-pip-version-check --no-index --no-build-isolation \
  --find-links "$dir/wheels" "$repo/clients/python"
"$dir/bin/pip" list --disable-pip-version-check 2>/dev/null | grep -Ei '^(cwpexport-client|googleapis-common-protos|grpcio|protobuf) '
touch "$dir/.cwpexport-ready"
