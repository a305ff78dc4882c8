#!/usr/bin/env bash
# The whole GPU check in one go, run from the repository root (for tests/data, configs/ and data/traces):
#   1. every gpu-labelled test binary (run directly, not through ctest);
#   2. the realistic-shape references (scripts/reference/make_realistic_refs.py, transformers on the GPU),
#      then the CUDA backend's realistic-shape test against them;
#   3. the kernel benchmarks;
#   4. `nanoflow bench throughput` on the CUDA backend, Llama-3-8B dummy weights: fixed 1024/512 and three traces.
# Logs and JSON go to OUT_DIR; a short summary is printed last. Every stage is bounded in time so the whole
# check ends within about 10 minutes on an H200; NUM_PROMPTS (default 500; the full runs use 2000) and
# BENCH_TIMEOUT (seconds per benchmark, default 100) shrink or grow the throughput runs; SKIP_THROUGHPUT=1 and
# SKIP_KERNEL_BENCH=1 skip stages 4 and 3.
# Usage: scripts/gpu_check.sh OUT_DIR [BUNDLE_DIR]
#   BUNDLE_DIR holds bin/tests, bin/bench, bin/nanoflow and lib as made by scripts/bundle_libs.sh; by default the
#   folder above this script when it has bin/, else a fresh bundle of ./build.
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
out="$(cd "$out" && pwd)"
export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export NANOFLOW_SOURCE_DIR="$(pwd)"  # test data are read from the working tree, not the build machine's
num_prompts=${NUM_PROMPTS:-500}
bench_timeout=${BENCH_TIMEOUT:-100}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$out/device.txt" 2>&1 || true
summary=()
status=0
run_tests() {  # name, log file, args...
  local name=$1 log=$2
  shift 2
  timeout 300 "$bundle/bin/tests/$name" --gtest_output="json:${log%.log}.json" "$@" > "$log" 2>&1
  local rc=$?
  local passed failed skipped
  passed=$(grep -c '^\[       OK \]' "$log")
  failed=$(grep -c '^\[  FAILED  \]' "$log")
  skipped=$(grep -c '^\[  SKIPPED \]' "$log")
  summary+=("$(printf '%-36s rc=%-3s passed=%-4s failed=%-4s skipped=%s' "$(basename "${log%.log}")" "$rc" "$passed" "$failed" "$skipped")")
  [ $rc -eq 0 ] || status=1
}

# 1. gpu tests
for t in "$bundle"/bin/tests/*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  run_tests "$name" "$out/$name.log"
done

# 2. realistic shapes: references made by transformers here, then the test that reads them
if [ -x "$bundle/bin/tests/test_cuda_backend" ]; then
  refs="${REFS_DIR:-$out/realistic_refs}"  # several GB while the test runs
  rm -rf "$refs"
  mkdir -p "$refs"
  script="$here/reference/make_realistic_refs.py"
  [ -f "$script" ] || script="scripts/reference/make_realistic_refs.py"
  timeout 300 python3 "$script" "$refs" > "$out/make_realistic_refs.log" 2>&1
  rc=$?
  summary+=("$(printf '%-36s rc=%-3s' make_realistic_refs "$rc")")
  if [ $rc -eq 0 ]; then
    NANOFLOW_REALISTIC_REFS="$refs" run_tests test_cuda_backend "$out/test_cuda_backend_realistic.log" \
      --gtest_filter='*realistic*'
  else
    status=1
  fi
  rm -rf "$refs"/*/*.safetensors  # gigabytes; the reference.json files stay
fi

# 3. kernel benchmarks
for b in "$bundle"/bin/bench/*; do
  [ -x "$b" ] && [ "${SKIP_KERNEL_BENCH:-0}" != 1 ] || continue
  name=$(basename "$b")
  timeout 150 "$b" --json "$out/$name.json" > "$out/$name.log" 2>&1
  rc=$?
  summary+=("$(printf '%-36s rc=%-3s (benchmark: %s lines of results)' "$name" "$rc" "$(grep -c ' ms ' "$out/$name.log")")")
done

# 4. end-to-end throughput, CUDA backend, Llama-3-8B with dummy weights
if [ -x "$bundle/bin/nanoflow" ] && [ "${SKIP_THROUGHPUT:-0}" != 1 ]; then
  bench() {  # name, args...
    local name=$1
    shift
    timeout "$bench_timeout" "$bundle/bin/nanoflow" bench throughput --backend cuda --load-format dummy \
      --model configs/models/llama3-8b --num-prompts "$num_prompts" --no-progress \
      --output-json "$out/throughput_$name.json" "$@" > "$out/throughput_$name.log" 2>&1
    local rc=$?
    local line
    line=$(grep -E '^(total tokens/s|fraction of ceiling)' "$out/throughput_$name.log" | tr -s ' ' | tr '\n' ' ')
    summary+=("$(printf '%-36s rc=%-3s %s' "throughput_$name" "$rc" "$line")")
  }
  bench fixed_1024_512 --input-len 1024 --output-len 512 --profile-ops
  for trace in splitwise_conv lmsys sharegpt; do
    bench "$trace" --trace "data/traces/$trace.csv"
  done
fi

echo "== failures =="
grep -h -A12 '^\[ RUN' "$out"/*.log 2>/dev/null | grep -B3 -A8 'Failure' | head -80
echo "== CUDA backend test output =="
grep -h -E 'relative error|agree|equal solo|worst' "$out"/test_cuda_backend*.log 2>/dev/null | head -60
echo "== benchmarks =="
cat "$out"/bench_*.log 2>/dev/null | tail -40
for f in "$out"/throughput_*.log; do
  [ -f "$f" ] || continue
  echo "-- $(basename "$f")"
  grep -E '^(workload|elapsed|total tokens|GEMM rate|ceiling|fraction|KV cache)|^\| |^== CUDA|^model|error' "$f"
done
echo "== summary =="
head -2 "$out/device.txt"
printf '%s\n' "${summary[@]}"
exit $status
