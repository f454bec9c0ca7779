#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 compiler (nvcc, ptxas, the CUDA headers, CCCL) from NVIDIA's PyPI wheels
# into a cache folder, and prints the path of nvcc on stdout (and nothing else; progress goes to stderr).
#
#   NVCC=$(tools/install-nvcc.sh) cargo build --release
#
# Folder: $RESNET_NVCC_CACHE, default ~/.cache/resnet-cuda/nvcc-13.0. Idempotent: when that folder already
# holds an nvcc that runs and reports release 13.0, it is reused. Python: $PYTHON, else python3.
# Needs no GPU, no driver and no root. CUDA 13 compiles for sm_75 and newer; running the result needs a
# driver of the R580 series or newer.
set -euo pipefail

# Pinned together: nvcc, its front end (crt) and NVVM come from one toolkit release; the runtime headers
# and CCCL are the versions of that same release.
PACKAGES=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
)
RELEASE="13.0"

cache="${RESNET_NVCC_CACHE:-${HOME:?HOME is not set}/.cache/resnet-cuda/nvcc-${RELEASE}}"
python="${PYTHON:-python3}"
# The wheels put the toolkit under nvidia/cu13/: bin/ (nvcc, ptxas, fatbinary, ...), include/ (headers,
# crt/, cccl/), nvvm/ (cicc, libdevice) and lib/. nvcc finds all of them relative to itself.
root="$cache/nvidia/cu13"
nvcc="$root/bin/nvcc"
stamp="$cache/.installed"

log() { printf 'install-nvcc: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# True when $nvcc runs and is the pinned release.
works() {
    [ -x "$nvcc" ] || return 1
    local version
    version=$("$nvcc" --version 2>/dev/null) || return 1
    grep -q "release ${RELEASE}" <<<"$version"
}

# Compiles a tiny kernel that includes the runtime header and a CCCL header and assembles it with ptxas,
# proving nvcc finds its headers, cicc and ptxas in this layout.
smoke_test() {
    local dir
    dir=$(mktemp -d)
    cat >"$dir/probe.cu" <<'EOF'
#include <cuda_runtime.h>
#include <cuda/std/limits>
extern "C" __global__ void probe(float* x) {
    x[threadIdx.x] = cuda::std::numeric_limits<float>::max();
}
EOF
    local ok=0
    if ! "$nvcc" -cubin -arch=sm_80 -o "$dir/probe.cubin" "$dir/probe.cu" >"$dir/log" 2>&1; then
        cat "$dir/log" >&2
        ok=1
    fi
    rm -rf "$dir"
    return $ok
}

if [ -f "$stamp" ] && works; then
    log "using $nvcc (already installed)"
    printf '%s\n' "$nvcc"
    exit 0
fi

command -v "$python" >/dev/null || die "$python not found; set PYTHON to a Python 3 with pip"
"$python" -m pip --version >/dev/null 2>&1 || die "$python has no pip module"

log "installing ${PACKAGES[*]} into $cache"
# A fresh folder: a half-finished earlier attempt must not mix with this one.
rm -rf "$cache"
mkdir -p "$cache"
# --no-deps: the wheels' own dependency pins are looser than ours. Progress to stderr, never stdout.
if ! "$python" -m pip install --disable-pip-version-check --no-input --no-deps --only-binary=:all: \
    --timeout 60 --retries 3 \
    --target "$cache" "${PACKAGES[@]}" 1>&2; then
    rm -rf "$cache"
    die "pip could not install the CUDA ${RELEASE} compiler wheels (is PyPI reachable?)"
fi

# Wheels do not keep the executable bit.
for dir in "$root/bin" "$root/nvvm/bin"; do
    [ -d "$dir" ] || die "the wheels did not provide $dir"
    find "$dir" -maxdepth 1 -type f -exec chmod +x {} +
done

works || die "$nvcc does not run or is not release ${RELEASE}: $("$nvcc" --version 2>&1 || true)"
[ -f "$root/include/cuda_runtime.h" ] || die "cuda_runtime.h missing under $root/include"
[ -x "$root/bin/ptxas" ] || die "ptxas missing under $root/bin"
smoke_test || die "$nvcc cannot compile a kernel that includes cuda_runtime.h and CCCL (log above)"

touch "$stamp"
log "installed: $("$nvcc" --version | tail -n 1)"
printf '%s\n' "$nvcc"
