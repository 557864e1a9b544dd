#!/usr/bin/env bash
# Fails when gen/ differs from what `npm run generate` would produce now.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash tools/scripts/generate.sh "$tmp"
if ! diff -r gen "$tmp/gen" >"$tmp/diff.txt"; then
  echo "gen/ is out of date with proto/: run 'npm run generate' and commit the result." >&2
  head -n 40 "$tmp/diff.txt" >&2
  exit 1
fi
echo "gen/ matches proto/"
