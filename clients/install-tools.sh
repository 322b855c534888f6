#!/usr/bin/env bash
# Installs what clients/run-all.sh needs: Debian's chromium, Python gRPC and
# jq (apt-get, as root, only when missing), the npm modules of clients/
# (npm ci, from the committed lockfile) and grpcurl (go install, pinned).
set -euo pipefail
cd "$(dirname "$0")"
pkgs=()
command -v chromium >/dev/null || pkgs+=(chromium)
command -v jq >/dev/null || pkgs+=(jq)
command -v curl >/dev/null || pkgs+=(curl)
/usr/bin/python3 -c 'import grpc, grpc_tools' 2>/dev/null || pkgs+=(python3-grpcio python3-grpc-tools)
if [ ${#pkgs[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
npm ci --no-audit --no-fund --ignore-scripts
command -v grpcurl >/dev/null || [ -x "$(go env GOPATH)/bin/grpcurl" ] ||
  GOFLAGS= go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
