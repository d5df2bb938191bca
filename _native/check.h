/* The safety checker's native side: one untimed call of a generated wrapper
 * with every register the caller relies on set to a known value before and
 * snapshotted after, and the NMI-style frame-pointer walk demo.
 *
 * Both run only in a forked child (bench/safety.py): they install signal
 * handlers, and an unsafe wrapper may crash.  Results go to a MAP_SHARED
 * block, so the parent reads them even when the child died. */
#ifndef SB_CHECK_H
#define SB_CHECK_H
#include <stdint.h>
#include "sb_abi.h"

/* Callee-saved GPRs in the order of set[] and after[]. */
#define SB_CK_NSAVED 6		/* rbx rbp r12 r13 r14 r15 */
#define SB_CK_NGREGS 23		/* glibc x86-64 NGREG: REG_R8 .. REG_CR2 */

struct sb_check {
	/* in */
	sb_u64 fn;		/* 0: sb_conv_fn */
	sb_u64 leaf;		/* 8: RAX value for the leaf */
	sb_u64 args;		/* 16: struct sb_args * */
	sb_u64 vec_mask;	/* 24: XCR0 components loaded before and saved after (0: none) */
	sb_u64 vec_in;		/* 32: 64-byte aligned XSAVE image, the caller's vector values */
	sb_u64 vec_out;		/* 40: 64-byte aligned, the vector state after the call */
	sb_u64 set[SB_CK_NSAVED];	/* 48: the caller's values of rbx rbp r12..r15 */
	/* out */
	sb_u64 status;		/* 96: RAX the wrapper returned */
	sb_u64 after[SB_CK_NSAVED];	/* 104 */
	sb_u64 rsp_before;	/* 152: RSP at the call instruction */
	sb_u64 rsp_after;	/* 160: RSP after the return */
	sb_u64 rflags_after;	/* 168 */
	sb_u64 saved_rsp;	/* 176: the trampoline's own, to recover from a lost RSP */
	sb_u64 out_regs[SB_NREGS];	/* 184: args->regs after the call */
	sb_u64 done;		/* 1 once every field above is filled */
	/* a fault during the call (done stays 0) */
	sb_u64 fault_sig;
	sb_u64 fault_code;
	sb_u64 fault_addr;
	sb_u64 fault_gregs[SB_CK_NGREGS];	/* ucontext gregs, REG_* order */
};

#define SB_CK_FN 0
#define SB_CK_LEAF 8
#define SB_CK_ARGS 16
#define SB_CK_VEC_MASK 24
#define SB_CK_VEC_IN 32
#define SB_CK_VEC_OUT 40
#define SB_CK_SET 48
#define SB_CK_STATUS 96
#define SB_CK_AFTER 104
#define SB_CK_RSP_BEFORE 152
#define SB_CK_RSP_AFTER 160
#define SB_CK_RFLAGS 168
#define SB_CK_SAVED_RSP 176

/* Exit status of a child whose call faulted (the fault is in struct sb_check). */
#define SB_CK_FAULT_EXIT 86

/* One call with the state above; fault handlers installed.  Child only. */
int sb_check_run(struct sb_check *c);

/* NMI-style demo: a periodic signal (ITIMER_REAL) interrupts repeated calls
 * of fn; the handler walks the RBP chain of the interrupted context and
 * classifies each sample by phase: inside the call, or in the caller right
 * after it returned (post_iters of spinning, RBP as the wrapper left it). */
enum { SB_NMI_IN_CALL = 0, SB_NMI_AFTER_RETURN = 1, SB_NMI_NPHASES = 2 };

struct sb_nmi {
	/* in */
	sb_u64 fn, leaf, args;
	sb_u64 post_iters;	/* spin in the caller after each return */
	sb_u64 duration_us;	/* how long to keep calling */
	sb_u64 interval_us;	/* timer period */
	/* out, per phase */
	sb_u64 samples[SB_NMI_NPHASES];
	sb_u64 garbage[SB_NMI_NPHASES];	/* walks that met a frame outside the stack */
	sb_u64 bad_rbp[SB_NMI_NPHASES];	/* the last garbage frame pointer seen */
	sb_u64 elsewhere;	/* samples outside both phases (loop, timer setup) */
	sb_u64 calls;
	sb_u64 done;
};

int sb_nmi_run(struct sb_nmi *n);
#endif
