#!/usr/bin/env bash
# Runs on the lent GPU machine, over the bundle tools/device-bundle.sh made (carried as device/):
# every GPU test on the CUDA driver, the README's main job on the GPU and its checkpoint evaluated on
# the CPU, runs on CIFAR-format and ImageNet-folder data, `bench --device cuda`, PyTorch's same step
# and the GPU's ceilings measured in the same call, the kernel suites under compute-sanitizer, and the
# criterion kernel benchmarks.
#
#   (device tool) run: PHASES=1 tools/device-check.sh   carry ["device"], timeout_s >= DEADLINE + 60
#   (device tool) run: PHASES=2 tools/device-check.sh   the same, second call
#   (device tool) run: PHASES=3 DEADLINE=420 tools/device-check.sh   PyTorch compiled, once 1 and 2 pass
#   (device tool) run: PHASES="4 2" DEADLINE=300 tools/device-check.sh   Nsight Compute's counters first
#   here, after each call: tools/device-results.sh FILES_AT   files the outputs under docs/<gpu>/
#   here, before: LIST=1 PHASES="1 2 3 4" FULL=1 tools/device-check.sh   (tools/device-bundle.sh runs it)
# A later call repeats what phase 1's summary set "from here on" (RESNET_PDL=0, RESNET_BENCH_TILES=mma,
# RESNET_BENCH_TMA=off) before its command: e.g. RESNET_BENCH_TMA=off PHASES="4 2" tools/device-check.sh
#
# DEADLINE (seconds, default 480) bounds the whole script: each step gets the smaller of its own limit
# and what is left (less a reserve for packing), and a step with under 10 s left is skipped. A failing
# step does not stop the others; its exit code is recorded. Only 8 files come back from $OUT, so the
# raw outputs travel as one archive, raw.tar.gz; summary.txt is also copied out on its own.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/resnet-cuda-device-check}"
DEADLINE="${DEADLINE:-480}"
RAW=/tmp/device-raw
rm -rf "$RAW" && mkdir -p "$RAW" "$OUT"
summary="$RAW/summary.txt"
: >"$summary"
RC=device/resnet-cuda
# tools/device-bundle.sh packs the executables into one archive (they exceed the carry limit unpacked).
if [ -f device/bundle.tar.xz ]; then
    tar -C device -xJf device/bundle.tar.xz
fi
export RUST_BACKTRACE=1 PYTHONUNBUFFERED=1

