/*
 * tracebench calibrate: the tight loops behind `tracebench calibrate`.
 *
 * Compiled at first use with the system C compiler and cached by source hash
 * (tracebench/validate/cbuild.py). Each mode prints one sample per line on stdout
 * (integers: TSC cycles per operation for the cost loops, ns for the latencies),
 * so the percentiles are computed in one place (Python) for every measurement.
 *
 *   calib tscghz MS              TSC frequency against CLOCK_MONOTONIC_RAW over MS ms
 *   calib cpuid N                CPUID leaf 0 (unconditional VM exit), cycles per op
 *   calib rdtsc N | rdtscp N     RDTSC / RDTSCP, cycles per op
 *   calib clock N CLOCKID        clock_gettime(CLOCKID), cycles per call
 *   calib timer N DELAY_US CPU   clock_nanosleep(TIMER_ABSTIME) deadline -> wake-up, ns
 *   calib cyclic N PERIOD_US CPU cyclictest's loop: absolute deadlines every PERIOD_US, ns late
 *   calib wake N CPU_A CPU_B GAP_US  futex wake of a thread blocked on another CPU, ns
 *   calib pingpong N CPU_A CPU_B     busy-wait ping-pong (no kernel in the loop), ns
 *   calib platform               CPUID facts: "key value" lines
 *
 * x86-64 only (CPUID/RDTSC); the caller refuses other architectures first.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

static inline uint64_t tsc_begin(void)
{
	_mm_lfence();
	uint64_t t = __rdtsc();
	_mm_lfence();
	return t;
}

static inline uint64_t tsc_end(void)
{
	unsigned int aux;
	uint64_t t = __rdtscp(&aux);
	_mm_lfence();
	return t;
}

static int64_t now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void pin(int cpu)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		fprintf(stderr, "calib: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
		exit(1);
	}
}

/* Ops per sample: enough to amortize the two TSC reads, few enough to keep a distribution. */
#define CPUID_BATCH 4
#define TSC_BATCH 64
#define CLOCK_BATCH 16

static void cpuid_loop(long n)
{
	unsigned int a, b, c, d;
	for (long i = 0; i < n; i++) {
		uint64_t t0 = tsc_begin();
		for (int k = 0; k < CPUID_BATCH; k++)
			__cpuid(0, a, b, c, d);
		uint64_t t1 = tsc_end();
		printf("%llu\n", (unsigned long long)((t1 - t0) / CPUID_BATCH));
	}
	(void)a; (void)b; (void)c; (void)d;
}

static void rdtsc_loop(long n, int with_p)
{
	unsigned int aux;
	volatile uint64_t sink = 0;
	for (long i = 0; i < n; i++) {
		uint64_t t0 = tsc_begin();
		if (with_p)
			for (int k = 0; k < TSC_BATCH; k++)
				sink += __rdtscp(&aux);
		else
			for (int k = 0; k < TSC_BATCH; k++)
				sink += __rdtsc();
		uint64_t t1 = tsc_end();
		printf("%llu\n", (unsigned long long)((t1 - t0) / TSC_BATCH));
	}
}

static void clock_loop(long n, clockid_t clk)
{
	struct timespec ts;
	for (long i = 0; i < n; i++) {
		uint64_t t0 = tsc_begin();
		for (int k = 0; k < CLOCK_BATCH; k++)
			clock_gettime(clk, &ts);
		uint64_t t1 = tsc_end();
		printf("%llu\n", (unsigned long long)((t1 - t0) / CLOCK_BATCH));
	}
}

static void tscghz(long ms)
{
	int64_t c0 = now_ns(CLOCK_MONOTONIC_RAW);
	uint64_t t0 = tsc_begin();
	int64_t target = c0 + ms * 1000000LL;
	while (now_ns(CLOCK_MONOTONIC_RAW) < target)
		;
	int64_t c1 = now_ns(CLOCK_MONOTONIC_RAW);
	uint64_t t1 = tsc_end();
	/* kHz as an integer: cycles per ms */
	printf("%lld\n", (long long)((double)(t1 - t0) * 1e6 / (double)(c1 - c0)));
}

static void timer_loop(long n, long delay_us, int cpu)
{
	pin(cpu);
	/* The default 50 us timer slack of a SCHED_OTHER task would dominate the figure. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	for (long i = 0; i < n; i++) {
		int64_t deadline = now_ns(CLOCK_MONOTONIC) + delay_us * 1000LL;
		struct timespec ts = { deadline / 1000000000LL, deadline % 1000000000LL };
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		int64_t woke = now_ns(CLOCK_MONOTONIC);
		printf("%lld\n", (long long)(woke - deadline));
	}
}

static void cyclic_loop(long n, long period_us, int cpu)
{
	pin(cpu);
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	int64_t next = now_ns(CLOCK_MONOTONIC) + period_us * 1000LL;
	for (long i = 0; i < n; i++) {
		struct timespec ts = { next / 1000000000LL, next % 1000000000LL };
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		int64_t woke = now_ns(CLOCK_MONOTONIC);
		printf("%lld\n", (long long)(woke - next));
		next += period_us * 1000LL;
		if (next < woke) /* overran a period: restart from now, as cyclictest does */
			next = woke + period_us * 1000LL;
	}
}

struct shared {
	_Atomic int go;          /* futex word: iteration number posted by A */
	_Atomic int ack;         /* futex word: iteration number seen by B */
	_Atomic int64_t sent_ns; /* A's clock just before the wake */
	int64_t *lat_ns;
	long n;
	int cpu_b;
	int spin;                /* 1: busy-wait (no futex) */
};

