/* Included at the end of the generated source (flavor "kernel"); see
 * sb_kmod_gen.h.  The generator lists its wrappers as
 *   #define SB_GEN_FOREACH(X) X(0, sb_gen_f0) X(1, sb_gen_w1) ...
 * and this expands one loop per wrapper, each with a direct call. */
#include "sb_kmod_gen.h"

int sb_gen_faults;

/* The baseline: an empty function called through the same loop, so that
 * user space can subtract loop, call and timer overhead (SB_KSLOT_EMPTY). */
sb_u64 sb_gen_empty(sb_u64 leaf, struct sb_args *a);
__asm__(".pushsection .text\n"
	".p2align 4\n"
	".type sb_gen_empty, @function\n"
	"sb_gen_empty:\n"
	ASM_ENDBR
	"xorl %eax, %eax\n"
	ASM_RET
	".size sb_gen_empty, .-sb_gen_empty\n"
	".popsection\n");

/* Counts a status other than `expect`; keeps the first one's value through a
 * mask that is all ones for exactly that call.  Arithmetic only: no branch to
 * mispredict when a status goes bad. */
#define SB_KCHECK(st)                                           \
	do {                                                    \
		sb_u64 ne_ = (st) != expect;                    \
		first |= (st) & -(ne_ & (bad == 0));            \
		bad += ne_;                                     \
	} while (0)

/* Two loops rather than a test per call: -O2 does not hoist it.  The reset
 * is needed where the leaf reads RDX and writes it back (TDH.SYS.RD). */
#define SB_KLOOP(fn)                                    \
	do {                                            \
		if (rdx) {                              \
			for (i = 0; i < calls; i++) {   \
				a->regs[1] = *rdx;      \
				st = fn(leaf, a);       \
				SB_KCHECK(st);          \
			}                               \
		} else {                                \
			for (i = 0; i < calls; i++) {   \
				st = fn(leaf, a);       \
				SB_KCHECK(st);          \
			}                               \
		}                                       \
	} while (0)

noinline void sb_gen_kloop(u32 idx, sb_u64 leaf, struct sb_args *a, u32 calls, const sb_u64 *rdx, sb_u64 expect,
			   struct sb_kstat *ks)
{
	sb_u64 st = 0, bad = 0, first = 0;
	u32 i;

	if (idx == SB_GEN_BASELINE) {
		SB_KLOOP(sb_gen_empty);
		goto out;
	}
#define SB_KCASE(n, fn, mask) case n: SB_KLOOP(fn); break;
	switch (idx) {
	SB_GEN_FOREACH(SB_KCASE)
	default:
		break;
	}
#undef SB_KCASE
out:
	ks->last = st;
	ks->bad = bad;
	ks->first_bad = first;
}

sb_u64 sb_gen_fpu_mask(u32 idx)
{
#define SB_KMASK(n, fn, mask) case n: return mask;
	switch (idx) {
	SB_GEN_FOREACH(SB_KMASK)
	default:
		return 0;
	}
#undef SB_KMASK
}
