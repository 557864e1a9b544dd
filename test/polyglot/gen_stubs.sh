#!/usr/bin/env bash
# Generates Python stubs for every contract in proto/ and third_party/proto/ with Debian's
# protoc and gRPC Python plugin (not buf, not ts-proto: an independent toolchain).
# Usage: gen_stubs.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
out="$1"
mkdir -p "$out"
mapfile -t files < <(cd proto && find . -name '*.proto' | sed 's|^\./||'; cd ../third_party/proto && find . -name '*.proto' | sed 's|^\./||')
/usr/bin/protoc -I proto -I third_party/proto -I /usr/include \
  --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
  "${files[@]}"
