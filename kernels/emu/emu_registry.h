// emu_registry.h: EMU_REGISTER(kernel) makes an `extern "C"` kernel launchable by name through
// emu_launch(), with the same `void** params` array cuLaunchKernel takes.
//
// The registration is a static initializer in the kernel's object file; build.rs links the emulator
// library with +whole-archive so that the linker keeps those objects although nothing references them.
// Under nvcc, common.cuh defines EMU_REGISTER as nothing.
#ifndef RESNET_CUDA_EMU_REGISTRY_H
#define RESNET_CUDA_EMU_REGISTRY_H

#include <cstddef>
#include <type_traits>
#include <utility>

namespace emu {

// Runs the kernel body for the current CUDA thread, unpacking `params` like cuLaunchKernel does.
using Trampoline = void (*)(void** params);

// Adds a kernel to the registry; returns a dummy so that it can initialize a static.
// `param_sizes` (static storage) holds the byte size of each of the `num_params` parameters: what a
// recorded launch (a captured graph) must copy of each argument to replay it later.
int register_kernel(const char* name, Trampoline run, unsigned num_params, const unsigned* param_sizes);

template <class... Args, std::size_t... I>
inline void call_unpacked(void (*kernel)(Args...), void** params, std::index_sequence<I...>) {
    // params[i] points at argument i; each thread receives its own copy, as CUDA's parameter space does.
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<Args>>*>(params[I])...);
}

template <class... Args>
constexpr unsigned arity(void (*)(Args...)) { return sizeof...(Args); }

template <class... Args>
struct ParamSizes {
    static constexpr unsigned value[sizeof...(Args) + 1] = {static_cast<unsigned>(sizeof(Args))..., 0u};
};

template <class... Args>
constexpr const unsigned* param_sizes(void (*)(Args...)) { return ParamSizes<Args...>::value; }

template <class... Args>
inline void call_with_params(void (*kernel)(Args...), void** params) {
    call_unpacked(kernel, params, std::index_sequence_for<Args...>{});
}

template <auto Kernel>
void trampoline(void** params) { call_with_params(Kernel, params); }

}  // namespace emu

#define EMU_REGISTER(kernel)                                                                          \
    [[maybe_unused]] static const int emu_registered_##kernel =                                       \
        ::emu::register_kernel(#kernel, &::emu::trampoline<&kernel>, ::emu::arity(&kernel),    \
                               ::emu::param_sizes(&kernel))

#endif
