#!/usr/bin/env bash
# Runs the buf binary from its platform package. The npm registry this project installs
# from carries buf's Linux packages but not the darwin/win32 ones that the `@bufbuild/buf`
# wrapper lists, which breaks `npm ci`; so we depend on the Linux binaries directly.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
for pkg in buf-linux-x64 buf-linux-aarch64; do
  bin="$root/node_modules/@bufbuild/$pkg/bin/buf"
  if [ -x "$bin" ]; then exec "$bin" "$@"; fi
done
echo "buf: no buf binary for $(uname -sm) under node_modules/@bufbuild (run npm ci)" >&2
exit 1
