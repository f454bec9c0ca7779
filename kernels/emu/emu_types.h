// emu_types.h: CUDA's function and variable qualifiers and its small vector types, for host C++.
#ifndef RESNET_CUDA_EMU_TYPES_H
#define RESNET_CUDA_EMU_TYPES_H

#include <cstddef>
#include <cstdint>

// Host C++ has one address space, so the space qualifiers vanish. `__device__` does not become
// `inline`: that would break `__host__ __device__` (duplicate inline). Helpers defined in headers must
// therefore be `inline`, `__forceinline__` or templates, which nvcc accepts as well.
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __grid_constant__
// __restrict__ is understood by g++ as it is. __noinline__ is not defined: libstdc++ spells its own
// attribute `__attribute__((__noinline__))`, which such a macro would break.

// Static shared memory: one instance per OS worker thread. A worker runs one block at a time from its
// first thread to its last (all threads of a block are fibers on that worker), so during a block the
// variable belongs to that block alone, exactly CUDA's scope. Like CUDA, its content at block start is
// undefined (it holds whatever the previous block on this worker left). `__thread` rather than
// `thread_local`: it refuses types that need a constructor (as CUDA does for __shared__) and is
// accessed without a TLS wrapper call. `extern __shared__` becomes `extern static __thread`, which does
// not compile: use dynamic_shared_memory<T>() from common.cuh.
#define __shared__ static __thread

struct __align__(4) char4 { signed char x, y, z, w; };
struct __align__(4) uchar4 { unsigned char x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned int x, y; };
struct uint3 { unsigned int x, y, z; };
struct __align__(16) uint4 { unsigned int x, y, z, w; };
struct __align__(8) float2 { float x, y; };
struct float3 { float x, y, z; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(16) double2 { double x, y; };
struct __align__(16) longlong2 { long long x, y; };

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline double2 make_double2(double x, double y) { return double2{x, y}; }

constexpr int warpSize = 32;

#endif
