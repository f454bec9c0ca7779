// common.cuh: device helpers shared by every kernel file. Valid under nvcc and under the host
// emulator (build.rs force-includes emu/cuda_emu.h there, as nvcc implicitly includes its own headers).
#ifndef RESNET_CUDA_COMMON_CUH
#define RESNET_CUDA_COMMON_CUH

#ifdef __CUDACC__
// The emulator finds kernels by name through this registration; a device build needs nothing.
#define EMU_REGISTER(kernel)
#endif

// The launch's dynamic shared memory (the `sharedMemBytes` of cuLaunchKernel), as T*. Kernels use
// this instead of declaring `extern __shared__` arrays themselves: the emulator cannot give a
// per-block meaning to an arbitrary extern declaration, and one helper keeps the alignment right.
template <class T>
__device__ __forceinline__ T* dynamic_shared_memory() {
#ifdef __CUDACC__
    extern __shared__ __align__(16) unsigned char dynamic_shared_bytes[];
    return reinterpret_cast<T*>(dynamic_shared_bytes);
#else
    return static_cast<T*>(emu::dynamic_shared());
#endif
}

// Programmatic dependent launch. On compute capability 9.0 and newer the CUDA driver launches every
// kernel with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION (src/backend/gpu/cuda_driver.rs)
// when the code it loaded was built for 9.0 or newer (below that this call compiles to nothing, so
// code JIT-compiled from the sm_80 PTX must not be launched that way: cuda_info.rs,
// waits_for_previous_grid),
// so a kernel's blocks may be scheduled while the kernel before it on the stream is still running:
// a step's ~200 small kernels then do not each pay the launch and ramp-up gap in full. This call
// must therefore come first in every kernel, before any memory access: `griddepcontrol.wait` holds
// the block until the previous grid has completed and its writes are visible (at once when the
// kernel was launched without the attribute), and `launch_dependents` lets the next kernel start
// its own launch, whose blocks then wait here in turn. The emulator runs launches one after
// another, but fails any launch in which a thread returns without this call.
__device__ __forceinline__ void grid_dependency_sync() {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n\tgriddepcontrol.wait;" ::: "memory");
#endif
#else
    emu::grid_dependency_synced();
#endif
}

// Ends this thread at once (PTX `exit`), however deep in the kernel's calls; nothing after the call
// runs. A producer warpgroup (conv_wgmma.cuh) leaves so after its last copy: had it returned through
// the kernel body instead, the code it passes on the way would be shared with the consumers, and
// ptxas could give that code neither the producer's register count nor theirs (setmaxnreg). The
// thread no longer takes part in __syncthreads, as after a return. The emulator unwinds the thread's
// calls (emu::exit_thread).
[[noreturn]] __device__ __forceinline__ void exit_thread() {
#if defined(__CUDA_ARCH__)
    asm volatile("exit;" ::: "memory");
    __builtin_unreachable();
#else
    emu::exit_thread();
#endif
}

// bar.sync id, threads: a barrier for the first `threads` (a multiple of 32) threads to reach barrier
// `id` (1 to 15; 0 is __syncthreads'), such as a kernel's consumer warps while its producer warp does
// other work (conv_wgmma.cuh). Orders their shared-memory accesses as __syncthreads does.
__device__ __forceinline__ void named_barrier_sync(unsigned id, unsigned threads) {
#if defined(__CUDA_ARCH__)
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
#else
    emu_named_barrier_sync(id, threads);
#endif
}

// 1-D grid-stride loop bounds, in 64-bit so that tensors past 2^31 elements index correctly.
__device__ __forceinline__ unsigned long long global_thread_index() {
    return static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ unsigned long long grid_stride() {
    return static_cast<unsigned long long>(gridDim.x) * blockDim.x;
}

#endif
