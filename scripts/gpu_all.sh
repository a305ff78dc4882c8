#!/usr/bin/env bash
# Every GPU stage of the project in one bounded run, for a GPU machine reached by copying files: the gpu tests
# and references (gpu_check.sh), the kernel benchmarks, the overlap probe (bench_overlap), profiled engine runs,
# `nanoflow tune` on Llama-3-8B and on the porting shapes (tune_check.sh), and the pipeline ablation (ablation.sh).
# Run from the repository root. After each stage everything written so far is
# packed into OUT_DIR/logs.tgz, so a run cut short still returns what it finished.
# Usage: scripts/gpu_all.sh OUT_DIR BUNDLE   (BUNDLE: a folder from bundle_libs.sh, or the .tar.xz it packs)
#   STAGES (default "tests kernels overlap tune port ablation"): which stages, in this order ("profile" and "power"
#   are extra: "power" samples clocks and power with nvidia-smi while bench_overlap --hold runs GEMMs alone, decode
#   attention alone, both together, the sequential layer and the best overlapped layer, 6 s each);
#   KERNELS ("prefill decode"): the bench_kernels groups of the kernels stage (and of "baseline", extra: the same
#   groups with an earlier build's bench_kernels, BASELINE=ARCHIVE from baseline_bench.sh); "kernel_tests" (extra) runs
#   test_kernels_cuda alone, KERNEL_TESTS (default "*") its gtest filter, KERNEL_TESTS_TIMEOUT (240) its seconds;
#   "ncu" (extra) profiles prefill attention at 4k tokens with Nsight Compute, one run per variant of NCU_VARIANTS
#   ("3"), and prints the headline metrics and the stall reasons;
#   PROFILE_SCHEDULES ("sequential overlap"), PROFILE_PROMPTS (1000): the profile stage's `--profile-ops` runs at
#   fixed 1024/512 (enough prompts to reach the steady state of ~540 decodes per full step);
#   COMPARE ("overlap-front"): schedules the tune stage benchmarks beside the tuned and the sequential one;
#   NUM_PROMPTS (1000): prompts of the tune and ablation runs; PORT_PROMPTS (300): of the porting runs;
#   PORT_MODELS (default "llama2-7b mistral-7b qwen2-7b"): folders of configs/models;
#   SCHEDULES (default "sequential overlap-front configs/pipelines/tuned/llama3-8b-h200.json"; the word TUNED stands
#   for the spec this run's tune stage wrote), WORKLOADS
#   ("fixed splitwise_conv sharegpt lmsys"): the ablation's, as ablation.sh takes them; ABLATION_TIMEOUT (150):
#   seconds per ablation run.
# On an H200 "tests tune port" take about 9 minutes and "ablation" about 8 at these defaults: two calls of at most
# 10 minutes each.
set -uo pipefail
out=${1:?usage: gpu_all.sh OUT_DIR BUNDLE}
bundle=${2:?usage: gpu_all.sh OUT_DIR BUNDLE}
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d)"
if [ -f "$bundle" ]; then
  mkdir -p "$work/bundle"
  tar xJf "$bundle" -C "$work/bundle" || exit 1
  bundle="$work/bundle"
fi
bundle="$(cd "$bundle" && pwd)"
logs="$work/logs"
export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$logs"
pack() { tar czf "$out/logs.tgz" -C "$logs" . ; }
kernel_benches() {  # binary, log prefix: the KERNELS groups of bench_kernels, the headline lines printed
  for group in ${KERNELS:-prefill decode}; do
    timeout 120 "$1" --only "$group" --json "$logs/$2_$group.json" > "$logs/$2_$group.log" 2>&1
    echo "-- $2: bench_kernels --only $group: rc=$?"
    grep -E "TFLOP/s|TB/s" "$logs/$2_$group.log" | head -40
  done
}
num_prompts=${NUM_PROMPTS:-1000}

