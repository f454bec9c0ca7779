// registry.cpp: the name -> trampoline table behind emu_launch.
#include "registry.h"

#include <map>
#include <mutex>
#include <string>

namespace emu {

namespace {
struct Registry {
    std::mutex mu;
    std::map<std::string, KernelEntry, std::less<>> by_name;
};

// Built on first use and never destroyed: registrations run during other objects' static
// initialization, in an order the linker chooses.
Registry& registry() {
    static Registry* r = new Registry;
    return *r;
}
}  // namespace

int register_kernel(const char* name, Trampoline run, unsigned num_params, const unsigned* param_sizes) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    // Two kernels of one name cannot both link (extern "C"), so the first registration stands.
    r.by_name.emplace(name, KernelEntry{name, run, num_params, param_sizes});
    return 0;
}

const KernelEntry* find_kernel(std::string_view name) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.by_name.find(name);
    return it == r.by_name.end() ? nullptr : &it->second;
}

std::size_t kernel_count() {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.by_name.size();
}

const KernelEntry* kernel_at(std::size_t i) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    if (i >= r.by_name.size()) return nullptr;
    auto it = r.by_name.begin();
    std::advance(it, static_cast<long>(i));
    return &it->second;
}

}  // namespace emu
