// fiber.h: user-space execution contexts for the CUDA threads of a block.
//
// Why not OS threads or ucontext: a 16x16-tiled SGEMM block (256 threads, 33 barrier phases) costs
// about 100 ms with a thread per CUDA thread and 6 ms with swapcontext (one system call per switch,
// for the signal mask); switching stacks in user space costs about 0.5 ms. On x86-64 the switch is a
// few lines of assembly that save the callee-saved registers, the stack pointer and the SSE/x87
// control words (the only state the SysV ABI asks a callee to preserve). Elsewhere, or with
// -DEMU_FIBER_UCONTEXT, ucontext is the portable fallback.
#ifndef RESNET_CUDA_EMU_FIBER_H
#define RESNET_CUDA_EMU_FIBER_H

#include <cstddef>

#if !defined(__x86_64__) && !defined(EMU_FIBER_UCONTEXT)
#define EMU_FIBER_UCONTEXT 1
#endif
#ifdef EMU_FIBER_UCONTEXT
#include <ucontext.h>
#endif

namespace emu {

// A fiber stack: usable bytes [base, base + size), with an inaccessible guard page below `base` so
// that an overflow faults instead of silently corrupting the neighbouring fiber.
struct Stack {
    char* base = nullptr;
    std::size_t size = 0;
};

// Bytes of each fiber stack: RESNET_EMU_STACK_KB, else 64 KiB (256 KiB under AddressSanitizer, whose
// redzones grow frames). Kernels keep small frames, so this is mostly untouched virtual memory.
std::size_t fiber_stack_bytes();
Stack allocate_stack(std::size_t bytes);
void free_stack(Stack& stack);

struct Context {
    void* sp = nullptr;                 // saved stack pointer while suspended
    const void* stack_base = nullptr;   // bounds, for AddressSanitizer's fiber annotations
    std::size_t stack_size = 0;
    void* asan_fake_stack = nullptr;
    bool dirty = false;                 // abandoned mid-run: its stack shadow must be cleared (ASan)
#ifdef EMU_FIBER_UCONTEXT
    ucontext_t uc;
    void (*entry)(void*) = nullptr;
    void* arg = nullptr;
    bool fresh = false;                 // prepared, never entered yet
#endif
};

// Describes the calling OS thread's own stack as a context (the scheduler's).
void context_for_current_thread(Context& ctx);
// Makes `ctx` start `entry(arg)` on `stack` at its first resumption. `entry` must never return: a
// finished fiber switches away with context_switch(..., true).
void context_prepare(Context& ctx, const Stack& stack, void (*entry)(void*), void* arg);
// Suspends the running context into `from` and resumes `to`. `from_finished` says `from` will never
// be resumed (AddressSanitizer then releases its fake stack).
void context_switch(Context& from, Context& to, bool from_finished);
// First call of every fiber entry function (completes AddressSanitizer's switch bookkeeping).
void context_entered();

}  // namespace emu

#endif
