/*
 * xstate_shim.c -- LD_PRELOAD shim for linux.uml: full-size XSTATE buffers for ptrace.
 *
 * Why: user-mode-linux keeps each guest task's FPU/vector registers in a buffer of a size fixed
 * when the UML kernel was built (Debian's 6.1: 2696 bytes, enough for x87/SSE/AVX/AVX-512/PKRU)
 * and moves them between guest tasks and the host process that runs them with
 * PTRACE_GETREGSET / PTRACE_SETREGSET on NT_X86_XSTATE. The host kernel answers a short GET
 * without complaint (it fills what fits), but accepts a SET only when the buffer holds its whole
 * user XSAVE area (fpu_user_cfg.max_size: the regset's length after min()); anything else is
 * EFAULT. On CPUs with AMX (Intel Sapphire Rapids and later: AWS m7i/c7i/r7i) that area is about
 * 11 KB, so the first task switch fails ("userspace - ptrace set fp regs failed, errno = 14")
 * and init dies.
 *
 * What: for these two requests only, when the caller's buffer is shorter than the host's area,
 * the shim does the host call with a full-size buffer:
 *   GET: read the whole area into a shadow kept for the caller's buffer (one per guest task:
 *        UML passes the task's own register buffer), hand the caller its first bytes.
 *   SET: start from that shadow (the bytes beyond the caller's length as they were when this
 *        task was saved), lay the caller's bytes over it, write the whole area.
 * So each guest task gets back exactly the complete state it left, including every byte UML's
 * buffer cannot hold. A SET of a buffer never read through a GET (a task UML created by copying
 * another's registers, or its exec template) takes the bytes beyond its length from the target
 * process's current state: a valid state either way, and those bytes are only AMX tile state,
 * which UML guests cannot enable (UML has no ARCH_REQ_XCOMP_PERM).
 * Every other request, and any XSTATE request whose buffer is already full-size, goes straight
 * to libc: on a host whose area fits UML's buffer the shim changes nothing.
 *
 * Test knobs (used by cnivpc's tests; nothing else sets them):
 *   CNL_UML_XSTATE_SHIM=off        pass everything through (to show the failure it prevents)
 *   CNL_UML_XSTATE_FAKE_EFAULT=1   every XSTATE SET fails with EFAULT, as a short SET does on an
 *                                  AMX host, so a machine without AMX can watch UML die of it
 *
 * Built by build/uml/run-in-uml with the host's C compiler (cc -shared -fPIC ... -ldl).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

/* Generous: the largest x86 user XSAVE area today is ~11 KB (AMX); the kernel min()s the length
 * of a GET to its real size and reports it back in iov_len. */
#define PROBE_BYTES (64 * 1024)
/* Shadows are per guest task; UML's tasks live in slab memory whose addresses get reused, so the
 * table stays small. If it ever fills, it is emptied: only bytes beyond UML's buffer (AMX tile
 * state, unusable in a UML guest) fall back to the process's current state. */
#define MAX_SHADOWS 4096
#define TABLE_SLOTS (2 * MAX_SHADOWS)

typedef long (*ptrace_fn)(enum __ptrace_request, ...);

struct shadow {
    const void *key;   /* the caller's buffer: identifies the guest task */
    unsigned char *bytes;
};

static size_t host_size;              /* the host's full user XSAVE area, learnt once */
static struct shadow shadows[TABLE_SLOTS];
static size_t shadow_count;
static int mode = -1;                 /* 0 off, 1 on, 2 fake EFAULT; read from env once */

static long raw_ptrace(long request, pid_t pid, void *addr, void *data)
{
    return syscall(SYS_ptrace, request, pid, addr, data);
}

static int shim_mode(void)
{
    if (mode < 0) {
        const char *off = getenv("CNL_UML_XSTATE_SHIM");
        const char *fake = getenv("CNL_UML_XSTATE_FAKE_EFAULT");
        mode = (off && strcmp(off, "off") == 0) ? 0 : (fake && strcmp(fake, "1") == 0) ? 2 : 1;
    }
    return mode;
}

/* Read the whole area of pid into buf (host_size long, PROBE_BYTES before it is known); learns
 * host_size on first use. */
static int get_full(pid_t pid, unsigned char *buf)
{
    struct iovec iov = { buf, host_size ? host_size : PROBE_BYTES };
    if (raw_ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) < 0)
        return -1;
    if (host_size == 0)
        host_size = iov.iov_len;
    return 0;
}

/* Open addressing on the buffer's address; every guest syscall does one GET and one SET, so the
 * lookup must not scan. Emptied when half full (see MAX_SHADOWS). */
static struct shadow *find_shadow(const void *key, int create)
{
    size_t i = ((uintptr_t)key >> 4) * 2654435761u % TABLE_SLOTS;
    for (;; i = (i + 1) % TABLE_SLOTS) {
        if (shadows[i].key == key)
            return &shadows[i];
        if (shadows[i].key == NULL)
            break;
    }
    if (!create)
        return NULL;
    if (shadow_count == MAX_SHADOWS) {
        for (size_t j = 0; j < TABLE_SLOTS; j++) {
            free(shadows[j].bytes);
            shadows[j].key = NULL;
            shadows[j].bytes = NULL;
        }
        shadow_count = 0;
        return find_shadow(key, create);
    }
    unsigned char *bytes = malloc(host_size);
    if (bytes == NULL)
        return NULL;
    shadows[i].key = key;
    shadows[i].bytes = bytes;
    shadow_count++;
    return &shadows[i];
}

static long xstate_get(pid_t pid, struct iovec *iov)
{
    struct shadow *s = find_shadow(iov->iov_base, 1);
    if (s == NULL) {
        errno = ENOMEM;
        return -1;
    }
    if (get_full(pid, s->bytes) < 0)
        return -1;
    if (iov->iov_len > host_size)
        iov->iov_len = host_size;  /* what the kernel itself reports for a long buffer */
    memcpy(iov->iov_base, s->bytes, iov->iov_len);
    return 0;
}

static long xstate_set(pid_t pid, struct iovec *iov)
{
    struct shadow *s = find_shadow(iov->iov_base, 0);
    unsigned char *full = s ? s->bytes : malloc(host_size);
    long rc;
    if (full == NULL) {
        errno = ENOMEM;
        return -1;
    }
    if (s == NULL && get_full(pid, full) < 0) {
        free(full);
        return -1;
    }
    memcpy(full, iov->iov_base, iov->iov_len);
    struct iovec whole = { full, host_size };
    rc = raw_ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &whole);
    if (s == NULL)
        free(full);
    return rc;
}

long ptrace(enum __ptrace_request request, ...)
{
    static ptrace_fn libc_ptrace;
    va_list ap;
    va_start(ap, request);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);

    if ((request == PTRACE_GETREGSET || request == PTRACE_SETREGSET)
        && (uintptr_t)addr == NT_X86_XSTATE && data != NULL && shim_mode() != 0) {
        struct iovec *iov = data;
        if (shim_mode() == 2 && request == PTRACE_SETREGSET) {
            errno = EFAULT;
            return -1;
        }
        if (host_size == 0) {
            unsigned char *probe = malloc(PROBE_BYTES);
            if (probe != NULL) {
                get_full(pid, probe);  /* learns host_size; a failure is reported below */
                free(probe);
            }
        }
        if (host_size != 0 && iov->iov_len < host_size && iov->iov_len % 8 == 0)
            return request == PTRACE_GETREGSET ? xstate_get(pid, iov) : xstate_set(pid, iov);
    }
    if (libc_ptrace == NULL)
        libc_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
    return libc_ptrace(request, pid, addr, data);
}