for stage in ${STAGES:-tests kernels overlap tune port ablation}; do
  start=$(date +%s)
  case "$stage" in
    tests)
      SKIP_KERNEL_BENCH=1 SKIP_THROUGHPUT=1 timeout 300 bash "$here/gpu_check.sh" "$logs/check" "$bundle" \
        > "$logs/check.txt" 2>&1
      sed -n '/== summary ==/,$p' "$logs/check.txt" ;;
    kernel_tests)
      timeout "${KERNEL_TESTS_TIMEOUT:-240}" "$bundle/bin/tests/test_kernels_cuda" --gtest_filter="${KERNEL_TESTS:-*}" \
        > "$logs/kernel_tests.log" 2>&1
      echo "-- test_kernels_cuda --gtest_filter=${KERNEL_TESTS:-*}: rc=$?"
      grep -E "^\[  (PASSED|FAILED) |Failure|error|variant" "$logs/kernel_tests.log" | head -60 ;;
    ncu)
      ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
      for variant in ${NCU_VARIANTS:-3}; do
        timeout 240 "$ncu" --set full --clock-control none -k regex:prefill_attention --launch-skip 3 --launch-count 1 \
          "$bundle/bin/bench/bench_kernels" --profile prefill --variant "$variant" > "$logs/ncu_prefill_$variant.txt" 2>&1
        echo "-- ncu, prefill attention variant $variant (4k tokens): rc=$?"
        grep -E "Duration|Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|Eligible Warps|No Eligible|\
Warp Cycles Per Issued|L2 Hit|L1/TEX Hit|Executed Ipc|Stall|Tensor" "$logs/ncu_prefill_$variant.txt" | head -40
        # Where the warps wait: cycles stalled per issued instruction, by reason, largest first.
        timeout 120 "$ncu" --clock-control none -k regex:prefill_attention --launch-skip 3 --launch-count 1 \
          --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active" \
          "$bundle/bin/bench/bench_kernels" --profile prefill --variant "$variant" > "$logs/ncu_stalls_$variant.txt" 2>&1
        echo "-- stall reasons, variant $variant (cycles per issued instruction): rc=$?"
        grep -E "smsp__average_warps_issue_stalled" "$logs/ncu_stalls_$variant.txt" | sort -k3 -g -r | head -10
        pack
      done ;;
    kernels) kernel_benches "$bundle/bin/bench/bench_kernels" bench ;;
    baseline)
      # The kernel benchmarks of an earlier build (BASELINE: an archive from baseline_bench.sh), in the same run as
      # the kernels stage, so that a kernel change is compared on one machine and one set of clocks.
      xz -dc "${BASELINE:?the baseline stage needs BASELINE=ARCHIVE}" > "$work/bench_baseline" &&
        chmod +x "$work/bench_baseline"
      kernel_benches "$work/bench_baseline" baseline ;;
    overlap)
      timeout 180 "$bundle/bin/bench/bench_overlap" --json "$logs/overlap.json" > "$logs/overlap.log" 2>&1
      echo "-- bench_overlap: rc=$?"
      cat "$logs/overlap.log" ;;
    power)
      nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu \
        --format=csv,noheader -lms 200 > "$logs/power_smi.csv" 2>&1 &
      monitor=$!
      sleep 1
      timeout 90 "$bundle/bin/bench/bench_overlap" --hold 6 > "$logs/power_phases.log" 2>&1
      echo "-- bench_overlap --hold: rc=$?"
      sleep 1
      kill "$monitor" 2>/dev/null
      cat "$logs/power_phases.log"
      awk 'NR % 5 == 0' "$logs/power_smi.csv" ;;
    profile)
      for schedule in ${PROFILE_SCHEDULES:-sequential overlap}; do
        label=$(basename "$schedule" .json)
        timeout 240 "$bundle/bin/nanoflow" bench throughput --backend cuda --load-format dummy \
          --model "${MODEL:-configs/models/llama3-8b}" --no-progress --input-len 1024 --output-len 512 \
          --num-prompts "${PROFILE_PROMPTS:-1000}" --schedule "$schedule" --profile-ops \
          --output-json "$logs/profile_$label.json" > "$logs/profile_$label.log" 2>&1
        echo "-- profile $schedule: rc=$?"
        grep -E "tokens/s|ceiling" "$logs/profile_$label.log" | head -4
        sed -n '/== CUDA backend step profile/,/== timeline/p' "$logs/profile_$label.log"
        pack
      done ;;
    tune)
      TUNE_TIMEOUT=150 BENCH_TIMEOUT=120 PROFILE_ARGS="--sm-budget-stride 2" NUM_PROMPTS="$num_prompts" \
        COMPARE="${COMPARE-overlap-front}" timeout 480 bash "$here/tune_check.sh" "$logs/tune" "$bundle" \
        > "$logs/tune.txt" 2>&1
      grep -E "best predicted|measured|tuned spec|throughput_" "$logs/tune.txt" ;;
    port)
      for model in ${PORT_MODELS:-llama2-7b mistral-7b qwen2-7b}; do
        MODEL="configs/models/$model" TUNE_TIMEOUT=120 BENCH_TIMEOUT=60 PROFILE_ARGS="--sm-budget-stride 2" \
          NUM_PROMPTS="${PORT_PROMPTS:-300}" COMPARE= timeout 260 bash "$here/tune_check.sh" "$logs/port_$model" "$bundle" \
          > "$logs/port_$model.txt" 2>&1
        echo "-- $model"
        grep -E "best predicted|tuned spec|throughput_" "$logs/port_$model.txt"
        pack
      done ;;
    ablation)
      schedules="${SCHEDULES:-sequential overlap-front configs/pipelines/tuned/llama3-8b-h200.json}"
      SCHEDULES="${schedules//TUNED/$logs/tune/tuned_spec.json}" \
        WORKLOADS="${WORKLOADS:-fixed splitwise_conv sharegpt lmsys}" NUM_PROMPTS="$num_prompts" \
        BENCH_TIMEOUT="${ABLATION_TIMEOUT:-150}" \
        bash "$here/ablation.sh" "$logs/ablation" "$bundle" > "$logs/ablation.txt" 2>&1
      cat "$logs/ablation.txt" ;;
    *) echo "unknown stage $stage" >&2 ;;
  esac
  echo "== stage $stage: $(( $(date +%s) - start )) s"
  pack
done
rm -rf "$work"
