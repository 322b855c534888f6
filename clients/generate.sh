#!/usr/bin/env bash
# Regenerates the code that the Python and Node.js client packages commit,
# from proto/cwpexport/v1/license_export.proto and error_reason.proto
# (`make generate-clients`):
#
#   clients/python/src/cwpexport/v1/   Debian's protoc 3.21 (--python_out,
#       --pyi_out) and grpc_python_plugin 1.51: code old enough for the
#       python3-protobuf 3.21 / python3-grpcio 1.51 runtimes and still
#       accepted by current ones (see clients/python/README.md).
#   clients/node/src/gen/              protoc-gen-es (pinned in
#       clients/node/package-lock.json), with google/api and google/rpc from
#       the pinned google-proto-files package.
#   clients/node/dist/                 tsc of clients/node/src.
#   clients/python/src/cwpexport_client/service_config.json
#       a copy of clients/service-config.json, which the helper dials with.
#
# Needs Debian's protobuf-compiler, libprotobuf-dev and
# protobuf-compiler-grpc, and npm; neither Go nor the network beyond npm.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in protoc grpc_python_plugin npm; do
  command -v "$tool" >/dev/null || { echo "generate.sh: $tool not found (apt-get install protobuf-compiler libprotobuf-dev protobuf-compiler-grpc npm)" >&2; exit 1; }
done
protoc --version | grep -q '^libprotoc 3\.21\.' ||
  { echo "generate.sh: want Debian's protoc 3.21 (its Python code is what protobuf 3.21 accepts), got $(protoc --version)" >&2; exit 1; }
WKT=/usr/include # the well-known types, from libprotobuf-dev
[ -f "$WKT/google/protobuf/duration.proto" ] || { echo "generate.sh: $WKT/google/protobuf missing (apt-get install libprotobuf-dev)" >&2; exit 1; }

(cd clients/node && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
GAPI=clients/node/node_modules/google-proto-files # google/api, google/rpc
API=cwpexport/v1/license_export.proto
REASONS=cwpexport/v1/error_reason.proto # the ErrorReason enum: messages only, no service

# Python: messages, typing stubs and gRPC stubs. google.api and google.rpc
# come from the googleapis-common-protos package at run time.
py=clients/python/src
rm -f "$py"/cwpexport/v1/*_pb2*.py "$py"/cwpexport/v1/*_pb2*.pyi
protoc -I proto -I "$WKT" -I "$GAPI" \
  --python_out="$py" --pyi_out="$py" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" --grpc_python_out="$py" \
  "$API"
protoc -I proto -I "$WKT" -I "$GAPI" --python_out="$py" --pyi_out="$py" "$REASONS"

# The helper's copy of the clients' gRPC service config: a package ships
# only what lies under its own directory.
install -m 0644 clients/service-config.json "$py"/cwpexport_client/service_config.json

# Node.js/TypeScript: protobuf-es code for the API and the googleapis files
# it uses (the annotations it imports, and google.rpc for error details).
node=clients/node
rm -rf "$node/src/gen" "$node/dist"
mkdir -p "$node/src/gen"
protoc -I proto -I "$WKT" -I "$GAPI" \
  --plugin=protoc-gen-es="$node/node_modules/.bin/protoc-gen-es" \
  --es_out="$node/src/gen" --es_opt=target=ts,import_extension=js \
  "$API" "$REASONS" google/api/annotations.proto google/api/http.proto \
  google/rpc/status.proto google/rpc/error_details.proto google/rpc/code.proto
(cd "$node" && node_modules/.bin/tsc -p tsconfig.json)
