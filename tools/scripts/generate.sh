#!/usr/bin/env bash
# Regenerates gen/ from proto/ and third_party/proto/ (offline: ts-proto is a local plugin)
# and writes gen/descriptor_set.binpb, the FileDescriptorSet that server reflection serves.
# Usage: generate.sh [BASE_DIR]   writes BASE_DIR/gen (default: the repository itself)
set -euo pipefail
cd "$(dirname "$0")/../.."
base="${1:-.}"
buf="bash tools/scripts/buf.sh"
$buf generate --output "$base"
# Source info stays in, so `grpcurl describe` shows the comments of our contracts.
$buf build --as-file-descriptor-set -o "$base/gen/descriptor_set.binpb"
