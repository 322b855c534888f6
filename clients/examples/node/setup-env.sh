#!/usr/bin/env bash
# Makes DIR a fresh npm project with @cwpexport/client installed from this
# repository (as a copy: --install-links), the way CI proves the package from
# a clean environment, plus the example programs, type-checked against the
# package's declarations with tsc --checkJs. Does nothing if DIR is ready.
#
#   clients/examples/node/setup-env.sh DIR && node DIR/example.mjs
set -euo pipefail
dir=$(realpath -m "${1:?usage: setup-env.sh DIR}")
[ -f "$dir/.cwpexport-ready" ] && exit 0
repo=$(cd "$(dirname "$0")/../../.." && pwd)
here="$repo/clients/examples/node"
dev() { node -p "require('$repo/clients/node/package.json').devDependencies['$1']"; }
mkdir -p "$dir"
cd "$dir"
[ -f package.json ] || npm init -y >/dev/null
npm install --install-links --no-audit --no-fund --loglevel=error \
  "$repo/clients/node" "typescript@$(dev typescript)" "@types/node@$(dev @types/node)"
cp "$here/example.mjs" "$here/resume.mjs" .
npx --no-install tsc --noEmit --allowJs --checkJs --strict --module nodenext --moduleResolution nodenext \
  --target es2022 --types node example.mjs resume.mjs
for pkg in @cwpexport/client @connectrpc/connect @bufbuild/protobuf; do
  printf '%s %s\n' "$pkg" "$(node -p "require('./node_modules/$pkg/package.json').version")"
done
touch "$dir/.cwpexport-ready"