static long futex(_Atomic int *addr, int op, int val)
{
	return syscall(SYS_futex, (int *)addr, op, val, NULL, NULL, 0);
}

static void *side_b(void *arg)
{
	struct shared *s = arg;
	pin(s->cpu_b);
	for (long i = 1; i <= s->n; i++) {
		int v;
		while ((v = atomic_load_explicit(&s->go, memory_order_acquire)) < i)
			if (!s->spin)
				futex(&s->go, FUTEX_WAIT_PRIVATE, v);
		int64_t t = now_ns(CLOCK_MONOTONIC);
		s->lat_ns[i - 1] = t - atomic_load_explicit(&s->sent_ns, memory_order_relaxed);
		atomic_store_explicit(&s->ack, (int)i, memory_order_release);
		if (!s->spin)
			futex(&s->ack, FUTEX_WAKE_PRIVATE, 1);
	}
	return NULL;
}

static void wake_loop(long n, int cpu_a, int cpu_b, long gap_us, int spin)
{
	struct shared s = { .n = n, .cpu_b = cpu_b, .spin = spin };
	s.lat_ns = calloc((size_t)n, sizeof(int64_t));
	if (!s.lat_ns) {
		fprintf(stderr, "calib: out of memory\n");
		exit(1);
	}
	pthread_t th;
	if (pthread_create(&th, NULL, side_b, &s) != 0) {
		fprintf(stderr, "calib: cannot start a thread\n");
		exit(1);
	}
	pin(cpu_a);
	struct timespec gap = { 0, gap_us * 1000L };
	for (long i = 1; i <= n; i++) {
		/* Let B block and its CPU go idle, so each sample is a real wake-up. */
		if (gap_us > 0)
			nanosleep(&gap, NULL);
		atomic_store_explicit(&s.sent_ns, now_ns(CLOCK_MONOTONIC), memory_order_relaxed);
		atomic_store_explicit(&s.go, (int)i, memory_order_release);
		if (!spin)
			futex(&s.go, FUTEX_WAKE_PRIVATE, 1);
		int v;
		while ((v = atomic_load_explicit(&s.ack, memory_order_acquire)) < i)
			if (!spin)
				futex(&s.ack, FUTEX_WAIT_PRIVATE, v);
	}
	pthread_join(th, NULL);
	for (long i = 0; i < n; i++)
		printf("%lld\n", (long long)s.lat_ns[i]);
	free(s.lat_ns);
}

static void platform(void)
{
	unsigned int a, b, c, d;
	char vendor[13] = { 0 };
	__cpuid(0, a, b, c, d);
	memcpy(vendor, &b, 4);
	memcpy(vendor + 4, &d, 4);
	memcpy(vendor + 8, &c, 4);
	printf("cpu_vendor %s\n", vendor);
	__cpuid(1, a, b, c, d);
	printf("hypervisor_bit %u\n", (c >> 31) & 1);
	printf("x2apic %u\n", (c >> 21) & 1);
	printf("tsc_deadline %u\n", (c >> 24) & 1);
	printf("vmx %u\n", (c >> 5) & 1);
	if (!((c >> 31) & 1))
		return;
	char hv[13] = { 0 };
	__cpuid(0x40000000, a, b, c, d);
	memcpy(hv, &b, 4);
	memcpy(hv + 4, &c, 4);
	memcpy(hv + 8, &d, 4);
	for (int i = 0; i < 12; i++)
		if (hv[i] == 0 || hv[i] < 32 || hv[i] > 126)
			hv[i] = hv[i] ? '?' : 0;
	printf("hypervisor_vendor %s\n", hv);
	printf("hypervisor_max_leaf 0x%x\n", a);
	if (strcmp(hv, "KVMKVMKVM") == 0 && a >= 0x40000001) {
		__cpuid(0x40000001, a, b, c, d);
		printf("kvm_features 0x%x\n", a);
		printf("kvm_hints 0x%x\n", d);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: calib MODE [ARGS]\n");
		return 2;
	}
	const char *m = argv[1];
	long n = argc > 2 ? atol(argv[2]) : 0;
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (!strcmp(m, "tscghz"))
		tscghz(n > 0 ? n : 50);
	else if (!strcmp(m, "cpuid"))
		cpuid_loop(n);
	else if (!strcmp(m, "rdtsc"))
		rdtsc_loop(n, 0);
	else if (!strcmp(m, "rdtscp"))
		rdtsc_loop(n, 1);
	else if (!strcmp(m, "clock") && argc > 3)
		clock_loop(n, (clockid_t)atoi(argv[3]));
	else if (!strcmp(m, "timer") && argc > 4)
		timer_loop(n, atol(argv[3]), atoi(argv[4]));
	else if (!strcmp(m, "cyclic") && argc > 4)
		cyclic_loop(n, atol(argv[3]), atoi(argv[4]));
	else if (!strcmp(m, "wake") && argc > 5)
		wake_loop(n, atoi(argv[3]), atoi(argv[4]), atol(argv[5]), 0);
	else if (!strcmp(m, "pingpong") && argc > 4)
		wake_loop(n, atoi(argv[3]), atoi(argv[4]), 0, 1);
	else if (!strcmp(m, "platform"))
		platform();
	else {
		fprintf(stderr, "calib: unknown mode or missing arguments: %s\n", m);
		return 2;
	}
	return 0;
}
