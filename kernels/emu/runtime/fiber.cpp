// fiber.cpp: stack allocation and the context switch (see fiber.h for why it is hand-written).
#include "fiber.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#endif

namespace emu {

std::size_t fiber_stack_bytes() {
    static const std::size_t bytes = [] {
#ifdef EMU_ASAN
        std::size_t kib = 256;
#else
        std::size_t kib = 64;
#endif
        if (const char* env = std::getenv("RESNET_EMU_STACK_KB")) {
            long v = std::atol(env);
            if (v >= 16) kib = static_cast<std::size_t>(v);
        }
        return kib * 1024;
    }();
    return bytes;
}

static std::size_t page_size() {
    static const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    return page;
}

Stack allocate_stack(std::size_t bytes) {
    const std::size_t page = page_size();
    bytes = (bytes + page - 1) / page * page;
    // MAP_NORESERVE: only the pages a fiber touches are ever backed.
    void* mem = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
    if (mem == MAP_FAILED || mprotect(mem, page, PROT_NONE) != 0) {
        std::fprintf(stderr, "resnet-cuda emulator: cannot map a %zu-byte fiber stack\n", bytes);
        std::abort();
    }
    Stack s;
    s.base = static_cast<char*>(mem) + page;
    s.size = bytes;
    return s;
}

void free_stack(Stack& stack) {
    if (stack.base) munmap(stack.base - page_size(), stack.size + page_size());
    stack = Stack{};
}

void context_for_current_thread(Context& ctx) {
#ifdef EMU_ASAN
    // Only AddressSanitizer needs the bounds (switching back to this stack), and finding them can
    // mean parsing /proc/self/maps, so other builds skip it.
    pthread_attr_t attr;
    void* addr = nullptr;
    std::size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &addr, &size);
        pthread_attr_destroy(&attr);
    }
    ctx.stack_base = addr;
    ctx.stack_size = size;
#else
    (void)ctx;
#endif
}

static void clear_stack_shadow(Context& ctx, const Stack& stack) {
#ifdef EMU_ASAN
    // Frames of a fiber abandoned mid-run (a failed launch) left their redzones poisoned; normally
    // only the top few KiB, where the fiber's own entry frames live, can hold stale poison.
    const std::size_t top = ctx.dirty ? stack.size : (stack.size < 8192 ? stack.size : 8192);
    __asan_unpoison_memory_region(stack.base + stack.size - top, top);
#endif
    (void)stack;
    ctx.dirty = false;
}

#ifndef EMU_FIBER_UCONTEXT

extern "C" void emu_context_switch_raw(void** save_sp, void* new_sp);
extern "C" void emu_context_start();

// emu_context_switch_raw(save_sp, new_sp): push the callee-saved registers and the MXCSR / x87
// control words, store rsp into *save_sp, load new_sp, pop the same set and return into the resumed
// context. emu_context_start is the first "return address" of a fresh context: r12 holds the entry
// function and r13 its argument (put there by context_prepare), and rsp is 16-byte aligned.
asm(R"(
    .text
    .globl emu_context_switch_raw
    .type emu_context_switch_raw, @function
    .p2align 4
emu_context_switch_raw:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_context_switch_raw, .-emu_context_switch_raw

    .globl emu_context_start
    .type emu_context_start, @function
    .p2align 4
emu_context_start:
    movq %r13, %rdi
    callq *%r12
    ud2
    .size emu_context_start, .-emu_context_start
)");

void context_prepare(Context& ctx, const Stack& stack, void (*entry)(void*), void* arg) {
    clear_stack_shadow(ctx, stack);
    // The frame emu_context_switch_raw pops, lowest address first: control words, r15, r14, r13,
    // r12, rbx, rbp, return address. After the pops and the `ret`, rsp = frame + 64, which must be
    // 16-byte aligned so that the `call` in emu_context_start leaves the ABI's alignment.
    auto top = reinterpret_cast<std::uintptr_t>(stack.base + stack.size) & ~std::uintptr_t{15};
    auto* frame = reinterpret_cast<std::uint64_t*>(top - 80);
    const std::uint64_t mxcsr_default = 0x1f80;  // all exceptions masked, round to nearest
    const std::uint64_t x87_cw_default = 0x037f; // the same for x87, extended precision
    frame[0] = mxcsr_default | (x87_cw_default << 32);
    frame[1] = 0;  // r15
    frame[2] = 0;  // r14
    frame[3] = reinterpret_cast<std::uint64_t>(arg);    // r13
    frame[4] = reinterpret_cast<std::uint64_t>(entry);  // r12
    frame[5] = 0;  // rbx
    frame[6] = 0;  // rbp: ends frame-pointer walks here
    frame[7] = reinterpret_cast<std::uint64_t>(&emu_context_start);
    ctx.sp = frame;
    ctx.stack_base = stack.base;
    ctx.stack_size = stack.size;
    ctx.asan_fake_stack = nullptr;
}

static inline void raw_switch(Context& from, Context& to) { emu_context_switch_raw(&from.sp, to.sp); }

#else  // EMU_FIBER_UCONTEXT

// makecontext passes only int arguments, so a fresh context finds its entry through this pointer,
// set just before the first switch into it.
static thread_local Context* starting_context = nullptr;

static void ucontext_entry() {
    Context* ctx = starting_context;
    ctx->entry(ctx->arg);
    std::abort();  // entries never return
}

void context_prepare(Context& ctx, const Stack& stack, void (*entry)(void*), void* arg) {
    clear_stack_shadow(ctx, stack);
    getcontext(&ctx.uc);
    ctx.uc.uc_stack.ss_sp = stack.base;
    ctx.uc.uc_stack.ss_size = stack.size;
    ctx.uc.uc_link = nullptr;
    ctx.entry = entry;
    ctx.arg = arg;
    ctx.fresh = true;
    makecontext(&ctx.uc, ucontext_entry, 0);
    ctx.stack_base = stack.base;
    ctx.stack_size = stack.size;
    ctx.asan_fake_stack = nullptr;
}

static inline void raw_switch(Context& from, Context& to) {
    if (to.fresh) {
        starting_context = &to;
        to.fresh = false;
    }
    swapcontext(&from.uc, &to.uc);
}

#endif

void context_switch(Context& from, Context& to, bool from_finished) {
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(from_finished ? nullptr : &from.asan_fake_stack, to.stack_base, to.stack_size);
#else
    (void)from_finished;
#endif
    raw_switch(from, to);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(from.asan_fake_stack, nullptr, nullptr);
#endif
}

void context_entered() {
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

}  // namespace emu
