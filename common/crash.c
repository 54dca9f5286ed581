/*
 * crash.c - what a crashing process leaves behind: a core file (the soft
 * core limit raised to the hard one) and a backtrace on stderr, the
 * process's log. The handler uses only async-signal-safe calls, runs on
 * its own stack on the main thread (a stack overflow there still
 * reports; other threads use their own stacks) and re-raises the signal
 * with the default action, so the exit status and the core are the
 * signal's. Under AddressSanitizer the sanitizer's own report is better,
 * so the handler is not installed for the signals it handles.
 */
#define _GNU_SOURCE /* REG_RIP */
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <ucontext.h>
#include <unistd.h>

#include "common/common.h"

#if defined(__SANITIZE_ADDRESS__)
#define CRASH_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CRASH_UNDER_ASAN 1
#endif
#endif

/* Frames printed: enough for nng's callback chains. */
#define CRASH_FRAMES_MAX 64
/* The handler's own stack: a crash from a stack overflow needs one. */
#define CRASH_STACK_BYTES (64 * 1024)

static void write_str(const char *s)
{
	ssize_t rv = write(STDERR_FILENO, s, strlen(s));
	(void)rv;
}

/* Decimal of v into buf (async-signal-safe, no printf). */
static const char *udec(unsigned long v, char buf[24])
{
	char *p = buf + 23;
	*p = '\0';
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return p;
}

/* Hex of v into buf (async-signal-safe). */
static const char *uhex(uintptr_t v, char buf[24])
{
	char *p = buf + 23;
	*p = '\0';
	do {
		*--p = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v != 0);
	*--p = 'x';
	*--p = '0';
	return p;
}

/* The line of /proc/self/maps whose range holds pc: which library (and
 * at what base) the crashing instruction is in, when the backtrace
 * cannot unwind from it. Only open/read/write, so async-signal-safe. */
static void write_mapping(uintptr_t pc)
{
	int fd = open("/proc/self/maps", O_RDONLY);
	if (fd < 0)
		return;
	char buf[4096], line[512];
	size_t n = 0;
	ssize_t got;
	while ((got = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < got; i++) {
			if (buf[i] != '\n') {
				if (n < sizeof(line) - 1)
					line[n++] = buf[i];
				continue;
			}
			line[n] = '\0';
			uintptr_t lo = 0, hi = 0;
			size_t k = 0;
			for (; k < n && line[k] != '-'; k++)
				lo = lo * 16 + (uintptr_t)(line[k] <= '9'
				                               ? line[k] - '0'
				                               : (line[k] | 32) - 'a' + 10);
			for (k++; k < n && line[k] != ' '; k++)
				hi = hi * 16 + (uintptr_t)(line[k] <= '9'
				                               ? line[k] - '0'
				                               : (line[k] | 32) - 'a' + 10);
			if (pc >= lo && pc < hi) {
				write_str("  pc is in: ");
				write_str(line);
				write_str("\n");
				close(fd);
				return;
			}
			n = 0;
		}
	}
	write_str("  pc is in no mapping\n");
	close(fd);
}

static void on_crash(int sig, siginfo_t *si, void *uctx)
{
	char b1[24], b2[24];
	void *frames[CRASH_FRAMES_MAX];
	write_str("level=fatal mod=crash event=crash signal=");
	write_str(udec((unsigned long)sig, b1));
	write_str(" pid=");
	write_str(udec((unsigned long)getpid(), b2));
	write_str(" addr=");
	write_str(uhex((uintptr_t)si->si_addr, b1));
	uintptr_t pc = 0;
#if defined(__x86_64__) && defined(REG_RIP)
	pc = (uintptr_t)((ucontext_t *)uctx)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	pc = (uintptr_t)((ucontext_t *)uctx)->uc_mcontext.pc;
#else
	(void)uctx;
#endif
	write_str(" pc=");
	write_str(uhex(pc, b2));
	write_str(" backtrace follows (resolve with addr2line -e BINARY)\n");
	if (pc != 0)
		write_mapping(pc);
	int n = backtrace(frames, CRASH_FRAMES_MAX);
	backtrace_symbols_fd(frames, n, STDERR_FILENO);
	signal(sig, SIG_DFL);
	raise(sig);
}

void pl_crash_install(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_CORE, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_CORE, &rl);
	}
	/* backtrace() loads libgcc on first use: do it now, not in the
	 * handler, where malloc may be what crashed. */
	void *warm[1];
	(void)backtrace(warm, 1);
	static _Alignas(16) unsigned char alt[CRASH_STACK_BYTES];
	stack_t ss = {.ss_sp = alt, .ss_size = sizeof(alt), .ss_flags = 0};
	(void)sigaltstack(&ss, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_crash;
	sa.sa_flags = SA_ONSTACK | SA_RESETHAND | SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
#ifdef CRASH_UNDER_ASAN
	static const int sigs[] = {SIGABRT};
#else
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
#endif
	for (size_t i = 0; i < PL_ARRAY_LEN(sigs); i++)
		(void)sigaction(sigs[i], &sa, NULL);
}
