/* tests/cuda_emu/cuda_runtime.h - a CPU emulation of the part of the CUDA runtime that
   textok_cuda.cu uses, so that its kernels can be RUN (and checked with textok_kernels_compare)
   on a machine without a GPU: `make cuda-emu` builds build/test_cuda_emu from textok_cuda.cu
   with the <<<grid, block>>> launches rewritten as emu_launcher(grid, block, kernel)(args).

   What is emulated: every CUDA thread is a fiber (own stack, x86-64 context switch below); the
   threads of a block run cooperatively, one at a time, switching only at __syncthreads and at
   warp shuffles, which are real barriers (block-wide and per warp). Blocks run one after the
   other (1-D blocks, 1-D or 2-D grids). Device memory is host memory (cudaMalloc = malloc); atomicAdd is a plain add (fibers
   are never preempted). It checks what the real runtime checks at a launch (block size 1..1024,
   grid > 0) and what cuBLAS checks of a GEMM's leading dimensions (cublas_v2.h here).

   Hidden host accesses: device memory is mmap'ed and kept PROT_NONE except while a kernel, a
   cudaMemcpy or a GEMM runs, so host code that dereferences device memory directly (what a real
   GPU table would turn into a crash or garbage) faults here, with a backtrace (SIGSEGV handler).
   TEXTOK_EMU_PROTECT=0 turns that off.

   What it cannot show: races that only real concurrency exposes (none intended: every kernel
   writes disjoint outputs or uses atomicAdd), memory-model or occupancy problems, warp
   divergence around shuffles (the emulation would deadlock there - a bug on the GPU too), and
   the device's own transcendental functions (the host's libm runs instead). x86-64 only. */
#ifndef TEXTOK_CUDA_EMU_H
#define TEXTOK_CUDA_EMU_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <functional>
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define __global__
#define __device__
#define __host__
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

typedef enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
               cudaErrorInvalidConfiguration = 9, cudaErrorNoDevice = 100 } cudaError_t;
typedef enum { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
               cudaMemcpyDeviceToDevice = 3 } cudaMemcpyKind;

/* ----- fibers ----- */
struct emu_fiber {
    void    *rsp;
    dim3     tid;
    int      done;
    char    *stack;
};
#define EMU_MAX_THREADS 1024
#define EMU_STACK (64 * 1024)
#define EMU_WARPS (EMU_MAX_THREADS / 32)

struct emu_state {
    emu_fiber            f[EMU_MAX_THREADS];
    char                *stacks;
    void                *sched_rsp;
    emu_fiber           *cur;
    int                  n;                      /* threads in the running block */
    dim3                 block_idx, block_dim, grid_dim;
    std::function<void()> body;
    unsigned             bar_count, bar_gen;     /* __syncthreads */
    unsigned             w_count[EMU_WARPS], w_gen[EMU_WARPS], w_size[EMU_WARPS];
    unsigned char        w_slot[EMU_WARPS][32][8];
    cudaError_t          last;
};
static emu_state emu;

extern "C" void emu_switch(void **save_rsp, void *new_rsp);
__asm__(
    ".text\n"
    ".globl emu_switch\n"
    ".type emu_switch,@function\n"
    "emu_switch:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size emu_switch, .-emu_switch\n");

static void emu_yield(void) { emu_switch(&emu.cur->rsp, emu.sched_rsp); }

static void emu_entry(void)
{
    emu.body();
    emu.cur->done = 1;
    for (;;) emu_yield();   /* the scheduler never resumes a finished fiber */
}

/* a fresh fiber whose first switch "returns" into emu_entry with an ABI-aligned stack */
static void emu_fiber_init(emu_fiber *f)
{
    uintptr_t top = ((uintptr_t)(f->stack + EMU_STACK)) & ~(uintptr_t)15;
    void **sp = (void **)(top - 16);          /* (sp + 1) % 16 == 8 after ret: as after a call */
    sp[0] = (void *)emu_entry;
    sp[1] = 0;
    f->rsp = (void *)(sp - 6);                 /* r15 r14 r13 r12 rbx rbp, all 0 */
    memset(sp - 6, 0, 6 * sizeof(void *));
    f->done = 0;
}

static void emu_open(void);
static void emu_close(void);

static void emu_run(dim3 g, dim3 b, std::function<void()> body)
{
    unsigned bx, by;
    int i;
    if (!emu.stacks) emu.stacks = (char *)malloc((size_t)EMU_MAX_THREADS * EMU_STACK);
    if (g.x == 0 || g.y == 0 || g.y > 65535 || g.z != 1 || b.x == 0 || b.x > EMU_MAX_THREADS || b.y != 1 || b.z != 1 ||
        !emu.stacks) {
        emu.last = cudaErrorInvalidConfiguration;
        return;
    }
    emu_open();
    emu.body = body;
    emu.grid_dim = g;
    emu.block_dim = b;
    emu.n = (int)b.x;
    for (i = 0; i < EMU_WARPS; i++) {
        int lanes = emu.n - 32 * i;
        emu.w_size[i] = lanes > 32 ? 32 : lanes > 0 ? lanes : 0;
    }
    for (by = 0; by < g.y; by++)
    for (bx = 0; bx < g.x; bx++) {
        int left = emu.n;
        emu.block_idx = dim3(bx, by, 0);
        emu.bar_count = emu.bar_gen = 0;
        memset(emu.w_count, 0, sizeof emu.w_count);
        memset(emu.w_gen, 0, sizeof emu.w_gen);
        for (i = 0; i < emu.n; i++) {
            emu.f[i].stack = emu.stacks + (size_t)i * EMU_STACK;
            emu.f[i].tid = dim3((unsigned)i, 0, 0);
            emu_fiber_init(&emu.f[i]);
        }
        while (left > 0) {
            int progressed = 0;
            for (i = 0; i < emu.n; i++) {
                if (emu.f[i].done) continue;
                emu.cur = &emu.f[i];
                emu_switch(&emu.sched_rsp, emu.f[i].rsp);
                if (emu.f[i].done) { left--; progressed = 1; }
            }
            (void)progressed;
        }
    }
    emu_close();
}

