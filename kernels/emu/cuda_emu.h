// cuda_emu.h: makes a CUDA `.cu` file valid host C++17 so that the emulator can run its kernels on the
// CPU. build.rs force-includes it (`-include cuda_emu.h`) into every kernels/*.cu compiled for the host,
// the way nvcc implicitly includes the CUDA runtime headers; nvcc never sees it.
//
// What a kernel may use, and how each piece maps to the emulator (see runtime/*.cpp for the why):
//   __global__ __device__ __host__ __forceinline__ __noinline__ __launch_bounds__ __align__ __restrict__
//   threadIdx blockIdx blockDim gridDim warpSize                      -> emu_types.h, emu_context.h
//   __shared__ (static, per block), dynamic_shared_memory<T>()       -> emu_context.h (+ common.cuh)
//   __syncthreads[_count|_and|_or], __syncwarp, __shfl*_sync,
//   __ballot_sync, __any_sync, __all_sync, __reduce_*_sync           -> emu_sync.h
//   atomic*                                                           -> emu_atomics.h
//   mma.sync, ldmatrix, cp.async, bf16 (through tensor_core.cuh)      -> emu_tensor_core.h, emu_bfloat16.h
//   wgmma.*, fence.proxy.async (through wgmma.cuh)                    -> emu_wgmma.h
//   mbarrier.*, cp.async.bulk.tensor (through tma.cuh)                 -> emu_tma.h
//   fast-math and bit intrinsics, min/max                             -> emu_math.h
//   EMU_REGISTER(kernel): makes an extern "C" kernel launchable by name -> emu_registry.h
//
// Not supported (a compile error says so rather than a silent wrong answer): `extern __shared__` (use
// dynamic_shared_memory<T>() from common.cuh), __activemask, cooperative groups, textures.
#ifndef RESNET_CUDA_EMU_H
#define RESNET_CUDA_EMU_H

#ifdef __CUDACC__
#error "cuda_emu.h is the host emulator's header; nvcc must not include it"
#endif

// Kernel code can test for the emulator the way it tests __CUDA_ARCH__ for a device pass.
#define __CUDA_EMU__ 1

#include "emu_types.h"
#include "emu_context.h"
#include "emu_sync.h"
#include "emu_atomics.h"
#include "emu_tensor_core.h"
#include "emu_wgmma.h"
#include "emu_tma.h"
#include "emu_math.h"
#include "emu_registry.h"

#endif
