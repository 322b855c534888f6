#!/usr/bin/env bash
# Builds the image (Containerfile): static binaries first, into
# bin/image/rootfs with fixed modes and owners, then the image with podman
# (as root: --storage-driver vfs works where overlay does not) or docker.
#   VERSION, COMMIT  what --version, build_info and the labels say
#   IMAGE            the image's name (default localhost/cwpexport:VERSION)
#   ENGINE           podman (default when installed) or docker
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${VERSION:?}" "${COMMIT:?}"
IMAGE=${IMAGE:-localhost/cwpexport:${VERSION}}
ENGINE=${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
root=bin/image/rootfs
rm -rf bin/image && mkdir -p "$root/usr/local/bin" "$root/data"
pkg=github.com/cwpexport/cwpexport/server/buildinfo
CGO_ENABLED=0 go build -trimpath -buildvcs=false \
  -ldflags "-s -w -buildid= -X $pkg.version=$VERSION -X $pkg.commit=$COMMIT" \
  -o "$root/usr/local/bin/" ./cmd/cwpexportd ./cmd/cwpexport ./cmd/cwp-emulator
chmod 0555 "$root"/usr/local/bin/*
chmod 0755 "$root" "$root/usr" "$root/usr/local" "$root/usr/local/bin"
chmod 0700 "$root/data"
args=(build --file Containerfile --tag "$IMAGE" --build-arg "VERSION=$VERSION" --build-arg "REVISION=$COMMIT")
if [ "$ENGINE" = podman ]; then
  # No build time in the image (created, files): same commit, same digest.
  args=(--storage-driver "${PODMAN_STORAGE_DRIVER:-vfs}" "${args[@]}" --timestamp 0 --identity-label=false --format oci)
fi
"$ENGINE" "${args[@]}" .
echo "$IMAGE"
