#!/usr/bin/env bash
# Installs dependencies, builds, and runs the main job on the built-in default:
# greedy generation with a small Llama-3-shaped model (random weights) and the real Llama-3 tokenizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/nanoflow generate --model configs/models/tiny-llama3 --load-format dummy \
  --prompt "The capital of France is" --max-tokens 16 "$@"
