#define _GNU_SOURCE
#include <errno.h>
#include <linux/perf_event.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "measure.h"

/* Everything a timed sample runs, apart from the functions measured, is placed
 * in one section (its bounds come from the linker) so that its machine code can
 * be identified by hash: a result is tied to the exact loop that produced it. */
#define SB_TIMED __attribute__((section("sb_timed")))
extern const char __start_sb_timed[] __attribute__((visibility("hidden")));
extern const char __stop_sb_timed[] __attribute__((visibility("hidden")));

void sb_timed_code(const void **lo, const void **hi)
{
	*lo = __start_sb_timed;
	*hi = __stop_sb_timed;
}

/* Start: LFENCE keeps RDTSC from running ahead of earlier work, the second
 * LFENCE keeps later work from starting before it.  End: RDTSCP waits for
 * everything before it; LFENCE keeps what follows out of the window. */
static inline uint64_t tsc_begin(void)
{
	uint32_t lo, hi;
	__asm__ __volatile__("lfence\n\trdtsc\n\tlfence" : "=a"(lo), "=d"(hi) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t tsc_end(void)
{
	uint32_t lo, hi, aux;
	__asm__ __volatile__("rdtscp\n\tlfence" : "=a"(lo), "=d"(hi), "=c"(aux) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

SB_TIMED __attribute__((noinline)) sb_u64 sb_empty(sb_u64 leaf, struct sb_args *args)
{
	(void)leaf;
	(void)args;
	__asm__ __volatile__("" ::: "memory");
	return 0;
}

sb_u64 sb_call_once(sb_conv_fn fn, sb_u64 leaf, struct sb_args *args)
{
	return fn(leaf, args);
}

/* One batch: n calls, unrolled by four so the loop's own branch is rare.  One copy of the loop
 * per slot, each with call sites of its own: with one copy, the empty function's batch and the
 * measured one shared four indirect call sites and their predictor entries, and the empty batch
 * hopped between 4.25, 5.0, 5.75, 6.5 and 7.25 core cycles a call every few milliseconds while
 * the measured one moved the other way (Zen 4 guest, window medians correlated -0.8); with a
 * copy each, it stays at 4.25 (benchmarks/front_end.py).  The kernel module's loops are
 * per wrapper already (kmod/sb_kloop.h).  The asm comment keeps the copies apart: identical
 * functions would be folded into one (-fipa-icf). */
#define SB_BATCH(k)									\
SB_TIMED __attribute__((noinline)) static uint64_t batch_##k(sb_conv_fn fn, sb_u64 leaf,	\
							   struct sb_args *args, uint32_t n)	\
{											\
	__asm__ __volatile__("# batch slot " #k);					\
	uint64_t t0 = tsc_begin();							\
	for (uint32_t i = 0; i < n; i += 4) {						\
		fn(leaf, args);								\
		fn(leaf, args);								\
		fn(leaf, args);								\
		fn(leaf, args);								\
	}										\
	return tsc_end() - t0;								\
}
SB_BATCH(0) SB_BATCH(1) SB_BATCH(2) SB_BATCH(3) SB_BATCH(4) SB_BATCH(5) SB_BATCH(6) SB_BATCH(7)
SB_BATCH(8) SB_BATCH(9) SB_BATCH(10) SB_BATCH(11) SB_BATCH(12) SB_BATCH(13) SB_BATCH(14) SB_BATCH(15)
_Static_assert(SB_SET_MAX == 16, "one SB_BATCH copy per slot");
typedef uint64_t (*sb_batch_fn)(sb_conv_fn, sb_u64, struct sb_args *, uint32_t);
static const sb_batch_fn batch_for[SB_SET_MAX] = {
	batch_0, batch_1, batch_2, batch_3, batch_4, batch_5, batch_6, batch_7,
	batch_8, batch_9, batch_10, batch_11, batch_12, batch_13, batch_14, batch_15,
};

SB_TIMED int sb_perf_read(int fd, uint32_t n, uint64_t *values)
{
	uint64_t buf[1 + SB_PERF_NEVENTS];
	if (fd < 0 || n > SB_PERF_NEVENTS)
		return -EINVAL;
	ssize_t want = (ssize_t)sizeof(uint64_t) * (1 + n);
	if (read(fd, buf, sizeof(buf)) < want)
		return -EIO;
	memcpy(values, buf + 1, sizeof(uint64_t) * n);
	return 0;
}

SB_TIMED static int read_delta(const struct sb_set_req *r, uint64_t *prev, uint64_t *out)
{
	uint64_t now[SB_PERF_NEVENTS];
	if (sb_perf_read(r->perf_fd, r->n_events, now))
		return -EIO;
	for (uint32_t e = 0; e < r->n_events; e++) {
		out[e] = now[e] - prev[e];
		prev[e] = now[e];
	}
	return 0;
}

/* TSC ticks for 100 * hundreds dependent ADDs: one core cycle each on every
 * x86 core of the last decades, so ticks / adds = TSC ticks per core cycle.
 * Register-register on purpose: Golden Cove and later fold chains of
 * ADD-immediate at rename (measured 0.12 TSC ticks per "add $1"). */
SB_TIMED __attribute__((noinline)) uint64_t sb_chain_ticks(uint64_t hundreds)
{
	uint64_t x = 0, y = 1, t0 = tsc_begin();
	for (uint64_t i = 0; i < hundreds; i++)
		__asm__ __volatile__(".rept 100\n\taddq %1, %0\n\t.endr" : "+r"(x) : "r"(y));
	return tsc_end() - t0;
}

/* The reference slot's chain: SB_REF_PIECES consecutive pieces of hundreds /
 * SB_REF_PIECES each, and the median piece times SB_REF_PIECES.  An interrupt or a
 * host preemption inside one piece (benchmarks/chain_pieces.py: 7-12% of 30 us
 * chains had a piece over 5% long, one 61x) then leaves the sample's TSC-per-core ratio as it is, where the whole
 * chain would carry it into every figure the sample converts. */
SB_TIMED static uint64_t ref_ticks(uint64_t hundreds)
{
	uint64_t t[SB_REF_PIECES], x;
	for (int i = 0; i < SB_REF_PIECES; i++)
		t[i] = sb_chain_ticks(hundreds / SB_REF_PIECES);
	for (int i = 1; i < SB_REF_PIECES; i++)	/* insertion sort of five */
		for (int j = i; j > 0 && t[j - 1] > t[j]; j--)
			x = t[j], t[j] = t[j - 1], t[j - 1] = x;
	return t[SB_REF_PIECES / 2] * SB_REF_PIECES;
}

SB_TIMED __attribute__((noinline)) uint64_t sb_probe_ticks(void)
{
	uint64_t buf[8] __attribute__((aligned(64))) = {0};
	uint64_t t0 = tsc_begin();
	/* SB_PROBE_OPS / 32 x 32: two loads and two stores per group of four, to distinct
	 * words of one line (no store-to-load forwarding chain), so ports, not latency, bound it. */
	for (int i = 0; i < SB_PROBE_OPS / 32; i++)
		__asm__ __volatile__(".rept 8\n\t"
				     "movq %%rax, (%0)\n\tmovq 8(%0), %%rcx\n\t"
				     "movq %%rcx, 16(%0)\n\tmovq 24(%0), %%rdx\n\t"
				     ".endr" : : "r"(buf) : "rax", "rcx", "rdx", "memory");
	return tsc_end() - t0;
}

SB_TIMED __attribute__((noinline)) static int measure_loop(const struct sb_set_req *r, int perf);

SB_TIMED int sb_measure_set(const struct sb_set_req *r)
{
	int perf = r->perf_fd >= 0 && r->n_events;
	if (!r->n_fns || r->n_fns > SB_SET_MAX || !r->fns || !r->leaves || !r->args)
		return -EINVAL;
	for (uint32_t f = 0; f < r->n_fns; f++)
		if (!r->fns[f])
			return -EINVAL;
	if (!r->n_calls || (r->n_calls & 3) || !r->n_samples || !r->ticks || !r->t_start)
		return -EINVAL;
	if (r->ref_hundreds > SB_REF_MAX_HUNDREDS || r->ref_hundreds % SB_REF_PIECES)
		return -EINVAL;
	if (perf && (r->n_events > SB_PERF_NEVENTS || !r->events))
		return -EINVAL;
	if (r->gate_ticks && (!r->waited || !r->gate_max || r->gate_max > SB_GATE_MAX))
		return -EINVAL;
	/* The measured calls' stack at one offset in its page in every process.  Where the
	 * stub's pushes and its loads from the Args (page-aligned, _core.Args) alias in the
	 * low 12 address bits, a load waits on a store it does not depend on; with the stack
	 * wherever the process's start put it, that aliasing differed from process to
	 * process.  Now it is the same in all of them, whatever it is. */
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
	volatile char *pad = __builtin_alloca(((sp - SB_STACK_PAGE_OFFSET) & 4095) + 16);
	pad[0] = 0;
	return measure_loop(r, perf);
}

SB_TIMED __attribute__((noinline)) static int measure_loop(const struct sb_set_req *r, int perf)
{
	uint64_t prev[SB_PERF_NEVENTS];
	uint32_t slots = r->n_fns + (r->ref_hundreds != 0);
	if (perf && sb_perf_read(r->perf_fd, r->n_events, prev))
		return -EIO;
	for (uint32_t s = 0; s < r->n_samples; s++) {
		if (r->gate_ticks) {
			uint32_t k = 0, run = 0;
			while (run < SB_GATE_RUN && k < r->gate_max) {
				run = sb_probe_ticks() <= r->gate_ticks ? run + 1 : 0;
				k++;
			}
			r->waited[s] = k;
			/* The counters start again after the gate: its probes belong to no batch. */
			if (perf && sb_perf_read(r->perf_fd, r->n_events, prev))
				return -EIO;
		}
		r->t_start[s] = tsc_begin();
		/* Each slot first as often, and behind each other slot as often (sb_abi.h). */
		for (uint32_t j = 0; j < slots; j++) {
			uint32_t f = sb_slot_order(r->first_sample + s, slots, j);
			uint64_t slot = (uint64_t)s * slots + f;
			if (f == r->n_fns)
				r->ticks[slot] = ref_ticks(r->ref_hundreds);
			else
				r->ticks[slot] = batch_for[f](r->fns[f], r->leaves[f], r->args[f], r->n_calls);
			/* The probe after every batch, and the sample keeps the slowest: a sibling
			 * that starts or stops within the sample shows, whichever batch it met. */
			if (r->probe) {
				uint64_t p = sb_probe_ticks();
				if (j == 0 || p > r->probe[s])
					r->probe[s] = p;
			}
			/* Counters are read between batches, outside the timed windows. */
			if (perf && read_delta(r, prev, r->events + slot * r->n_events))
				return -EIO;
		}
	}
	return 0;
}

/* Caller-saved registers only (every xmm/ymm/zmm and k register is, in the SysV ABI),
 * in a function of its own that keeps nothing in them; the caller checks the CPU. */
static __attribute__((noinline)) void dirty_vectors(int level)
{
	if (level >= 1)
		__asm__ __volatile__("pcmpeqd %%xmm0, %%xmm0" ::: "memory");
	if (level >= 2)
		__asm__ __volatile__("vpcmpeqd %%ymm1, %%ymm1, %%ymm1" ::: "memory");
	if (level >= 3)
		__asm__ __volatile__("vpternlogd $0xff, %%zmm2, %%zmm2, %%zmm2\n\t"
				     "vpternlogd $0xff, %%zmm16, %%zmm16, %%zmm16\n\tkxnorw %%k1, %%k1, %%k1"
				     ::: "memory");
}

int sb_ioctl_pair_ticks(int fd, unsigned long req, void *a, void *b, uint32_t n, int dirty,
			uint64_t *ticks_a, uint64_t *ticks_b)
{
	for (uint32_t i = 0; i < 2 * n; i++) {
		/* AB BA BA AB: each side first as often, and after the other as often */
		int second = (i & 1) ^ ((i >> 1) & 1);
		void *arg = second ? b : a;
		uint64_t *out = second ? &ticks_b[i / 2] : &ticks_a[i / 2];
		dirty_vectors(dirty);
		uint64_t t0 = tsc_begin();
		int rc = ioctl(fd, req, arg);
		uint64_t t1 = tsc_end();
		if (rc < 0)
			return -errno;
		*out = t1 - t0;
	}
	return 0;
}

void sb_cpuid(uint32_t leaf, uint32_t sub, uint32_t out[4])
{
	__asm__ __volatile__("cpuid" : "=a"(out[0]), "=b"(out[1]), "=c"(out[2]), "=d"(out[3])
			     : "a"(leaf), "c"(sub));
}

uint64_t sb_xgetbv(uint32_t index)
{
	uint32_t lo, hi;
	__asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(index));
	return ((uint64_t)hi << 32) | lo;
}

static double mono_raw(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* TSC ticks per second against CLOCK_MONOTONIC_RAW, busy-waiting (no sleep,
 * so the thread stays on its pinned CPU). */
double sb_tsc_hz(double seconds)
{
	double w0 = mono_raw();
	uint64_t t0 = tsc_begin();
	double w1;
	do {
		w1 = mono_raw();
	} while (w1 - w0 < seconds);
	uint64_t t1 = tsc_end();
	return (double)(t1 - t0) / (w1 - w0);
}

const char *const sb_perf_event_names[SB_PERF_NEVENTS] = {
	"cycles", "instructions", "context_switches", "cpu_migrations", "page_faults",
};

static const struct {
	uint32_t type;
	uint64_t config;
} perf_events[SB_PERF_NEVENTS] = {
	{PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES},
	{PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS},
	{PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES},
	{PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_MIGRATIONS},
	{PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS},
};

/* Opens every event it can into one group (this thread, any CPU, user and
 * kernel for software events, user only for hardware ones so that
 * perf_event_paranoid=2 allows them).  slot[i] is the event's position in a
 * group read, or -1.  Returns the leader fd, or -1 when nothing opened. */
int sb_perf_open(int errnos[SB_PERF_NEVENTS], int slot[SB_PERF_NEVENTS])
{
	int leader = -1, n = 0;
	for (int i = 0; i < SB_PERF_NEVENTS; i++) {
		struct perf_event_attr a;
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		a.type = perf_events[i].type;
		a.config = perf_events[i].config;
		a.read_format = PERF_FORMAT_GROUP;
		a.exclude_kernel = a.type == PERF_TYPE_HARDWARE;
		a.exclude_hv = 1;
		slot[i] = -1;
		int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, leader, 0);
		if (fd < 0) {
			errnos[i] = errno;
			continue;
		}
		errnos[i] = 0;
		if (leader < 0)
			leader = fd;
		slot[i] = n++;
	}
	return leader;
}
