#!/usr/bin/env bash
# `nanoflow tune` end to end on the GPU (run from the repository root, like gpu_check.sh): profile Llama-3-8B's
# operations on this GPU (dummy weights: only config.json is read), search the pipeline spec for one workload
# point, then `nanoflow bench throughput` with the tuned spec and with the sequential spec, and print both
# tokens/s. Every stage is bounded by a timeout.
# Usage: scripts/tune_check.sh OUT_DIR [BUNDLE_DIR]
#   OUT_DIR gets profile.json, tuned_spec.json, tuned_prediction.json, tune.log, and a log and JSON per benchmark.
#   BUNDLE_DIR holds bin/nanoflow and lib as made by scripts/bundle_libs.sh (default: the folder above this
#   script).
#   MODEL (configs/models/llama3-8b): the config.json folder to tune for;
#   DECODE_ROWS (512), PREFILL_ROWS (1536), MEAN_CONTEXT (1280): the step the spec is tuned for;
#   MAX_NANO_BATCHES (4), TIME_LIMIT (5 s per MILP solve), PROFILE_ARGS (more `tune` options, e.g.
#   "--sm-budget-stride 2"), NUM_PROMPTS (500), TUNE_TIMEOUT (600 s), BENCH_TIMEOUT (300 s per benchmark);
#   COMPARE (none): more schedules (names in configs/pipelines or spec paths) to benchmark beside the two.
set -uo pipefail
out=${1:?usage: tune_check.sh OUT_DIR [BUNDLE_DIR]}
here="$(cd "$(dirname "$0")" && pwd)"
bundle="$(cd "${2:-$here/..}" && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
model=${MODEL:-configs/models/llama3-8b}
budget=2048
num_prompts=${NUM_PROMPTS:-500}
read -r -a profile_args <<< "${PROFILE_ARGS:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$out/device.txt" 2>&1 || true
status=0

start=$(date +%s)
timeout "${TUNE_TIMEOUT:-600}" "$bundle/bin/nanoflow" tune --model "$model" --load-format dummy \
  --max-num-batched-tokens "$budget" --output "$out/profile.json" "${profile_args[@]}" \
  --decode-rows "${DECODE_ROWS:-512}" --prefill-rows "${PREFILL_ROWS:-1536}" --mean-context "${MEAN_CONTEXT:-1280}" \
  --max-nano-batches "${MAX_NANO_BATCHES:-4}" --time-limit "${TIME_LIMIT:-5}" \
  --output-spec "$out/tuned_spec.json" --output-prediction "$out/tuned_prediction.json" > "$out/tune.log" 2>&1
tune_rc=$?
tune_s=$(( $(date +%s) - start ))
[ $tune_rc -eq 0 ] || status=1

bench() {  # name, schedule
  timeout "${BENCH_TIMEOUT:-300}" "$bundle/bin/nanoflow" bench throughput --backend cuda --load-format dummy \
    --model "$model" --input-len 1024 --output-len 512 --num-prompts "$num_prompts" \
    --max-num-batched-tokens "$budget" --schedule "$2" --no-progress --output-json "$out/throughput_$1.json" \
    > "$out/throughput_$1.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || status=1
  results+=("$(printf '%-24s rc=%-3s %s' "throughput_$1" "$rc" \
    "$(grep -E '^(total tokens/s|fraction of ceiling)' "$out/throughput_$1.log" | tr -s ' ' | tr '\n' ' ')")")
}

echo "== tune (rc=$tune_rc, ${tune_s} s) =="
grep -E '^(profil|interference|searching|best predicted|timing|measured|tuned spec|wrote|warning|error)' "$out/tune.log"
results=()
[ -f "$out/tuned_spec.json" ] && bench tuned "$out/tuned_spec.json"
bench sequential sequential
for schedule in ${COMPARE:-}; do
  bench "$(basename "${schedule%.json}")" "$schedule"
done
echo "== throughput (fixed 1024/512, $num_prompts prompts) =="
head -2 "$out/device.txt"
printf '%s\n' "${results[@]}"
grep -h -E '^error' "$out"/throughput_*.log 2>/dev/null
exit $status
