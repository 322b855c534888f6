#!/usr/bin/env bash
# Checks the image `make image` built, without a container runtime (these
# machines cannot run one): its configuration (user, entrypoint, ports,
# labels, size, layers, no shell), then its own entrypoint started from its
# own root file system, mounted read-only with a writable /data, as its
# numeric user: health, --version, and one export on the embedded emulator
# through the image's CLI. Needs root (mount namespaces, chroot).
#   IMAGE, VERSION, COMMIT   as for deploy/image/build.sh
#   MAX_IMAGE_MB             bound on the compressed layers (default 30)
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${IMAGE:?}" "${VERSION:?}" "${COMMIT:?}"
MAX_IMAGE_MB=${MAX_IMAGE_MB:-30}
pm() { podman --storage-driver "${PODMAN_STORAGE_DRIVER:-vfs}" "$@"; }
fail() { echo "image check: $*" >&2; exit 1; }

cfg() { pm image inspect "$IMAGE" --format "$1"; }
[ "$(cfg '{{.Config.User}}')" = 65532:65532 ] || fail "user is $(cfg '{{.Config.User}}'), want 65532:65532"
[ "$(cfg '{{json .Config.Entrypoint}}')" = '["/usr/local/bin/cwpexportd"]' ] || fail "entrypoint $(cfg '{{json .Config.Entrypoint}}')"
[ "$(cfg '{{json .Config.ExposedPorts}}')" = '{"8080/tcp":{},"9090/tcp":{},"9464/tcp":{}}' ] || fail "exposed ports $(cfg '{{json .Config.ExposedPorts}}')"
case $(cfg '{{json .Config.Cmd}}') in *'"-metrics-addr=0.0.0.0:9464"'*) ;; *) fail "the command does not serve /metrics on the exposed 9464: $(cfg '{{json .Config.Cmd}}')" ;; esac
for l in "org.opencontainers.image.version=$VERSION" "org.opencontainers.image.revision=$COMMIT" \
  "org.opencontainers.image.source=https://github.com/cwpexport/cwpexport"; do
  [ "$(cfg "{{index .Labels \"${l%%=*}\"}}")" = "${l#*=}" ] || fail "label ${l%%=*} is not ${l#*=}"
done
[ "$(cfg '{{.Created.Unix}}')" = 0 ] || fail "the image records a build time: not reproducible"

root=$(pm image mount "$IMAGE")
trap 'pm image unmount "$IMAGE" >/dev/null || true' EXIT
for f in bin/sh usr/bin/sh bin/busybox usr/bin/apt usr/sbin/apk etc/passwd; do
  [ ! -e "$root/$f" ] || fail "/$f is in the image"
done
layers=$(cfg '{{len .RootFS.Layers}}')
raw=$(cfg '{{.Size}}')
packed=$(tar -C "$root" --sort=name --numeric-owner -cf - . | gzip -6 | wc -c)
echo "image $IMAGE: $layers layers, $((raw / 1000000)) MB, $((packed / 1000000)) MB compressed (gzip -6 of the root file system)"
[ "$packed" -le $((MAX_IMAGE_MB * 1000000)) ] || fail "compressed size $packed bytes exceeds $MAX_IMAGE_MB MB"

for b in cwpexportd cwpexport cwp-emulator; do
  out=$(chroot --userspec=65532:65532 "$root" "/usr/local/bin/$b" --version)
  case $out in *"$VERSION (commit $COMMIT, go"*) ;; *) fail "$b --version says: $out" ;; esac
done

# The entrypoint in a mount namespace of its own: the image's root
# read-only, a fresh /data (as a volume would be), the image's user.
work=$(mktemp -d)
chown 65532:65532 "$work"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(port) rest=$(port) metrics=$(port)
# inimage runs a command of the image as the image's user.
inimage() {
  unshare -m bash -c '
    set -e
    mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"
    mount --bind "$2" "$1/data"
    shift 2
    exec chroot --userspec=65532:65532 "$@"
  ' _ "$root" "$work" "$root" "$@"
}
inimage /usr/local/bin/cwpexportd -data-dir=/data -grpc-addr="127.0.0.1:$grpc" -rest-addr="127.0.0.1:$rest" \
  -metrics-addr="127.0.0.1:$metrics" -log-format=json -emulator-pending=1s >"$work.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; pm image unmount "$IMAGE" >/dev/null || true; rm -rf "$work" "$work.log"' EXIT
for _ in $(seq 600); do
  curl -fsS "http://127.0.0.1:$rest/healthz" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$work.log"; fail "the entrypoint exited"; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$rest/livez" >/dev/null || { cat "$work.log"; fail "/livez"; }
[ "$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$rest/metrics")" = 404 ] || fail "the REST port serves /metrics"
curl -fsS "http://127.0.0.1:$metrics/metrics" | grep >/dev/null "cwpexport_build_info{goversion=\"[^\"]*\",revision=\"$COMMIT\",version=\"$VERSION\"} 1" ||
  fail "/metrics has no build_info for $VERSION $COMMIT"
# One export, followed to its file, by the image's own CLI (as the same user).
inimage /usr/local/bin/cwpexport --addr "127.0.0.1:$grpc" -o json \
  export --watch --download /data/export.csv >"$work.cli" 2>&1 || { cat "$work.cli" "$work.log"; fail "the CLI's export failed"; }
grep -q FINISHED "$work.cli" || { cat "$work.cli"; fail "the export did not finish"; }
[ -s "$work/registry.db" ] && [ -s "$work/export.csv" ] || fail "the registry or the file was not written to /data"
rm -f "$work.cli"
echo "image check: OK (configuration, no shell, read-only root, /data written, health, build_info, an export through the CLI)"
