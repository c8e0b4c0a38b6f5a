/*
 * xstate_driver.c -- checks build/uml/xstate_shim.c's buffer logic against this host's kernel.
 * Run with LD_PRELOAD=<the shim>; prints one line per check and "ok N L" at the end (exit 0),
 * or "FAIL: ..." (exit 1). N is the host's user XSAVE area (what a full GETREGSET reports), L the
 * short buffer UML would pass (576: the legacy area and the XSAVE header, so every AVX and
 * AVX-512 byte is beyond it -- the bytes a shim that kept only the caller's part would lose).
 *
 * It plays UML: one stopped host process P runs two "guest tasks" T1 and T2, each with its own
 * short register buffer, and states are moved in and out of P through the shim (libc ptrace)
 * while the truth is read and written with the raw syscall.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHORT 576
#define BIG (64 * 1024)
#define XMM_OFF 160   /* xmm0-15 in the legacy area */
#define XMM_LEN 256
#define HDR_OFF 512   /* XSTATE_BV */

static size_t n;                       /* host area */
struct region { size_t off, len; int bit; };
static struct region regions[8];       /* the vector components this CPU has, beyond SHORT */
static int nregions;

static long raw(long req, pid_t pid, void *buf, size_t len)
{
    struct iovec iov = { buf, len };
    long r = syscall(SYS_ptrace, req, pid, (void *)NT_X86_XSTATE, &iov);
    return r < 0 ? -errno : (long)iov.iov_len;
}

static long shim(long req, pid_t pid, void *buf, size_t *len)
{
    struct iovec iov = { buf, *len };
    long r = ptrace(req, pid, (void *)NT_X86_XSTATE, &iov);
    *len = iov.iov_len;
    return r < 0 ? -errno : 0;
}

static pid_t child;  /* killed on failure: a stopped tracee would hold the caller's pipes open */

static void fail(const char *what)
{
    printf("FAIL: %s\n", what);
    if (child > 0)
        kill(child, SIGKILL);
    exit(1);
}

static void fill(unsigned char *state, unsigned seed)
{
    srand(seed);
    for (size_t i = 0; i < XMM_LEN; i++)
        state[XMM_OFF + i] = rand();
    uint64_t bv;
    memcpy(&bv, state + HDR_OFF, 8);
    bv |= 2;  /* SSE */
    for (int r = 0; r < nregions; r++) {
        for (size_t i = 0; i < regions[r].len; i++)
            state[regions[r].off + i] = rand();
        bv |= 1ull << regions[r].bit;
    }
    memcpy(state + HDR_OFF, &bv, 8);
}

/* Same vector registers (xmm, and every component beyond SHORT)? */
static int same(const unsigned char *a, const unsigned char *b)
{
    if (memcmp(a + XMM_OFF, b + XMM_OFF, XMM_LEN))
        return 0;
    for (int r = 0; r < nregions; r++)
        if (memcmp(a + regions[r].off, b + regions[r].off, regions[r].len))
            return 0;
    return 1;
}

int main(void)
{
    static unsigned char truth[BIG], s1[BIG], s2[BIG], t1[SHORT], t2[SHORT], t3[SHORT];
    unsigned eax, ebx, ecx, edx;
    uint32_t xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    uint64_t xcr0 = ((uint64_t)xcr0_hi << 32) | xcr0_lo;
    /* 2: AVX upper halves; 5-7: AVX-512 opmask, upper zmm0-15, zmm16-31. */
    int bits[] = { 2, 5, 6, 7 };
    for (unsigned i = 0; i < sizeof bits / sizeof *bits; i++) {
        if (!(xcr0 & (1ull << bits[i])))
            continue;
        __cpuid_count(0xd, bits[i], eax, ebx, ecx, edx);
        regions[nregions++] = (struct region){ ebx, eax, bits[i] };
    }
    if (nregions == 0)
        fail("this CPU has no AVX state: nothing lies beyond the short buffer to check");

    pid_t p = fork();
    if (p == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        for (;;)
            raise(SIGSTOP);
    }
    child = p;
    waitpid(p, NULL, 0);

    long got = raw(PTRACE_GETREGSET, p, truth, BIG);
    if (got <= SHORT)
        fail("the host's XSAVE area is not larger than the short buffer");
    n = (size_t)got;
    printf("host XSAVE area %zu bytes, short buffer %d, %d vector components beyond it\n",
           n, SHORT, nregions);

    /* The failure UML meets: the host refuses a short SET. */
    memcpy(t1, truth, SHORT);
    if (raw(PTRACE_SETREGSET, p, t1, SHORT) != -EFAULT)
        fail("a raw short SETREGSET was not refused with EFAULT");
    printf("raw short SET: EFAULT (the host's rule)\n");

    memcpy(s1, truth, n); fill(s1, 1);
    memcpy(s2, truth, n); fill(s2, 2);
    size_t len;

    /* T1 is saved from P, then T2. */
    if (raw(PTRACE_SETREGSET, p, s1, n) < 0) fail("raw full SET s1");
    len = SHORT;
    if (shim(PTRACE_GETREGSET, p, t1, &len) || len != SHORT) fail("short GET t1");
    if (memcmp(t1, s1, SHORT)) fail("short GET t1 does not hold the first bytes of the state");
    if (raw(PTRACE_SETREGSET, p, s2, n) < 0) fail("raw full SET s2");
    len = SHORT;
    if (shim(PTRACE_GETREGSET, p, t2, &len) || len != SHORT) fail("short GET t2");
    printf("short GETs: ok\n");

    /* Switch back to T1: its complete state, not T2's upper registers. */
    len = SHORT;
    if (shim(PTRACE_SETREGSET, p, t1, &len)) fail("short SET t1 through the shim failed");
    raw(PTRACE_GETREGSET, p, truth, n);
    if (!same(truth, s1)) fail("after SET t1 the process does not hold T1's complete state");
    /* T2, with a register UML changed inside its short buffer. */
    t2[XMM_OFF] ^= 0xff;
    s2[XMM_OFF] ^= 0xff;
    len = SHORT;
    if (shim(PTRACE_SETREGSET, p, t2, &len)) fail("short SET t2 through the shim failed");
    raw(PTRACE_GETREGSET, p, truth, n);
    if (!same(truth, s2)) fail("after SET t2 the process does not hold T2's state with its change");
    printf("short SETs restore each task's complete state: ok\n");

    /* A buffer never read (a copied task): its bytes, the process's current bytes beyond. */
    memcpy(t3, t1, SHORT);
    len = SHORT;
    if (shim(PTRACE_SETREGSET, p, t3, &len)) fail("short SET of an unread buffer failed");
    raw(PTRACE_GETREGSET, p, truth, n);
    if (memcmp(truth + XMM_OFF, s1 + XMM_OFF, XMM_LEN)) fail("unread buffer: its own xmm lost");
    for (int r = 0; r < nregions; r++)
        if (memcmp(truth + regions[r].off, s2 + regions[r].off, regions[r].len))
            fail("unread buffer: the process's bytes beyond it were not kept");
    printf("short SET of an unread buffer: ok\n");

    /* Full-size buffers pass straight through. */
    static unsigned char full[BIG];
    len = BIG;
    if (shim(PTRACE_GETREGSET, p, full, &len) || len != n) fail("full GET through the shim");
    if (!same(full, truth)) fail("full GET through the shim differs from the raw one");
    printf("full-size GET passes through: ok\n");

    kill(p, SIGKILL);
    printf("ok %zu %d\n", n, SHORT);
    return 0;
}
