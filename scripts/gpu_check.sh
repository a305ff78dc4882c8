#!/usr/bin/env bash
# The whole GPU check in one go: every gpu-labelled test binary (run directly, not through ctest), then the
# kernel benchmarks. Logs and JSON go to OUT_DIR; a short summary table is printed last.
# Usage: scripts/gpu_check.sh OUT_DIR [BUNDLE_DIR]
#   BUNDLE_DIR holds bin/tests, bin/bench and lib as made by scripts/bundle_libs.sh; by default the folder
#   above this script when it has bin/, else a fresh bundle of ./build.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [BUNDLE_DIR]}
here="$(cd "$(dirname "$0")" && pwd)"
bundle=${2:-}
if [ -z "$bundle" ]; then
  if [ -d "$here/../bin" ]; then
    bundle="$here/.."
  else
    bundle="$(mktemp -d)"
    bash "$here/bundle_libs.sh" build "$bundle" > /dev/null
  fi
fi
bundle="$(cd "$bundle" && pwd)"
mkdir -p "$out"
export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$out/device.txt" 2>&1 || true
summary=()
status=0
for t in "$bundle"/bin/tests/*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  timeout 300 "$t" --gtest_output="json:$out/$name.json" > "$out/$name.log" 2>&1
  rc=$?
  passed=$(grep -c '^\[       OK \]' "$out/$name.log")
  failed=$(grep -c '^\[  FAILED  \]' "$out/$name.log")
  skipped=$(grep -c '^\[  SKIPPED \]' "$out/$name.log")
  summary+=("$(printf '%-28s rc=%-3s passed=%-4s failed=%-4s skipped=%s' "$name" "$rc" "$passed" "$failed" "$skipped")")
  [ $rc -eq 0 ] || status=1
done
for b in "$bundle"/bin/bench/*; do
  [ -x "$b" ] || continue
  name=$(basename "$b")
  timeout 300 "$b" --json "$out/$name.json" > "$out/$name.log" 2>&1
  rc=$?
  summary+=("$(printf '%-28s rc=%-3s (benchmark: %s lines of results)' "$name" "$rc" "$(grep -c ' ms ' "$out/$name.log")")")
done

echo "== failures =="
grep -h -A12 '^\[ RUN' "$out"/*.log 2>/dev/null | grep -B3 -A8 'Failure' | head -80
echo "== benchmarks =="
cat "$out"/bench_*.log 2>/dev/null
echo "== summary =="
head -2 "$out/device.txt"
printf '%s\n' "${summary[@]}"
exit $status
