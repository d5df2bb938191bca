/* What the module uses from the generated unit (bench/gen/codegen.py, flavor
 * "kernel").  The generated source ends by including sb_kloop.h, which
 * defines the batch loop next to the wrappers so that it calls them
 * directly (an indirect call would go through a retpoline in every sample). */
#ifndef SB_KMOD_GEN_H
#define SB_KMOD_GEN_H

#include <linux/types.h>
#include <linux/compiler.h>
#include <linux/linkage.h>
#include "sb_abi.h"

extern const struct sb_gen_unit sb_gen_unit;

/* What one loop's calls returned.  Every call's RAX is compared with the
 * crossing's success value, without a branch (the empty function's loop does
 * the same work, so it cancels in the difference). */
struct sb_kstat {
	sb_u64 last;		/* RAX of the last call */
	sb_u64 bad;		/* calls whose RAX was not `expect` */
	sb_u64 first_bad;	/* RAX of the first of them, 0 if none */
};

/* `calls` back-to-back calls of wrapper `idx`; when rdx is not NULL, RDX's
 * slot is reset to *rdx before each call (a leaf input the wrapper writes
 * back). */
#define SB_GEN_BASELINE 0xffffffffu	/* idx of the empty function */
void sb_gen_kloop(u32 idx, sb_u64 leaf, struct sb_args *a, u32 calls, const sb_u64 *rdx, sb_u64 expect,
		  struct sb_kstat *ks);

/* The convention's declared fpu_mask (all ones: every XCR0 component). */
sb_u64 sb_gen_fpu_mask(u32 idx);

extern int sb_gen_faults;		/* faults caught in the generated code's FPU instructions */

#define SB_GEN_FAULTS() READ_ONCE(sb_gen_faults)

#endif
