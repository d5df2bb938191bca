/* The binary contract between the generated convention code, the user-space
 * measurement core and the kernel module.  Keep it free of libc and of kernel
 * headers so that all three can include it.
 *
 * struct sb_args mirrors Linux's struct tdx_module_args: thirteen u64 in the
 * order rcx, rdx, r8..r15, rbx, rdi, rsi.  The generator emits offsets from
 * SB_OFF_*, and a static assertion in each consumer checks them. */
#ifndef SB_ABI_H
#define SB_ABI_H

#ifdef __KERNEL__
#include <linux/types.h>
typedef u64 sb_u64;
#else
#include <stdint.h>
typedef uint64_t sb_u64;
#endif

#define SB_NREGS 13

struct sb_args {
	sb_u64 regs[SB_NREGS];	/* rcx rdx r8 r9 r10 r11 r12 r13 r14 r15 rbx rdi rsi */
	sb_u64 rbp_slot;	/* where an `rbp: struct` convention keeps RBP */
	sb_u64 fpu_mask;	/* XCR0 components an FPU policy saves (XCR0 & declared mask) */
	sb_u64 xsave_area;	/* 64-byte aligned, zeroed, CPUID(0xD,0).ECX bytes */
};

#define SB_OFF_REGS 0
#define SB_OFF_RBP_SLOT (8 * SB_NREGS)
#define SB_OFF_FPU_MASK (SB_OFF_RBP_SLOT + 8)
#define SB_OFF_XSAVE_AREA (SB_OFF_FPU_MASK + 8)

/* Every generated function: status (RAX) = fn(leaf (RDI), args (RSI)). */
typedef sb_u64 (*sb_conv_fn)(sb_u64 leaf, struct sb_args *args);

/* A stretch of generated machine code, [lo, hi). */
struct sb_code_range {
	const void *lo;
	const void *hi;
};

/* What one call of an entry executes, for the code hash: the C wrapper (FPU
 * save, retry) if there is one, the assembly wrapper, and the emulated stub if
 * the crossing calls it.  Unused ranges are {0, 0}; the kernel flavor leaves
 * all of them zero. */
#define SB_CODE_RANGES 3

/* One row per (convention, crossing, leaf profile) the generator emitted. */
struct sb_gen_entry {
	const char *convention;
	const char *crossing;
	const char *leaf;
	sb_conv_fn fn;
	struct sb_code_range code[SB_CODE_RANGES];
};

/* Knobs of the emulated TDX-module stub, read by the stub at every call
 * (so one build serves every mode).  Values of serialize_mode: */
#define SB_SER_NONE 0		/* pipelined: out-of-order execution overlaps calls */
#define SB_SER_LFENCE 1		/* dispatch-serializing only */
#define SB_SER_MFENCE_LFENCE 2
#define SB_SER_SERIALIZE 3	/* SERIALIZE instruction (CPUID.7.0:EDX[14]) */
#define SB_SER_IRET 4		/* IRETQ to self: architecturally serializing at any CPL */
#define SB_SER_CPUID 5		/* CPUID: serializing, but traps in a VM */

struct sb_emul_cfg {
	sb_u64 serialize_mode;	/* SB_SER_* */
	sb_u64 latency_iters;	/* iterations of a dependent spin inside the stub */
	sb_u64 avx_reset_mask;	/* XCR0 & AVX/opmask/ZMM bits, reset to INIT by leaves that may */
	sb_u64 poison;		/* non-zero: also write markers into vector registers */
	/* Appended for the safety checker (bench/safety.py); zero = off. */
	sb_u64 poison_area;	/* 64-byte aligned XSAVE image of vector markers: when set, a leaf
				 * that may reset AVX state XRSTORs this instead of INIT */
};

/* What a generated unit exports (the only non-hidden symbol: sb_gen_unit). */
struct sb_gen_unit {
	sb_u64 abi_version;
	sb_u64 count;
	const struct sb_gen_entry *entries;
	struct sb_emul_cfg *emul;
};

#define SB_ABI_VERSION 2

/* The slot that runs j-th (0..n-1) in sample s of a rotation over n slots: a Williams
 * design, a Latin square in which every slot runs in every position equally often AND
 * follows every other slot equally often (over n samples for even n; for odd n the square
 * and its mirror, 2n samples).  What ran just before a batch leaves the predictors
 * and caches in its own state (a seamcall_ret batch measured up to 0.4% dearer right after
 * the chain than after the empty batch): a plain rotation, even reversed every other
 * sample, kept one of two measured functions behind the empty batch and the other behind
 * the chain.  Row k is the first row plus k; the first row is 0, 1, n-1, 2, n-2, ... */
static inline unsigned int sb_slot_order(unsigned int s, unsigned int n, unsigned int j)
{
	unsigned int row = s % ((n & 1) ? 2 * n : n), first;

	if (row >= n) {		/* odd n: the mirror half, each row reversed */
		row -= n;
		j = n - 1 - j;
	}
	first = (j & 1) ? (j + 1) / 2 : (n - j / 2) % n;
	return (first + row) % n;
}

/* The marker the emulated stub writes into register `idx` (SB_MARK_* index
 * space: 0..12 as in sb_args, 13 = RBP, 14 = RAX is the status, not marked).
 * Non-canonical as an address, so a stale pointer faults at once. */
#define SB_MARKER(idx) (0x5EB0000000000000ULL | ((sb_u64)(idx) << 8) | 0xA5)

#endif
