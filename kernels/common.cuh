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

// 1-D grid-stride loop bounds, in 64-bit so that tensors past 2^31 elements index correctly.
__device__ __forceinline__ unsigned long long global_thread_index() {
    return static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ unsigned long long grid_stride() {
    return static_cast<unsigned long long>(gridDim.x) * blockDim.x;
}

#endif
