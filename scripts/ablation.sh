#!/usr/bin/env bash
# The pipeline ablation on the GPU (run from the repository root, like gpu_check.sh): `nanoflow bench throughput`
# on the CUDA backend with Llama-3-8B dummy weights, for every schedule x workload, one log and JSON each, then a
# table of total tokens/s, fraction of the compute-bound ceiling and speed-up over the first schedule.
# Usage: scripts/ablation.sh OUT_DIR [BUNDLE_DIR]
#   MODEL       (default configs/models/llama3-8b): the config.json folder
#   SCHEDULES   (default "sequential nanobatch overlap"): names of configs/pipelines or spec paths
#   WORKLOADS   (default "fixed splitwise_conv lmsys sharegpt"): "fixed" is --input-len 1024 --output-len 512
#   NUM_PROMPTS (default 2000), BENCH_TIMEOUT (seconds per run, default 300), EXTRA_ARGS (added to every run),
#   PROFILE_SCHEDULES (schedules also run once with --profile-ops on the fixed workload, PROFILE_PROMPTS prompts,
#   default 1000: enough to reach the steady state of ~540 decodes per full step).
set -uo pipefail
out=${1:?usage: ablation.sh OUT_DIR [BUNDLE_DIR]}
here="$(cd "$(dirname "$0")" && pwd)"
bundle="$(cd "${2:-$here/..}" && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
schedules=${SCHEDULES:-"sequential nanobatch overlap"}
workloads=${WORKLOADS:-"fixed splitwise_conv lmsys sharegpt"}
num_prompts=${NUM_PROMPTS:-2000}
bench_timeout=${BENCH_TIMEOUT:-300}
read -r -a extra <<< "${EXTRA_ARGS:-}"

run_one() {  # log name, args...
  local name=$1
  shift
  timeout "$bench_timeout" "$bundle/bin/nanoflow" bench throughput --backend cuda --load-format dummy \
    --model "${MODEL:-configs/models/llama3-8b}" --no-progress --output-json "$out/$name.json" "${extra[@]}" "$@" \
    > "$out/$name.log" 2>&1
  echo "$name rc=$?" >> "$out/runs.txt"
}

label_of() {  # a schedule's label in file names: its name, or parent-folder_name for a spec path
  case "$1" in
    */*) echo "$(basename "$(dirname "$1")")_$(basename "$1" .json)" ;;
    *) basename "$1" .json ;;
  esac
}

for workload in $workloads; do
  if [ "$workload" = fixed ]; then args=(--input-len 1024 --output-len 512); else args=(--trace "data/traces/$workload.csv"); fi
  for schedule in $schedules; do
    run_one "${workload}__$(label_of "$schedule")" "${args[@]}" --num-prompts "$num_prompts" --schedule "$schedule"
  done
done
for schedule in ${PROFILE_SCHEDULES:-}; do
  run_one "profile__$(label_of "$schedule")" --input-len 1024 --output-len 512 --num-prompts "${PROFILE_PROMPTS:-1000}" \
    --schedule "$schedule" --profile-ops
done

labels=""
for schedule in $schedules; do labels="$labels $(label_of "$schedule")"; done
python3 - "$out" "$labels" "$workloads" <<'PY' | tee "$out/ablation.md"
import json, os, sys
out, schedules, workloads = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
names = schedules
# Two ratios against the first schedule: of tokens/s, and of the fraction of the ceiling each run measured for
# itself (the ceiling moves a few percent between runs with the card's clocks, so the two can disagree).
print("| workload | schedule | total tokens/s | fraction of ceiling | vs " + names[0] + " (tokens/s) | vs " + names[0] +
      " (fraction) | steps | elapsed s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for w in workloads:
    base = base_frac = None
    for n in names:
        path = os.path.join(out, f"{w}__{n}.json")
        if not os.path.exists(path):
            print(f"| {w} | {n} | (no result) | | | | | |")
            continue
        r = json.load(open(path))
        tps = r.get("total_tokens_per_s") or r.get("total_throughput") or 0.0
        frac = r.get("fraction_of_ceiling", 0.0)
        base = base or tps
        base_frac = base_frac or frac
        frac_ratio = f"{frac / base_frac:.3f}x" if base_frac else ""
        print(f"| {w} | {n} | {tps:.0f} | {100 * frac:.1f}% | {tps / base:.3f}x | {frac_ratio} | "
              f"{r.get('steps', '')} | {r.get('elapsed_s', 0):.1f} |")
PY
