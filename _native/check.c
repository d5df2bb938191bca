/* Untimed safety probes of generated wrappers (see check.h).  Never linked
 * into the timed path: measure.c does not call anything here. */
#define _GNU_SOURCE
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include "check.h"

_Static_assert(offsetof(struct sb_check, leaf) == SB_CK_LEAF, "sb_check layout");
_Static_assert(offsetof(struct sb_check, vec_out) == SB_CK_VEC_OUT, "sb_check layout");
_Static_assert(offsetof(struct sb_check, set) == SB_CK_SET, "sb_check layout");
_Static_assert(offsetof(struct sb_check, status) == SB_CK_STATUS, "sb_check layout");
_Static_assert(offsetof(struct sb_check, after) == SB_CK_AFTER, "sb_check layout");
_Static_assert(offsetof(struct sb_check, rsp_after) == SB_CK_RSP_AFTER, "sb_check layout");
_Static_assert(offsetof(struct sb_check, rflags_after) == SB_CK_RFLAGS, "sb_check layout");
_Static_assert(offsetof(struct sb_check, saved_rsp) == SB_CK_SAVED_RSP, "sb_check layout");
_Static_assert(NGREG == SB_CK_NGREGS, "ucontext gregs");

#define S_(x) #x
#define S(x) S_(x)

__attribute__((visibility("hidden"))) struct sb_check *volatile sb_check_cur;
__attribute__((visibility("hidden"))) void sb_check_tramp(struct sb_check *c);

/* The trampoline is assembly because the compiler must not touch a register
 * between setting the caller's values and the call, nor between the return
 * and the snapshot.  It saves its own C caller's callee-saved registers,
 * whatever the wrapper does to them. */
__asm__(
	".text\n"
	".p2align 4\n"
	".type sb_check_tramp, @function\n"
	".hidden sb_check_tramp\n"
	"sb_check_tramp:\n"
	"pushq %rbp\n pushq %rbx\n pushq %r12\n pushq %r13\n pushq %r14\n pushq %r15\n"
	"pushq %rdi\n"			/* 7 pushes: RSP 16-byte aligned at the call */
	"movq %rdi, sb_check_cur(%rip)\n"
	"movq %rsp, " S(SB_CK_SAVED_RSP) "(%rdi)\n"
	/* the caller's vector registers, from an XSAVE image */
	"movq " S(SB_CK_VEC_MASK) "(%rdi), %rax\n"
	"testq %rax, %rax\n jz 1f\n"
	"movq %rax, %rdx\n shrq $32, %rdx\n"
	"movq " S(SB_CK_VEC_IN) "(%rdi), %rcx\n"
	"xrstor64 (%rcx)\n"
	"1:\n"
	"movq %rdi, %r11\n"
	"movq " S(SB_CK_SET) "+0(%r11), %rbx\n"
	"movq " S(SB_CK_SET) "+8(%r11), %rbp\n"
	"movq " S(SB_CK_SET) "+16(%r11), %r12\n"
	"movq " S(SB_CK_SET) "+24(%r11), %r13\n"
	"movq " S(SB_CK_SET) "+32(%r11), %r14\n"
	"movq " S(SB_CK_SET) "+40(%r11), %r15\n"
	"movq " S(SB_CK_LEAF) "(%r11), %rdi\n"
	"movq " S(SB_CK_ARGS) "(%r11), %rsi\n"
	"movq %rsp, " S(SB_CK_RSP_BEFORE) "(%r11)\n"
	"cld\n"
	"call *" S(SB_CK_FN) "(%r11)\n"
	/* R11 is caller-saved and no callee-saved register is touched before its snapshot */
	"movq sb_check_cur(%rip), %r11\n"
	"movq %rax, " S(SB_CK_STATUS) "(%r11)\n"
	"movq %rbx, " S(SB_CK_AFTER) "+0(%r11)\n"
	"movq %rbp, " S(SB_CK_AFTER) "+8(%r11)\n"
	"movq %r12, " S(SB_CK_AFTER) "+16(%r11)\n"
	"movq %r13, " S(SB_CK_AFTER) "+24(%r11)\n"
	"movq %r14, " S(SB_CK_AFTER) "+32(%r11)\n"
	"movq %r15, " S(SB_CK_AFTER) "+40(%r11)\n"
	"movq %rsp, " S(SB_CK_RSP_AFTER) "(%r11)\n"
	"movq " S(SB_CK_SAVED_RSP) "(%r11), %rsp\n"	/* whatever the wrapper did to RSP */
	"pushfq\n popq " S(SB_CK_RFLAGS) "(%r11)\n"
	"cld\n"
	"movq " S(SB_CK_VEC_MASK) "(%r11), %rax\n"
	"testq %rax, %rax\n jz 2f\n"
	"movq %rax, %rdx\n shrq $32, %rdx\n"
	"movq " S(SB_CK_VEC_OUT) "(%r11), %rcx\n"
	"xsave64 (%rcx)\n"
	"2:\n"
	"popq %rdi\n"
	"popq %r15\n popq %r14\n popq %r13\n popq %r12\n popq %rbx\n popq %rbp\n"
	"ret\n"
	".size sb_check_tramp, .-sb_check_tramp\n");

static char sb_altstack[65536] __attribute__((aligned(16)));

static void sb_check_fault(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	struct sb_check *c = sb_check_cur;

	if (c) {
		c->fault_sig = (sb_u64)sig;
		c->fault_code = (sb_u64)si->si_code;
		c->fault_addr = (sb_u64)(uintptr_t)si->si_addr;
		for (int i = 0; i < SB_CK_NGREGS; i++)
			c->fault_gregs[i] = (sb_u64)uc->uc_mcontext.gregs[i];
	}
	_exit(SB_CK_FAULT_EXIT);
}

