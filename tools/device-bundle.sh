#!/usr/bin/env bash
# Builds what the lent GPU machine runs (it has the NVIDIA driver but no Rust toolchain and no registry),
# with the CUDA kernels really compiled, and copies it into device/ (git-ignored), next to
# tools/device-check.sh which runs it there:
#
#   tools/device-bundle.sh            # here: build, check that every test step of device-check.sh
#                                     # selects tests, copy and pack into device/bundle.tar.xz (under
#                                     # the 64 MiB a device call carries)
#   (device tool) run: tools/device-check.sh   with carry ["device"]
#
# device/ gets: resnet-cuda (release), the GPU test executables (kernels, conv_kernels, tensor_core,
# wgmma, tma, conv_tc, bf16_kernels, mixed_precision, cuda_graph, device_data, nccl_device) and, when present, the criterion kernel benchmarks, all stripped of debug info to
# keep the bundle small. With NOKERNELS=1 also resnet-cuda-nokernels, a release binary built with
# NVCC=none, with which the check shows what `--device auto` says on a GPU it cannot use.
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC="${NVCC:-$(tools/install-nvcc.sh)}"
export NVCC
# A target folder of its own: builds with and without nvcc do not invalidate each other.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/device-build}"
unset CUDA_ARCHS

cargo build --release
tests_json=$(cargo test --release --no-run --message-format=json --test kernels --test conv_kernels \
    --test tensor_core --test wgmma --test tma --test conv_tc --test bf16_kernels --test mixed_precision --test cuda_graph \
    --test device_data --test nccl_device)
benches_json=""
if [ -f benches/kernels.rs ]; then
    benches_json=$(cargo bench --no-run --message-format=json --bench kernels --bench tc_tiles)
fi

rm -rf device && mkdir -p device
cp "$CARGO_TARGET_DIR/release/resnet-cuda" device/
# Each test or bench executable is named by its target (kernels-<hash> -> kernels).
printf '%s\n%s\n' "$tests_json" "$benches_json" | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        name = m["target"]["name"]
        if m["target"]["kind"] == ["bench"]:
            name = "bench-" + name
        shutil.copy(m["executable"], "device/" + name)
        print("device/" + name, file=sys.stderr)
'
if [ "${NOKERNELS:-0}" = 1 ]; then
    NVCC=none CARGO_TARGET_DIR=target/device-build-nokernels cargo build --release
    cp target/device-build-nokernels/release/resnet-cuda device/resnet-cuda-nokernels
fi
strip --strip-debug device/* 2>/dev/null || true
du -sh device
# Every test step of the device check selects at least one test of these executables (a renamed test
# would otherwise make its step pass with 0 tests on the GPU).
LIST=1 PHASES="1 2 3 4" FULL=1 tools/device-check.sh
# The executables (each with the kernels and the emulator linked in) come to over 200 MB, and a
# device call carries at most 64 MiB: they travel as one xz archive, which device-check.sh unpacks.
# Not gzip: each executable carries the same 15 MB of fatbins, which gzip's 32 KiB window cannot
# see repeat (72 MB), and xz's 64 MiB dictionary can (about 12 MB).
tar -C device -cf - . | xz -9 -T1 >bundle.tar.xz
rm -f device/*
mv bundle.tar.xz device/bundle.tar.xz
du -sh device/bundle.tar.xz
size=$(stat -c %s device/bundle.tar.xz)
if [ "$size" -ge $((60 * 1024 * 1024)) ]; then
    echo "error: device/bundle.tar.xz is $size bytes, too close to the 64 MiB a device call carries" >&2
    exit 1
fi
