#!/usr/bin/env bash
# Builds the release artifacts into dist/VERSION/: the CLI (cwpexport) for
# linux, darwin and windows and the daemon (cwpexportd) for linux and darwin,
# each on amd64 and arm64; SHA256SUMS over them; a CycloneDX SBOM of each
# program (cyclonedx-gomod, from the Go module graph). The binaries are
# static (CGO off), reproducible (-trimpath, no build id, no VCS stamp; the
# version and commit are linked in), so the same commit gives the same sums.
# The daemon is not built for windows: its data directory lock and the
# embedded emulator's state use flock(2); run it from the image there.
#   VERSION, COMMIT   what --version and build_info say
#   CYCLONEDX         the cyclonedx-gomod binary (make deploy-tools builds it)
#   PLATFORMS         OS/ARCH list (default: the six above; a quick check: linux/amd64)
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${VERSION:?}" "${COMMIT:?}" "${CYCLONEDX:?}"
CYCLONEDX=$(realpath "$CYCLONEDX")
out=dist/$VERSION
rm -rf "$out" && mkdir -p "$out"
pkg=github.com/cwpexport/cwpexport/server/buildinfo
build() { # GOOS GOARCH CMD
  local ext=""
  [ "$1" = windows ] && ext=.exe
  CGO_ENABLED=0 GOOS=$1 GOARCH=$2 go build -trimpath -buildvcs=false \
    -ldflags "-s -w -buildid= -X $pkg.version=$VERSION -X $pkg.commit=$COMMIT" \
    -o "$out/${3}_${VERSION}_${1}_${2}${ext}" "./cmd/$3"
}
for platform in ${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64}; do
  os=${platform%/*} arch=${platform#*/}
  build "$os" "$arch" cwpexport
  [ "$os" = windows ] || build "$os" "$arch" cwpexportd
done
# cyclonedx-gomod reads the main module's version from git, which it cannot
# do in a worktree: it reads a copy of the commit, tagged with VERSION.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git archive "$COMMIT" | tar -x -C "$src"
(cd "$src" && git init -q && git add -A && git -c user.name=release -c user.email=release@localhost \
  commit -q --date=@0 -m "$VERSION" && git tag "$VERSION")
for cmd in cwpexportd cwpexport; do
  # The Go standard library too; no serial or timestamp: reproducible like
  # the binaries. For linux/amd64: module selection is the same on every
  # platform of the matrix (no dependency differs by build tag).
  (cd "$src" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 "$CYCLONEDX" app -json -std -noserial -notimestamp \
    -main "cmd/$cmd" -output "$OLDPWD/$out/${cmd}_${VERSION}.sbom.cdx.json" .)
done
(cd "$out" && sha256sum -- * >SHA256SUMS)
ls -l "$out"
