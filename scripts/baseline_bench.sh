#!/usr/bin/env bash
# Builds bench_kernels as it was at an earlier revision, for a same-call baseline on the GPU machine: kernel timings
# move a few percent between machines and between calls, so a change is measured against the old binary in the
# same run (gpu_all.sh's "baseline" stage). The binary is stripped and xz-compressed (about 0.9 MB) to travel with
# the bundle.
# Usage: scripts/baseline_bench.sh REV ARCHIVE   (e.g. scripts/baseline_bench.sh 7448f6b build-pack/bench_old.xz)
set -euo pipefail
rev=${1:?usage: baseline_bench.sh REV ARCHIVE}
archive=${2:?usage: baseline_bench.sh REV ARCHIVE}
root="$(cd "$(dirname "$0")/.." && pwd)"
tree="$(mktemp -d)"
trap 'git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"' EXIT
git -C "$root" worktree add --detach "$tree" "$rev" >/dev/null
cmake -S "$tree" -B "$tree/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tree/build" -j"$(nproc)" --target bench_kernels >/dev/null
mkdir -p "$(dirname "$archive")"
strip -o "$tree/bench_kernels" "$tree/build/bench/kernels/bench_kernels"
xz -9 -c "$tree/bench_kernels" > "$archive"
echo "wrote $archive (bench_kernels at $(git -C "$root" rev-parse --short "$rev"))"
