/* The timed loop.  It returns raw TSC ticks per batch and nothing else:
 * statistics live in Python, where they can be tested. */
#ifndef SB_MEASURE_H
#define SB_MEASURE_H
#include <stdint.h>
#include "sb_abi.h"

/* Interleaved measurement of a set of functions: per sample, one batch of
 * n_calls calls of each and, when ref_hundreds is set, one reference batch: a
 * dependent chain of 100 * ref_hundreds register-register ADDs (one core cycle
 * each), which gives every sample its own TSC ticks per core cycle.  The
 * order of the batches changes from sample to sample as sb_slot_order says
 * (sb_abi.h: each batch in every position and after every other batch equally
 * often), so that drift of the clock or the host, and whatever one batch
 * leaves for the next, hit all alike. */
#define SB_SET_MAX 16
#define SB_REF_MAX_HUNDREDS (1u << 24)
/* The reference is timed in this many pieces and stands as the median one times
 * this (see ref_ticks in measure.c): ref_hundreds must be a multiple of it. */
#define SB_REF_PIECES 5
/* Where in its page the timed loop's stack sits (see sb_measure_set): half a page
 * away from the page-aligned Args, which the stubs read and write. */
#define SB_STACK_PAGE_OFFSET 0x800
struct sb_set_req {
	uint32_t n_fns;		/* 1..SB_SET_MAX */
	const sb_conv_fn *fns;
	const sb_u64 *leaves;
	struct sb_args *const *args;
	uint32_t n_calls;	/* calls per batch, a multiple of 4 */
	uint32_t n_samples;
	uint32_t first_sample;	/* the rotation's sample index of the first one (sb_slot_order):
				 * a caller that samples in several calls continues its order */
	uint32_t ref_hundreds;	/* 0: no reference slot; else a multiple of SB_REF_PIECES
				 * up to SB_REF_MAX_HUNDREDS */
	uint64_t *ticks;	/* [n_samples][n_slots]: TSC ticks of one batch; n_slots =
				 * n_fns + (ref_hundreds != 0), the reference last */
	uint64_t *t_start;	/* [n_samples]: TSC when the sample began (to find gaps) */
	uint64_t *probe;	/* [n_samples]: TSC ticks of the load/store probe, timed after
				 * every batch of the sample, the slowest kept; NULL: not timed
				 * (only with a reference slot, which converts it) */
	/* The gate: before each sample, probes until SB_GATE_RUN in a row take at most
	 * gate_ticks (the floor of a quiet core, in TSC ticks, with the tolerance), at most
	 * gate_max probes.  A sibling hyperthread of another tenant that shares the core
	 * leaves it quiet in windows of a few hundred microseconds: a sample started in one
	 * is one the policy keeps.  0: no gate. */
	uint64_t gate_ticks;
	uint32_t gate_max;
	uint32_t *waited;	/* [n_samples]: probes the gate ran (NULL: no gate) */
	int perf_fd;		/* group leader from sb_perf_open, or -1 */
	uint32_t n_events;
	uint64_t *events;	/* [n_samples][n_slots][n_events]: deltas over each batch */
};

int sb_measure_set(const struct sb_set_req *req);
sb_u64 sb_empty(sb_u64 leaf, struct sb_args *args);
sb_u64 sb_call_once(sb_conv_fn fn, sb_u64 leaf, struct sb_args *args);

void sb_cpuid(uint32_t leaf, uint32_t sub, uint32_t out[4]);
uint64_t sb_xgetbv(uint32_t index);
double sb_tsc_hz(double seconds);
uint64_t sb_chain_ticks(uint64_t hundreds);
/* TSC ticks of SB_PROBE_OPS independent L1 loads and stores: throughput-bound on
 * the core's load/store ports, which a busy sibling hyperthread (on the host:
 * another tenant) shares, while the latency-bound chain does not see it. */
/* 32768 ops: ~5,600 TSC ticks on a Zen 5 whose TSC counts in steps of 26, so
 * its quantum is 0.5% of the probe, well inside the contention tolerance (4096
 * ops were 700 ticks, a 3.7% quantum, and the floor drifted with it). */
#define SB_PROBE_OPS 32768
#define SB_GATE_RUN 2
#define SB_GATE_MAX (1u << 20)
uint64_t sb_probe_ticks(void);

/* The code every timed sample executes besides the measured functions (the
 * loop, the empty function, the reference chain) lies in one section, so its
 * bytes can be hashed: [lo, hi). */
void sb_timed_code(const void **lo, const void **hi);

/* One ioctl(fd, req, a or b) at a time, each between two ordered TSC reads, A and B
 * alternating (AB BA BA AB ...), n of each; ticks_a/ticks_b get the ticks.  Before
 * each call the vector registers are made live up to `dirty` (0 none, 1 SSE, 2 AVX,
 * 3 AVX-512): what a user process has in them when it enters the kernel, so that a
 * kernel_fpu_begin() in the call must save them and the return to user space must
 * restore them (the kernel module's cold kernel_fpu).  Returns 0 or -errno of the
 * first failing call. */
int sb_ioctl_pair_ticks(int fd, unsigned long req, void *a, void *b, uint32_t n, int dirty,
			uint64_t *ticks_a, uint64_t *ticks_b);

/* perf_event_open: events by index, see sb_perf_event_names.  Opens what it can
 * as one group; errnos[i] is 0 for each event that opened. */
#define SB_PERF_NEVENTS 5
extern const char *const sb_perf_event_names[SB_PERF_NEVENTS];
int sb_perf_open(int errnos[SB_PERF_NEVENTS], int slot[SB_PERF_NEVENTS]);
int sb_perf_read(int fd, uint32_t n, uint64_t *values);
#endif