# LIST=1 (run here by tools/device-bundle.sh over the executables it has just built, no GPU needed)
# runs no step: each step that runs a test executable lists the tests its filters select instead,
# and the script fails if one selects none, so that a renamed or moved test is found here and not
# by a device step that "passes" with 0 tests. Steps that run resnet-cuda or a benchmark are
# skipped (criterion's listing needs the GPU).
LIST="${LIST:-0}"
list_failures=0
list_selection() { # list_selection NAME COMMAND...: count the tests COMMAND's filters select
    local name=$1
    shift
    local cmd=()
    for arg in "$@"; do
        if [ ${#cmd[@]} -eq 0 ]; then
            case $arg in
            device/resnet-cuda* | device/bench-*) return 0 ;;
            device/*) ;;
            *) continue ;;
            esac
        fi
        cmd+=("$arg")
    done
    [ ${#cmd[@]} -eq 0 ] && return 0
    local selected count
    selected=$("${cmd[@]}" --list 2>/dev/null | grep ': test$')
    count=$(grep -c . <<<"$selected")
    printf '%-30s %4s tests: %s\n' "$name" "$count" "${cmd[*]}"
    # What the plain runs select (the sanitizers' runs, in phase 2, may not be reached).
    mkdir -p "$RAW/selected"
    [[ $count -eq 0 || $name == sanitize-* ]] ||
        echo "$selected" >>"$RAW/selected/$(basename "${cmd[0]}")"
    if [ "$count" -eq 0 ]; then
        echo "error: step $name selects no test" >&2
        list_failures=$((list_failures + 1))
    fi
    return 0
}

step() { # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    if [ "$LIST" = 1 ]; then
        list_selection "$name" "$@"
        return
    fi
    local left=$((DEADLINE - SECONDS - 20))
    if [ "$left" -lt 10 ]; then
        printf '%-30s skipped (deadline)\n' "$name" | tee -a "$summary"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local start=$SECONDS
    timeout "$limit" "$@" >"$RAW/$name.txt" 2>&1
    local rc=$?
    printf '%-30s rc=%-4s %4ss (limit %ss)\n' "$name" "$rc" "$((SECONDS - start))" "$limit" |
        tee -a "$summary"
    return "$rc"
}

# The fusions and programmatic dependent launch, all on by default and never yet run on a GPU, off:
# what a failing step is tried again with, so that one broken feature costs the call its own figure
# and not every figure after it. A step that ran out of time (timeout's 124, or 137 when killed) is
# not a broken feature: it is not tried again, which would spend the time the later steps need.
PLAIN_ENV=(RESNET_FUSE_BN_INPUT=0 RESNET_FUSE_BN_GRAD=0 RESNET_PDL=0)

step_or_plain() { # step_or_plain NAME SECONDS COMMAND...: on failure, again as NAME-plain, PLAIN_ENV set
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" "$@"
    local rc=$?
    case $rc in
    0 | 124 | 137) return "$rc" ;;
    esac
    step "$name-plain" "$limit" env "${PLAIN_ENV[@]}" "$@"
}

sanitize() { # sanitize TOOL SUITE SECONDS [TEST FILTERS...]
    local tool=$1 suite=$2 limit=$3
    shift 3
    # Without the Hopper families (below), their suites are left out and the others' tests of them
    # skipped: a kernel that hangs would spend the step's whole limit.
    local tiles=() skips=()
    if ! wgmma_ok; then
        case $suite in
        wgmma | tma) skipped "sanitize-$tool-$suite" "the wgmma tests failed" && return ;;
        esac
        tiles=(RESNET_TEST_TILES=mma)
        skips=(--skip wgmma)
    elif ! tma_ok; then
        [ "$suite" = tma ] && skipped "sanitize-$tool-$suite" "the TMA tests failed" && return
        skips=(--skip fed_through_im2col --skip tma --skip conv_tuning)
    fi
    # Tests named `..._is_refused` make calls the driver must refuse (a block beyond its kernel's
    # limits, shared memory without the opt-in), which the tool counts as errors: the plain test
    # steps run them.
    step "sanitize-$tool-$suite" "$limit" env RESNET_TEST_DRIVER=cuda "${tiles[@]}" \
        compute-sanitizer --tool "$tool" --print-limit 20 --error-exitcode 3 "device/$suite" \
        --test-threads=1 "$@" "${skips[@]}" --skip _is_refused
}

# Hopper's kernel families, never run on a GPU before, are left out of the steps after their tests
# fail (a kernel that hangs would spend each step's whole limit): RESNET_BENCH_TILES=mma leaves out
# everything on wgmma, RESNET_BENCH_TMA=off everything fed by TMA. Phase 1 sets them from its tests;
# a later call (phases 2 and 4) is told them on its command line, from phase 1's summary.
wgmma_ok() { [ "$LIST" = 1 ] || [ "${RESNET_BENCH_TILES:-}" != mma ]; }
tma_ok() { wgmma_ok && { [ "$LIST" = 1 ] || [ "${RESNET_BENCH_TMA:-}" != off ]; }; }
skipped() { # skipped NAME WHY
    printf '%-30s skipped (%s)\n' "$1" "$2" | tee -a "$summary"
}
gated() { # gated wgmma_ok|tma_ok STEP_FUNCTION NAME ARGS...: the step, unless that family is left out
    local check=$1 run=$2 name=$3
    shift 2
    if "$check"; then
        "$run" "$@"
    else
        skipped "$name" "RESNET_BENCH_TILES=${RESNET_BENCH_TILES:-} RESNET_BENCH_TMA=${RESNET_BENCH_TMA:-}"
    fi
}
no_wgmma() { # no_wgmma NAME: RESNET_BENCH_TILES=mma is set from here on, and the summary says why
    export RESNET_BENCH_TILES=mma
    echo "RESNET_BENCH_TILES=mma from here on: $1 failed (no wgmma kernel runs after it)" | tee -a "$summary"
}
no_tma() { # no_tma NAME: RESNET_BENCH_TMA=off from here on, and the summary says why
    export RESNET_BENCH_TMA=off
    echo "RESNET_BENCH_TMA=off from here on: $1 failed (no kernel fed by TMA runs after it)" |
        tee -a "$summary"
}

# PHASES picks the parts to run (default "1 2", both): 1 is correctness and speed in bf16, the
# default (every GPU test, ceilings, bench beside PyTorch's bf16 step, the default run, the
# 64k-iteration CIFAR schedule, then the tile sweep), in the order of what matters most if the
# deadline cuts it short, with resnet20's step without PDL; 2 is the f32 step beside PyTorch's fp32
# and TF32 ones, the fusion comparisons and resnet50's without PDL, the sanitizers, the older data-format checks (with FULL=1) and the criterion benchmarks. One call
# rarely fits both: run PHASES=1, then PHASES=2 in a second call while the machine is warm. 3 (not in
# the default) is PyTorch's compiled step beside ours, for a session after 1 and 2 have passed; 4
# (not in the default) the hardware counters of our kernels under Nsight Compute.
PHASES="${PHASES:-1 2}"
in_phase() { [[ " $PHASES " == *" $1 "* ]]; }

step nvidia-smi 15 nvidia-smi
if in_phase 1; then
step info 30 "$RC" info
# Correctness first: every GPU test suite on the CUDA driver, the bf16 ones (tensor-core
# convolutions, bf16 memory-bound kernels, whole mixed-precision steps) included.
# Programmatic dependent launch (every kernel on sm_90) has not run on a GPU before: if the first
# suite fails with it and passes without, the rest of the call runs without it, and says so.
if ! step test-kernels 150 env RESNET_TEST_DRIVER=cuda device/kernels; then
    if step test-kernels-nopdl 150 env RESNET_PDL=0 RESNET_TEST_DRIVER=cuda device/kernels; then
        export RESNET_PDL=0
        echo "RESNET_PDL=0 from here on: the kernels suite failed with PDL, passed without" |
            tee -a "$summary"
    fi
fi
# Each kernel's launch limits as build.rs computed them from nvcc's output (which the emulator
# enforces) beside the driver's attributes: printed where they differ (test-kernels ran the check).
step kernel-limits 30 env RESNET_TEST_DRIVER=cuda device/kernels --exact \
    every_kernel_has_the_limits_build_rs_read_from_nvcc --nocapture
step test-conv-kernels 150 env RESNET_TEST_DRIVER=cuda device/conv_kernels
step test-tensor-core 60 env RESNET_TEST_DRIVER=cuda device/tensor_core
# Hopper's wgmma (sm_90a), never run on a GPU before: its building blocks, then the convolution
# forward built on it (in conv_tc, with every other tile).
# The two kernel families in separate processes: a fault in one (a sticky CUDA error poisons the
# context every test of a process shares) must not hide the other's results. `banks` tests count
# shared-memory bank conflicts, which only the emulator can: skipped here.
# The register hand-over of the 128x256 producer warpgroup (setmaxnreg) by itself first: a wrong
# count hangs its inc, which must not take the other wgmma results down with it.
# The 128x256 tiles fed by TMA on both operands hand their producer warpgroup's registers over the
# same way (they always take it): if this fails, they would hang, so nothing fed by TMA runs after.
step test-wgmma-handover 30 env RESNET_TEST_DRIVER=cuda device/wgmma --exact \
    a_producer_warpgroup_hands_its_registers_over_and_exits_from_a_call || no_tma test-wgmma-handover
step test-wgmma 60 env RESNET_TEST_DRIVER=cuda device/wgmma --skip a_producer_warpgroup ||
    no_wgmma test-wgmma
# The tensor memory accelerator's tiled loads and mbarriers (kernels/tma.cuh), never run on a GPU
# before: what the emulator's reading of them (kernels/emu/emu_tma.h) is checked against.
step test-tma 60 env RESNET_TEST_DRIVER=cuda device/tma || no_tma test-tma
step test-conv-tc 120 env RESNET_TEST_DRIVER=cuda RESNET_TEST_TILES=mma device/conv_tc \
    --skip wgmma --skip banks
# The wgmma tiles (the tile sweep below then times the mma.sync tiles only if they fail).
if wgmma_ok; then
    step test-conv-tc-wgmma 120 env RESNET_TEST_DRIVER=cuda RESNET_TEST_TILES=wgmma device/conv_tc \
        every_tile stores_staged --skip banks --skip fed_by_tma || no_wgmma test-conv-tc-wgmma
else
    skipped test-conv-tc-wgmma "RESNET_BENCH_TILES=mma"
fi
# The kernels fed by TMA (tiled boxes, and the im2col walk that test-tma checks first) in a process
# of their own: if the hardware disagrees with the emulator, the tile sweep keeps its plain wgmma
# rows and leaves out the `+tma` ones.
if tma_ok; then
    step test-conv-tc-wgmma-tma 90 env RESNET_TEST_DRIVER=cuda RESNET_TEST_TILES=wgmma device/conv_tc \
        fed_by_tma fed_through_im2col || no_tma test-conv-tc-wgmma-tma
else
    skipped test-conv-tc-wgmma-tma "RESNET_BENCH_TILES=mma or RESNET_BENCH_TMA=off"
fi
step test-bf16-kernels 90 env RESNET_TEST_DRIVER=cuda device/bf16_kernels
# The fusions' own tests name them (bn_input, bn_relu_in, bn_sums, ...): a failure there is what
# the `-plain` retries of the bench and train steps below get around.
step test-mixed-precision 90 env RESNET_TEST_DRIVER=cuda device/mixed_precision --skip wgmma
if wgmma_ok; then
    # Without TMA, also without the tuning tests, whose candidates include the TMA feeds.
    tma_skips=()
    tma_ok || tma_skips=(--skip tma --skip conv_tuning)
    step test-mixed-precision-wgmma 90 env RESNET_TEST_DRIVER=cuda device/mixed_precision wgmma \
        "${tma_skips[@]}"
else
    skipped test-mixed-precision-wgmma "RESNET_BENCH_TILES=mma"
fi
# The whole resnet50 step at batch 256 in bf16 (both kernel families) against the GPU's f32 step:
# the benchmark's own shapes, checked before it is timed.
step test-resnet50-b256 120 env RESNET_TEST_DRIVER=cuda device/mixed_precision --ignored \
    resnet50_steps_at_batch_256 --nocapture
# CUDA graphs: a replayed step equals an eager one bit for bit, no host sync or allocation in a
# steady step, the device-side NaN guard, and the trainer and bench with the graph on.
step test-cuda-graph 120 env RESNET_TEST_DRIVER=cuda RESNET_CLI="$RC" device/cuda_graph
# Batches built on the GPU from images kept there equal the host's, and so does a run trained on them.
step test-device-data 60 env RESNET_TEST_DRIVER=cuda RESNET_CLI="$RC" device/device_data
step test-nccl-device 60 device/nccl_device --ignored
step ceilings 60 python3 tools/gpu_ceilings.py --json "$RAW/ceilings.json"
# Speed in bf16 (the default on GPUs), ours and PyTorch's in the same call (f32 opens phase 2).
step_or_plain bench-resnet50-b256 120 "$RC" bench --model resnet50 --batch-size 256 --device cuda --json
step_or_plain bench-resnet20-b128 60 "$RC" bench --model resnet20 --batch-size 128 --device cuda --json
step bench-resnet20-b128-eager 60 "$RC" bench --model resnet20 --batch-size 128 --device cuda \
    --cuda-graph off --json
# Programmatic dependent launch (on by default on sm_90) against none, to see what it is worth.
step bench-resnet20-b128-nopdl 60 env RESNET_PDL=0 "$RC" bench --model resnet20 --batch-size 128 \
    --device cuda --json
# Every convolution on Hopper's wgmma kernels instead of mma.sync (the tile sweep below has them
# layer by layer): what the whole step gains.
gated wgmma_ok step bench-resnet50-b256-wgmma 120 env RESNET_TC_KERNELS=wgmma "$RC" bench \
    --model resnet50 --batch-size 256 --device cuda --json
gated wgmma_ok step bench-resnet20-b128-wgmma 60 env RESNET_TC_KERNELS=wgmma "$RC" bench \
    --model resnet20 --batch-size 128 --device cuda --json
# The same fed by TMA (RESNET_TC_KERNELS=wgmma-tma: every forward's weights, its input through the
# im2col mode where C allows, the 1x1 stride-1 layers' backward passes; the tile sweep's `+tma` rows).
gated tma_ok step bench-resnet50-b256-wgmma-tma 120 env RESNET_TC_KERNELS=wgmma-tma "$RC" bench \
    --model resnet50 --batch-size 256 --device cuda --json
# Convolution tuning (--conv-tuning on: the first step times every candidate launch of each
# pass, mma.sync, wgmma and the TMA feeds, and keeps the fastest): the best step these kernels make,
# and in its JSON's conv_tuning what won where, pass by pass, inside the real step. Over the
# families whose tests passed above (a faulting candidate would end the process).
TUNED_FAMILY=wgmma-tma
[ "${RESNET_BENCH_TMA:-}" = off ] && TUNED_FAMILY=wgmma
[ "${RESNET_BENCH_TILES:-}" = mma ] && TUNED_FAMILY=mma
# The choices also go to conv-tuning.json (RESNET_CONV_TUNING_FILE), kept with the raw outputs.
TUNING=(RESNET_TC_KERNELS=$TUNED_FAMILY RESNET_CONV_TUNING_FILE="$RAW/conv-tuning.json")
step bench-resnet50-b256-tuned 120 env "${TUNING[@]}" "$RC" bench --model resnet50 --batch-size 256 \
    --device cuda --conv-tuning on --json
step bench-resnet20-b128-tuned 60 env "${TUNING[@]}" "$RC" bench --model resnet20 --batch-size 128 \
    --device cuda --conv-tuning on --json
# PyTorch's bf16 autocast step, beside ours in bf16 (the default on GPUs). Its fp32 and TF32 steps,
# with ours in f32, open phase 2: all three took 131 s in 2026-12-04-call2, mostly cuDNN's
# autotuning, which phase 1 needs for the tile sweep.
step pytorch-step 120 python3 tools/pytorch_gpu_step.py --iters "${PYTORCH_ITERS:-20}" --warmup 5 \
    --precisions bf16 --json "$RAW/pytorch-step.json"
# The README's main job (bf16 by default on a GPU), and its checkpoint evaluated on the CPU.
# (Its retry starts a fresh run folder, and the evaluation on CUDA then runs as the retry did.)
EVAL_ENV=()
step train-default 300 "$RC" train --device cuda --out "$RAW/run-default"
case $? in
0 | 124 | 137) ;;
*)
    rm -rf "$RAW/run-default"
    step train-default-plain 300 env "${PLAIN_ENV[@]}" "$RC" train --device cuda --out "$RAW/run-default"
    EVAL_ENV=("${PLAIN_ENV[@]}")
    ;;
esac
step eval-default-cuda 60 env "${EVAL_ENV[@]}" "$RC" eval --device cuda --checkpoint "$RAW/run-default/latest" --json
step eval-default-cpu 120 "$RC" eval --device cpu --checkpoint "$RAW/run-default/latest" --json
# The paper's CIFAR schedule (sec. 4.2) timed end to end: resnet20, 64,000 iterations of 128, the
# rate divided by 10 at 32k and 48k (the defaults for cifar10:), on CIFAR-format data of CIFAR-10's
# size written here, with its evaluations. Goal: 60 s. Past the limit, metrics.jsonl shows how far
# it got.
step make-cifar-full 60 python3 tools/make_tiny_datasets.py "$RAW/data-full" --per-file 10000 --cifar-only
step cifar-schedule 150 "$RC" train --device cuda --data "cifar10:$RAW/data-full/cifar10" \
    --out "$RAW/run-cifar-schedule"
rm -rf "$RAW/data-full"
# Every tensor-core tile on every convolution of resnet50 b256 and resnet20 b128, against the
# plan's pick: a few seconds, and what the plan's tile choices should be tuned from.
step tc-tiles 120 env RESNET_BENCH_DEVICE=cuda device/bench-tc_tiles --json "$RAW/tc-tiles.json"
fi

# Phase 4 (not in the default; before phase 2 when both are asked for, PHASES="4 2"): the hardware
# counters of our kernels under Nsight Compute, so that the speed work done without a GPU is aimed by
# what bounds each kernel (tensor pipe, issue slots, memory, the stall reasons) and not by guesses.
# One launch per distinct launch configuration (kernel, grid, block: about one per shape) of one
# eager step; --clock-control none leaves the clocks as the benchmarks see them. tools/ncu_table.py
# prints the tables (summary.txt, ncu-tables.md); the raw pages travel gzipped. Kernel replay saves
# the device memory a kernel can reach before its first pass (the whole step's, some 20 GB at
# resnet50 b256, for each profiled kernel), so resnet50 is profiled at batch 64: the same kernels
# and tiles, smaller grids. resnet20 goes first: it is cheap and certain to fit.
NCU_SECTIONS=(--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
    --section MemoryWorkloadAnalysis_Tables --section WarpStateStats --section Occupancy --section LaunchStats)
ncu_step() { # ncu_step NAME SECONDS KERNEL_REGEX [ENV=VALUE ...] -- BENCH ARGS...
    local name=$1 limit=$2 regex=$3
    shift 3
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1") && shift; done
    shift
    step "$name" "$limit" env "${envs[@]}" "$NCU" --clock-control none --target-processes all \
        --kernel-name "regex:$regex" --filter-mode per-launch-config --launch-count 1 "${NCU_SECTIONS[@]}" \
        --page raw --csv --log-file "$RAW/$name.csv" \
        "$RC" bench --device cuda --cuda-graph off --warmup 0 --iters 1 --profile-iters 1 "$@"
}
if in_phase 4; then
NCU=$(command -v ncu || ls -d /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
echo "ncu: ${NCU:-not found}" | tee -a "$summary"
if [ -n "$NCU" ]; then
    # Every kernel of the CIFAR net's step: its convolutions are short, so the others matter too.
    ncu_step ncu-resnet20-b128 90 '.' -- --model resnet20 --batch-size 128
    ncu_step ncu-resnet50-b64 150 '^conv2d_' -- --model resnet50 --batch-size 64
    gated wgmma_ok ncu_step ncu-resnet50-b64-wgmma 120 '^conv2d_wgmma_' RESNET_TC_KERNELS=wgmma -- \
        --model resnet50 --batch-size 64
    # The kernels fed by TMA (forward; pointwise forward and backward-data): whether the copy engine
    # keeps their loops fed.
    gated tma_ok ncu_step ncu-resnet50-b64-wgmma-tma 120 '^conv2d_wgmma_tma_' RESNET_TC_KERNELS=wgmma-tma -- \
        --model resnet50 --batch-size 64
    # Where the warps of the three 128x128 main loops wait, instruction by instruction (the first
    # launch of each; the machine code is what tools/sass_mainloop.py reads here).
    step ncu-source-128x128 90 "$NCU" --clock-control none \
        --kernel-id '::regex:^conv2d_tc_(forward|backward_data|backward_filter)_[a-z_]*128x128_bf16$:1' \
        --section SourceCounters --page source --print-source sass --csv --log-file "$RAW/ncu-source-128x128.csv" \
        "$RC" bench --device cuda --cuda-graph off --warmup 0 --iters 1 --profile-iters 1 --model resnet50 \
        --batch-size 64
    python3 tools/ncu_table.py "$RAW"/ncu-resnet*.csv --source "$RAW/ncu-source-128x128.csv" \
        >"$RAW/ncu-tables.md" 2>&1
    gzip -f "$RAW"/ncu-*.csv
fi
fi

if in_phase 2; then
# The f32 step, ours and PyTorch's (fp32 with TF32 off and on) in the same call.
step bench-resnet50-b256-f32 120 "$RC" bench --model resnet50 --batch-size 256 --device cuda \
    --precision f32 --json
step bench-resnet20-b128-f32 60 "$RC" bench --model resnet20 --batch-size 128 --device cuda \
    --precision f32 --json
step pytorch-step-f32 120 python3 tools/pytorch_gpu_step.py --iters "${PYTORCH_ITERS:-20}" \
    --warmup 5 --precisions tf32,fp32 --json "$RAW/pytorch-step-f32.json"
# Then what decides defaults, well under a minute each: each fusion and programmatic dependent launch
# against none (phase 1 has the default step beside PyTorch's). Then the sanitizers, which the
# deadline may cut short (a later call can run them with PHASES=2 again).
step bench-resnet50-b256-nopdl 120 env RESNET_PDL=0 "$RC" bench --model resnet50 --batch-size 256 \
    --device cuda --json
# The BN backward sums from the backward-data epilogue (kernels/conv_tc_bn_grad.cuh) against the
# separate pass: what the fusion is worth.
# The TMA-fed kernels without their producer warp (RESNET_TMA_PRODUCER=0: the same kernels run the
# pipeline every thread of which multiplies, in smaller blocks, so perhaps two to an SM; the same
# bits), beside phase 1's bench-resnet50-b256-wgmma-tma: which pipeline the plan should launch.
gated tma_ok step bench-resnet50-b256-wgmma-tma-noproducer 120 env RESNET_TC_KERNELS=wgmma-tma \
    RESNET_TMA_PRODUCER=0 "$RC" bench --model resnet50 --batch-size 256 --device cuda --json
step bench-resnet50-b256-nofusebn 120 env RESNET_FUSE_BN_GRAD=0 "$RC" bench --model resnet50 \
    --batch-size 256 --device cuda --json
step bench-resnet20-b128-nofusebn 60 env RESNET_FUSE_BN_GRAD=0 "$RC" bench --model resnet20 \
    --batch-size 128 --device cuda --json
# BN + ReLU applied by the next convolution as it loads its input (kernels/conv_tc_bn_input.cuh)
# against BN's output stored and read back: what that fusion is worth (the tile sweep in phase 1
# has what it costs each convolution).
step bench-resnet50-b256-nofusebnin 120 env RESNET_FUSE_BN_INPUT=0 "$RC" bench --model resnet50 \
    --batch-size 256 --device cuda --json
step bench-resnet20-b128-nofusebnin 60 env RESNET_FUSE_BN_INPUT=0 "$RC" bench --model resnet20 \
    --batch-size 128 --device cuda --json

for suite in conv_tc wgmma tma bf16_kernels mixed_precision kernels conv_kernels tensor_core; do
    sanitize memcheck "$suite" 120
done
# The input kernel's own tests (the whole-run ones start CLI processes: too slow under the tool).
sanitize memcheck device_data 90 bit_for_bit rounded_once streamed
for suite in conv_tc wgmma bf16_kernels kernels conv_kernels tensor_core; do
    sanitize racecheck "$suite" 120
done
# Checks already passed on an H200 (docs/h200/2026-12-04-call2); FULL=1 runs them again: other data formats, and `--device auto` without kernels.
if [ "${FULL:-0}" = 1 ]; then
    step auto-device 30 "$RC" train --iters 1 --data synthetic:256:128 --out "$RAW/auto-run"
    if [ -x device/resnet-cuda-nokernels ]; then
        step auto-device-nokernels 60 device/resnet-cuda-nokernels train --iters 1 \
            --data synthetic:256:128 --out "$RAW/auto-run-nokernels"
    fi
    step make-datasets 60 python3 tools/make_tiny_datasets.py "$RAW/data"
    step train-cifar-format 90 "$RC" train --device cuda --data "cifar10:$RAW/data/cifar10" \
        --iters 40 --eval-every 20 --out "$RAW/run-cifar"
    step train-imagenet-folder 120 "$RC" train --device cuda --model resnet18 --batch-size 32 \
        --data "imagenet:$RAW/data/imagenet" --iters 6 --eval-every 6 --out "$RAW/run-imagenet"
    step bench-resnet50-b128 60 "$RC" bench --model resnet50 --batch-size 128 --device cuda --json
    step bench-resnet50-b64 60 "$RC" bench --model resnet50 --batch-size 64 --device cuda --json
fi

# BENCH_FILTER (criterion's filter, a regex) picks a part of the suite: all of it takes over 1 s a
# benchmark on the H200, more than one call has. Default: the bf16 tensor-core convolutions (the
# suite's default precision on a GPU) on the shapes of resnet50 at batch 256 and of resnet20.
# RESNET_BENCH_PRECISION=f32 and a filter without `_bf16` measure the f32 kernels instead.
if [ -x device/bench-kernels ]; then
    step bench-kernels 400 env RESNET_BENCH_DEVICE=cuda device/bench-kernels --bench \
        --warm-up-time 0.2 --measurement-time 0.5 --sample-size 10 --noplot \
        "${BENCH_FILTER:-^conv_[a-z_]+_bf16/(resnet50/n256_|resnet20/)}"
fi
fi

# Phase 3, once 1 and 2 have passed (a call of its own, about 4 minutes): PyTorch's step through
# torch.compile with CUDA graphs (mode="reduce-overhead"), its strongest setting for a fixed-shape
# step, beside our graphed step measured again in the same call (a ratio needs both). Compilation
# takes most of the time; each result is written as soon as it is measured.
if in_phase 3; then
    step bench-resnet20-b128 60 "$RC" bench --model resnet20 --batch-size 128 --device cuda --json
    step bench-resnet50-b256 120 "$RC" bench --model resnet50 --batch-size 256 --device cuda --json
    step pytorch-compiled 300 python3 tools/pytorch_gpu_step.py --compile --precisions bf16 \
        --iters "${PYTORCH_ITERS:-20}" --warmup 5 --json "$RAW/pytorch-compiled.json"
fi

if [ "$LIST" = 1 ]; then
    # And every test of each suite is selected by a step that runs it plainly (not under a
    # sanitizer), but the bank-conflict counts (`banks::`), which only the emulator can make.
    for selected in "$RAW"/selected/*; do
        suite=device/$(basename "$selected")
        missed=$(comm -23 <("$suite" --list --include-ignored 2>/dev/null | grep ': test$' | sort -u) \
            <(sort -u "$selected") | grep -v '^banks::')
        if [ -n "$missed" ]; then
            echo "error: no step runs these tests of $suite on the GPU:" >&2
            echo "$missed" >&2
            list_failures=$((list_failures + 1))
        fi
    done
    [ "$list_failures" -eq 0 ] || exit 1
    exit 0
fi

{
    echo "--- test results"
    grep -h "^test result\|^test .*FAILED\|panicked" "$RAW"/test-*.txt
    echo "--- sanitizer summaries"
    grep -h "ERROR SUMMARY\|RACECHECK SUMMARY\|LEAK SUMMARY" "$RAW"/sanitize-*.txt
    echo "--- GPU ceilings"
    cat "$RAW/ceilings.json" 2>/dev/null
    echo "--- default run: last evaluation"
    grep '"test_err' "$RAW/run-default/metrics.jsonl" 2>/dev/null | tail -1
    echo "--- CIFAR schedule (64k iterations): last log line and evaluation, end-to-end time above"
    grep '"train_err\|"loss' "$RAW/run-cifar-schedule/metrics.jsonl" 2>/dev/null | tail -1
    grep '"test_err' "$RAW/run-cifar-schedule/metrics.jsonl" 2>/dev/null | tail -1
    echo "--- --device auto, binary without kernels"
    grep -i "warning\|error" "$RAW/auto-device-nokernels.txt" 2>/dev/null | head -3
    echo "--- PyTorch"
    grep -hv "^{" "$RAW/pytorch-step.txt" "$RAW/pytorch-step-f32.txt" "$RAW/pytorch-compiled.txt" \
        2>/dev/null
    echo "--- ours (bench --json)"
    # The headline fields of each bench JSON (its per-kernel rows are in table.md below).
    python3 - "$RAW"/bench-resnet*.txt <<'PY'
import json, os, sys
keys = ("precision", "cuda_graph", "ms_per_step", "images_per_sec", "kernels_per_step",
        "kernel_ms_per_step", "host_syncs_per_step", "per_layer_type_ms")
for path in sys.argv[1:]:
    lines = [l for l in open(path, errors="replace") if l.startswith("{")]
    name = os.path.basename(path)[:-4]
    if not lines:
        print(f"{name}: no JSON; last lines: {open(path, errors='replace').read()[-300:]!r}")
        continue
    j = json.loads(lines[-1])
    print(f"{name}: " + json.dumps({k: j.get(k) for k in keys}))
PY
} >>"$summary" 2>&1
rm -rf "$RAW"/run-*/checkpoints/iter-* "$RAW/data" "$RAW"/auto-run*
python3 tools/device_table.py "$RAW" >"$RAW/table.md" 2>&1
cat "$RAW/table.md" >>"$summary"
if compgen -G "$RAW/ncu-resnet*.csv.gz" >/dev/null; then
    echo "--- Nsight Compute (the longest launches; all of them in ncu-tables.md)" >>"$summary"
    python3 tools/ncu_table.py --top 12 "$RAW"/ncu-resnet*.csv.gz >>"$summary" 2>&1
fi
cp "$summary" "$OUT/summary.txt"
tar -C /tmp -czf "$OUT/raw.tar.gz" device-raw
cat "$summary"