template <class F> struct emu_launch_t {
    dim3 g, b;
    F f;
    template <class... A> void operator()(A... a) { F fn = f; emu_run(g, b, [=]() { fn(a...); }); }
};
template <class F> static emu_launch_t<F> emu_launcher(dim3 g, dim3 b, F f)
{
    emu_launch_t<F> l;
    l.g = g; l.b = b; l.f = f;
    return l;
}

#define threadIdx (emu.cur->tid)
#define blockIdx  (emu.block_idx)
#define blockDim  (emu.block_dim)
#define gridDim   (emu.grid_dim)

/* __syncthreads: every thread of the block arrives, then all go on */
static void __syncthreads(void)
{
    unsigned gen = emu.bar_gen;
    if (++emu.bar_count == (unsigned)emu.n) { emu.bar_count = 0; emu.bar_gen++; return; }
    while (emu.bar_gen == gen) emu_yield();
}

static void emu_warp_barrier(unsigned w)
{
    unsigned gen = emu.w_gen[w];
    if (++emu.w_count[w] == emu.w_size[w]) { emu.w_count[w] = 0; emu.w_gen[w]++; return; }
    while (emu.w_gen[w] == gen) emu_yield();
}

/* every lane publishes v, waits for its warp, reads lane ^ o's, waits again (slots reused) */
template <class T> static T __shfl_xor_sync(unsigned mask, T v, int o)
{
    const unsigned t = threadIdx.x, w = t / 32, lane = t % 32;
    T r;
    (void)mask;
    memcpy(emu.w_slot[w][lane], &v, sizeof v);
    emu_warp_barrier(w);
    memcpy(&r, emu.w_slot[w][(lane ^ (unsigned)o) % 32], sizeof r);
    emu_warp_barrier(w);
    return r;
}

static float atomicAdd(float *p, float v) { float old = *p; *p = old + v; return old; }

/* ----- device memory: a registry of mappings, open (RW) only inside the "device" ----- */
#define EMU_MAX_ALLOCS 65536
static struct { void *p; size_t len; } emu_alloc[EMU_MAX_ALLOCS];
static int emu_n_alloc = -1;   /* -1: not initialised */
static int emu_protect = 1, emu_depth = 0;

static void emu_segv(int sig, siginfo_t *si, void *ctx)
{
    void *bt[64];
    int i, n;
    (void)ctx;
    for (i = 0; i < emu_n_alloc; i++)
        if ((char *)si->si_addr >= (char *)emu_alloc[i].p && (char *)si->si_addr < (char *)emu_alloc[i].p + emu_alloc[i].len) {
            fprintf(stderr, "cuda-emu: HOST ACCESS TO DEVICE MEMORY at %p (allocation %p, %zu bytes); backtrace:\n",
                    si->si_addr, emu_alloc[i].p, emu_alloc[i].len);
            n = backtrace(bt, 64);
            backtrace_symbols_fd(bt, n, 2);
            _exit(3);
        }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void emu_mem_init(void)
{
    const char *e = getenv("TEXTOK_EMU_PROTECT");
    struct sigaction sa;
    if (emu_n_alloc >= 0) return;
    emu_n_alloc = 0;
    emu_protect = !(e && *e == '0');
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = emu_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
}

static void emu_set_all(int prot)
{
    int i;
    if (!emu_protect) return;
    for (i = 0; i < emu_n_alloc; i++) mprotect(emu_alloc[i].p, emu_alloc[i].len, prot);
}
/* enter / leave the device: nested calls (a GEMM inside nothing, a launch) count */
static void emu_open(void) { emu_mem_init(); if (emu_depth++ == 0) emu_set_all(PROT_READ | PROT_WRITE); }
static void emu_close(void) { if (--emu_depth == 0) emu_set_all(PROT_NONE); }

/* ----- runtime API ----- */
static cudaError_t cudaGetLastError(void) { cudaError_t e = emu.last; emu.last = cudaSuccess; return e; }
static const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulated)";
    case cudaErrorMemoryAllocation: return "out of memory (emulated)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulated)";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (emulated)";
    }
    return "unknown error (emulated)";
}
static cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
static cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
static cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
static cudaError_t cudaMalloc(void **p, size_t n)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), len = (n + page - 1) / page * page;
    void *m;
    emu_mem_init();
    *p = NULL;
    if (emu_n_alloc >= EMU_MAX_ALLOCS) return emu.last = cudaErrorMemoryAllocation;
    m = mmap(NULL, len ? len : page, emu_protect && emu_depth == 0 ? PROT_NONE : PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return emu.last = cudaErrorMemoryAllocation;
    emu_alloc[emu_n_alloc].p = m;
    emu_alloc[emu_n_alloc].len = len ? len : page;
    emu_n_alloc++;
    *p = m;
    return cudaSuccess;
}
static cudaError_t cudaFree(void *p)
{
    int i;
    emu_mem_init();
    for (i = 0; i < emu_n_alloc; i++)
        if (emu_alloc[i].p == p) {
            munmap(p, emu_alloc[i].len);
            emu_alloc[i] = emu_alloc[--emu_n_alloc];
            return cudaSuccess;
        }
    return emu.last = cudaErrorInvalidValue;   /* not from cudaMalloc */
}
static cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    (void)kind;
    emu_open();
    memmove(dst, src, n);
    emu_close();
    return cudaSuccess;
}
#endif
