// registry.h: kernels by name, filled by EMU_REGISTER's static initializers before main().
#ifndef RESNET_CUDA_EMU_REGISTRY_INTERNAL_H
#define RESNET_CUDA_EMU_REGISTRY_INTERNAL_H

#include <cstddef>
#include <string_view>

#include "../cuda_emu.h"

namespace emu {

struct KernelEntry {
    const char* name;
    Trampoline run;
    unsigned num_params;
    const unsigned* param_sizes;
};

// Null when no kernel of that name was registered.
const KernelEntry* find_kernel(std::string_view name);
std::size_t kernel_count();
// The i-th kernel in name order, or null past the end.
const KernelEntry* kernel_at(std::size_t i);

}  // namespace emu

#endif
