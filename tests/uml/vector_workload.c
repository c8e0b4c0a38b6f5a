/*
 * vector_workload.c -- do guest tasks keep their complete vector registers across task switches?
 *
 * THREADS threads of one process (in UML: one host process, so every switch between them moves
 * the register state through the kernel's save/restore) each, ROUNDS times:
 *   - load a pattern of its own into every vector register the CPU has (zmm0-31 with AVX-512,
 *     else ymm0-15, else xmm0-15), yield with a raw syscall so another thread runs, store the
 *     registers and compare them with the pattern;
 *   - memcpy a buffer of a varying size and alignment (glibc picks AVX/AVX-512 copies on these
 *     CPUs, using ymm16-31 where it can) and check every byte.
 * Prints "rounds R threads T isa I mismatches M copies C" and exits 0 only when M is 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define THREADS 8
#define ROUNDS 300
#define COPY_MAX (64 * 1024)

static int isa;  /* 2 AVX-512, 1 AVX, 0 SSE */
static long mismatches, copies;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void yield_raw(void)
{
    long rax = SYS_sched_yield;
    __asm__ volatile("syscall" : "+a"(rax) : : "rcx", "r11", "memory");
}

/* Load 2048 bytes (32 x 64) into the registers, yield, store them back. Everything between the
 * load and the store is inline assembly: no compiler or libc code can touch the registers. */
__attribute__((target("avx512f"))) static void roundtrip_avx512(const uint8_t *in, uint8_t *out)
{
#define L(i) "vmovdqu64 " #i "*64(%[in]), %%zmm" #i "\n\t"
#define S(i) "vmovdqu64 %%zmm" #i ", " #i "*64(%[out])\n\t"
    __asm__ volatile(
        L(0) L(1) L(2) L(3) L(4) L(5) L(6) L(7) L(8) L(9) L(10) L(11) L(12) L(13) L(14) L(15)
        L(16) L(17) L(18) L(19) L(20) L(21) L(22) L(23) L(24) L(25) L(26) L(27) L(28) L(29)
        L(30) L(31)
        "mov %[nr], %%rax\n\tsyscall\n\t"
        S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9) S(10) S(11) S(12) S(13) S(14) S(15)
        S(16) S(17) S(18) S(19) S(20) S(21) S(22) S(23) S(24) S(25) S(26) S(27) S(28) S(29)
        S(30) S(31)
        : : [in] "r"(in), [out] "r"(out), [nr] "i"(SYS_sched_yield)
        : "rax", "rcx", "r11", "memory");
#undef L
#undef S
}

__attribute__((target("avx"))) static void roundtrip_avx(const uint8_t *in, uint8_t *out)
{
#define L(i) "vmovdqu " #i "*32(%[in]), %%ymm" #i "\n\t"
#define S(i) "vmovdqu %%ymm" #i ", " #i "*32(%[out])\n\t"
    __asm__ volatile(
        L(0) L(1) L(2) L(3) L(4) L(5) L(6) L(7) L(8) L(9) L(10) L(11) L(12) L(13) L(14) L(15)
        "mov %[nr], %%rax\n\tsyscall\n\t"
        S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9) S(10) S(11) S(12) S(13) S(14) S(15)
        : : [in] "r"(in), [out] "r"(out), [nr] "i"(SYS_sched_yield)
        : "rax", "rcx", "r11", "memory");
#undef L
#undef S
}

static void roundtrip_sse(const uint8_t *in, uint8_t *out)
{
#define L(i) "movdqu " #i "*16(%[in]), %%xmm" #i "\n\t"
#define S(i) "movdqu %%xmm" #i ", " #i "*16(%[out])\n\t"
    __asm__ volatile(
        L(0) L(1) L(2) L(3) L(4) L(5) L(6) L(7) L(8) L(9) L(10) L(11) L(12) L(13) L(14) L(15)
        "mov %[nr], %%rax\n\tsyscall\n\t"
        S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9) S(10) S(11) S(12) S(13) S(14) S(15)
        : : [in] "r"(in), [out] "r"(out), [nr] "i"(SYS_sched_yield)
        : "rax", "rcx", "r11", "memory");
#undef L
#undef S
}

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    static const size_t bytes[] = { 256, 512, 2048 };
    uint8_t in[2048], out[2048];
    uint8_t *src = malloc(COPY_MAX + 64), *dst = malloc(COPY_MAX + 64);
    long bad = 0, done = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t i = 0; i < sizeof in; i++)
            in[i] = (uint8_t)rand_r(&seed);
        memset(out, 0, sizeof out);
        if (isa == 2) roundtrip_avx512(in, out);
        else if (isa == 1) roundtrip_avx(in, out);
        else roundtrip_sse(in, out);
        if (memcmp(in, out, bytes[isa]))
            bad++;

        size_t len = (size_t)rand_r(&seed) % COPY_MAX + 1;
        size_t so = (size_t)rand_r(&seed) % 64, doff = (size_t)rand_r(&seed) % 64;
        for (size_t i = 0; i < len; i++)
            src[so + i] = (uint8_t)(i * 131u + seed);
        memcpy(dst + doff, src + so, len);
        yield_raw();
        if (memcmp(dst + doff, src + so, len))
            bad++;
        done++;
    }
    free(src);
    free(dst);
    pthread_mutex_lock(&mu);
    mismatches += bad;
    copies += done;
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(void)
{
    __builtin_cpu_init();
    isa = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx") ? 1 : 0;
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    static const char *names[] = { "sse", "avx", "avx512" };
    printf("rounds %d threads %d isa %s mismatches %ld copies %ld\n", ROUNDS, THREADS, names[isa],
           mismatches, copies);
    return mismatches != 0;
}
