#!/usr/bin/env bash
# Runs on the lent GPU machine, over the bundle tools/device-bundle.sh made (carried as device/): the
# kernel tests on the CUDA driver, a short training run, and the benchmarks when present. Everything
# it measures goes under $OUT (the device tool brings that folder back); a summary is printed at the end.
# Each step is time-limited and a failing step does not stop the others (their exit codes are recorded).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/resnet-cuda-device-check}"
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: >"$summary"

step() { # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    printf '%-28s rc=%-4s %4ss\n' "$name" "$rc" "$((SECONDS - start))" | tee -a "$summary"
}

step nvidia-smi 30 nvidia-smi
step info 60 device/resnet-cuda info
step test-kernels 300 env RESNET_TEST_DRIVER=cuda device/kernels
step test-conv-kernels 300 env RESNET_TEST_DRIVER=cuda device/conv_kernels
step test-nccl-device 120 device/nccl_device --ignored
step train-resnet20 300 device/resnet-cuda train --device cuda --data synthetic:20000:2000 \
    --iters 400 --eval-every 400 --out "$OUT/run-resnet20"
if device/resnet-cuda bench --help >/dev/null 2>&1; then
    step bench-resnet50-b256 300 device/resnet-cuda bench --model resnet50 --batch-size 256 \
        --device cuda --json
    step bench-resnet20-b128 120 device/resnet-cuda bench --model resnet20 --batch-size 128 \
        --device cuda --json
fi
if [ -x device/bench-kernels ]; then
    step bench-kernels 400 env RESNET_BENCH_DEVICE=cuda device/bench-kernels --bench
fi
echo "--- test results" | tee -a "$summary"
grep -h "^test result" "$OUT"/test-*.txt | tee -a "$summary"
