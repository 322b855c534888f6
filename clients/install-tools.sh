#!/usr/bin/env bash
# Installs what clients/run-all.sh and `make generate-clients` need: Debian's
# chromium, jq, curl, Python (venv, grpcio, protobuf, setuptools) and the
# protobuf compilers (apt-get, as root, only when missing), the npm modules of
# clients/ (the browser test) and clients/node (the package's generator and
# the googleapis protos), both with npm ci from their committed lockfiles,
# and grpcurl (go install, pinned).
set -euo pipefail
cd "$(dirname "$0")"
pkgs=()
command -v chromium >/dev/null || pkgs+=(chromium)
command -v jq >/dev/null || pkgs+=(jq)
command -v curl >/dev/null || pkgs+=(curl)
command -v protoc >/dev/null || pkgs+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/duration.proto ] || pkgs+=(libprotobuf-dev)
command -v grpc_python_plugin >/dev/null || pkgs+=(protobuf-compiler-grpc)
/usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null || pkgs+=(python3-grpcio python3-protobuf)
dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'ok installed' || pkgs+=(python3-venv)
/usr/bin/python3 -c 'import setuptools, wheel' 2>/dev/null || pkgs+=(python3-setuptools python3-wheel)
if [ ${#pkgs[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
npm ci --no-audit --no-fund --ignore-scripts
(cd node && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
command -v grpcurl >/dev/null || [ -x "$(go env GOPATH)/bin/grpcurl" ] ||
  GOFLAGS= go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