static void sb_install_fault_handlers(void)
{
	/* On an alternate stack: a broken wrapper may have lost RSP. */
	stack_t ss = { .ss_sp = sb_altstack, .ss_size = sizeof(sb_altstack), .ss_flags = 0 };
	struct sigaction sa;
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP };

	sigaltstack(&ss, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sb_check_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

int sb_check_run(struct sb_check *c)
{
	struct sb_args *a = (struct sb_args *)(uintptr_t)c->args;

	c->done = 0;
	c->fault_sig = 0;
	sb_install_fault_handlers();
	/* A wrapper that never returns must not hang the checker: SIGALRM's default action
	 * kills the child whatever handler or mask the parent (pytest, say) gave it. */
	sigset_t alrm;
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	signal(SIGALRM, SIG_DFL);
	sigprocmask(SIG_UNBLOCK, &alrm, NULL);
	alarm(10);
	sb_check_tramp(c);
	alarm(0);
	sb_check_cur = NULL;
	memcpy(c->out_regs, a->regs, sizeof(c->out_regs));
	c->done = 1;
	return 0;
}

/* --- NMI-style frame-pointer walk ------------------------------------------ */

__attribute__((visibility("hidden"))) volatile sb_u64 sb_nmi_phase;	/* 0 none, 1 in call, 2 after */
__attribute__((visibility("hidden"))) volatile sb_u64 sb_nmi_top;	/* the trampoline's frame */
__attribute__((visibility("hidden"))) volatile sb_u64 sb_nmi_post;
__attribute__((visibility("hidden"))) void sb_nmi_tramp(sb_u64 fn, sb_u64 leaf, sb_u64 args);
static struct sb_nmi *volatile sb_nmi_cur;

/* A frame-pointer-keeping caller, as the kernel with CONFIG_FRAME_POINTER:
 * `push %rbp; mov %rsp, %rbp`, then the call.  After the return it spins
 * with RBP as the wrapper left it, as code after the call in the caller
 * would run; it restores its callers' registers with pops, never through
 * RBP, so a clobbered RBP does not crash the demo itself. */
__asm__(
	".text\n"
	".p2align 4\n"
	".type sb_nmi_tramp, @function\n"
	".hidden sb_nmi_tramp\n"
	"sb_nmi_tramp:\n"
	"pushq %rbp\n movq %rsp, %rbp\n"
	"pushq %rbx\n pushq %r12\n pushq %r13\n pushq %r14\n pushq %r15\n subq $8, %rsp\n"
	"movq %rbp, sb_nmi_top(%rip)\n"
	"movq %rdi, %r11\n movq %rsi, %rdi\n movq %rdx, %rsi\n"
	"movq $1, sb_nmi_phase(%rip)\n"
	"call *%r11\n"
	"movq $2, sb_nmi_phase(%rip)\n"
	"movq sb_nmi_post(%rip), %rcx\n"
	"testq %rcx, %rcx\n jz 2f\n"
	"1: decq %rcx\n jnz 1b\n"
	"2: movq $0, sb_nmi_phase(%rip)\n"
	"addq $8, %rsp\n popq %r15\n popq %r14\n popq %r13\n popq %r12\n popq %rbx\n"
	"popq %rbp\n"
	"ret\n"
	".size sb_nmi_tramp, .-sb_nmi_tramp\n");

/* What a frame-pointer unwinder (perf callchains in an NMI) does: follow
 * saved RBPs from the interrupted context.  It may only dereference frames
 * between the interrupted RSP and the trampoline's frame. */
static void sb_nmi_sample(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	struct sb_nmi *n = sb_nmi_cur;
	sb_u64 phase = sb_nmi_phase, top = sb_nmi_top;
	sb_u64 fp = (sb_u64)uc->uc_mcontext.gregs[REG_RBP];
	sb_u64 sp = (sb_u64)uc->uc_mcontext.gregs[REG_RSP];
	int p;

	(void)sig;
	(void)si;
	if (!n)
		return;
	if (phase == 0) {
		n->elsewhere++;
		return;
	}
	p = phase == 1 ? SB_NMI_IN_CALL : SB_NMI_AFTER_RETURN;
	n->samples[p]++;
	for (int depth = 0; depth < 64; depth++) {
		if (fp == top)
			return;	/* reached the caller's frame: a good walk */
		if (fp < sp || fp > top || (fp & 7)) {
			n->garbage[p]++;
			n->bad_rbp[p] = fp;
			return;
		}
		fp = *(volatile sb_u64 *)(uintptr_t)fp;
	}
	n->garbage[p]++;
	n->bad_rbp[p] = fp;
}

static double sb_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int sb_nmi_run(struct sb_nmi *n)
{
	struct sigaction sa;
	struct itimerval it;
	double end;

	memset(n->samples, 0, sizeof(n->samples));
	memset(n->garbage, 0, sizeof(n->garbage));
	memset(n->bad_rbp, 0, sizeof(n->bad_rbp));
	n->elsewhere = n->calls = n->done = 0;
	sb_nmi_post = n->post_iters;
	sb_nmi_cur = n;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sb_nmi_sample;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL))
		return -1;
	memset(&it, 0, sizeof(it));
	it.it_interval.tv_usec = it.it_value.tv_usec = (long)(n->interval_us ? n->interval_us : 100);
	if (setitimer(ITIMER_REAL, &it, NULL))
		return -1;
	end = sb_now() + n->duration_us * 1e-6;
	while (sb_now() < end) {
		sb_nmi_tramp(n->fn, n->leaf, n->args);
		n->calls++;
	}
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	sb_nmi_cur = NULL;
	n->done = 1;
	return 0;
}
