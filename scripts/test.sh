#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite (GPU tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# The official openai npm client drives the server in one test; without npm (or its registry) that test skips.
if command -v npm > /dev/null 2>&1; then
  npm install --prefix tests/server/openai_node --no-package-lock --no-audit --no-fund --silent \
    || echo "warning: could not install the openai npm package; its server test will skip" >&2
fi
ctest --test-dir build --output-on-failure -j "$(nproc)"
