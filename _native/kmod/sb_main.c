// SPDX-License-Identifier: GPL-2.0
/*
 * seambench kernel module: times the generated calling-convention wrappers
 * (bench/gen/codegen.py, flavor "kernel") around a real SEAMCALL, TDCALL,
 * VMCALL or VMMCALL issued from ring 0, or around the emulated TDX stub.
 *
 * /dev/seambench (0600, CAP_SYS_ADMIN) has four ioctls: CAPS probes which
 * crossings work here, ENTRY lists the generated wrappers, RUN times one of
 * them, CALL calls an emulated one once and hands back its struct.  User space never supplies a leaf number or an instruction: the
 * crossing and its leaf come from the built-in table and the allow-list
 * below.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/uaccess.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/gfp.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/capability.h>
#include <linux/ktime.h>
#include <linux/utsname.h>
#include <linux/string.h>
#include <linux/irqflags.h>
#include <linux/preempt.h>
#include <asm/asm.h>
#include <asm/processor.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>
#include <asm/tsc.h>
#include <asm/simd.h>
#include <asm/fpu/api.h>
#include <asm/fpu/xcr.h>

#include "sb_abi.h"
#include "sb_kmod_uapi.h"
#include "sb_kmod_gen.h"

/* Facts from the TDX and KVM ABIs (see docs/kmod.md for sources). */
#define SB_TDX_SW_ERROR 0x8000FF0000000000ULL
#define SB_TDX_VMFAILINVALID (SB_TDX_SW_ERROR | 0xFFFF0000ULL)
#define SB_TDX_OPERAND_BUSY_HI 0x80000200ULL	/* status class, upper 32 bits */
#define SB_TDH_SYS_RD 34ULL		/* read-only metadata read */
#define SB_TDX_FEATURES0 0x0A00000300000008ULL	/* field id it reads */
#define SB_TDG_VP_INFO 1ULL		/* no inputs, no side effects */
#define SB_KVM_HC_UNUSED 0x5EABULL	/* not a KVM hypercall: answered -KVM_ENOSYS */
#define SB_KVM_ENOSYS 1000ULL

#define SB_BATCH_US 1000		/* interrupts stay off at most about this long */
#define SB_RUN_LIMIT_NS (30ULL * NSEC_PER_SEC)
#define SB_XFEATURE_AMX (3ULL << 17)	/* XTILECFG/XTILEDATA: may be XFD-armed, never saved */
#define SB_XFEATURE_AVX_ALL ((1ULL << 2) | (7ULL << 5))	/* YMM, opmask, ZMM_Hi256, Hi16_ZMM */

static DEFINE_MUTEX(sb_lock);		/* one probe or run at a time: the stub config is global */
static struct sb_kx_cap sb_cap[SB_KX_COUNT];

struct sb_env {
	char vendor[13];
	char hv_sig[13];
	bool intel, amd, hypervisor, kvm, tcg, td_guest, vmx;
};

/* ---- where are we? ---------------------------------------------------- */

static void sb_sig(char out[13], u32 b, u32 c, u32 d)
{
	memcpy(out, &b, 4);
	memcpy(out + 4, &c, 4);
	memcpy(out + 8, &d, 4);
	out[12] = 0;
}

static void sb_detect(struct sb_env *e)
{
	u32 a, b, c, d, base;
	char sig[13];

	memset(e, 0, sizeof(*e));
	cpuid(0, &a, &b, &c, &d);
	sb_sig(e->vendor, b, d, c);
	e->intel = !strcmp(e->vendor, "GenuineIntel");
	e->amd = !strcmp(e->vendor, "AuthenticAMD") || !strcmp(e->vendor, "HygonGenuine");
	/* TD guests: CPUID leaf 0x21 answers "IntelTDX    " (from the TDX module, no #VE). */
	if (e->intel && a >= 0x21) {
		cpuid_count(0x21, 0, &a, &b, &c, &d);
		sb_sig(sig, b, d, c);
		e->td_guest = !memcmp(sig, "IntelTDX    ", 12);
	}
	cpuid(1, &a, &b, &c, &d);
	e->vmx = c & (1u << 5);
	e->hypervisor = c & (1u << 31);
	if (!e->hypervisor)
		return;
	/* KVM may sit behind Hyper-V's leaves at 0x40000100: scan like the kernel does. */
	for (base = 0x40000000; base < 0x40010000; base += 0x100) {
		cpuid(base, &a, &b, &c, &d);
		sb_sig(sig, b, c, d);
		if (base == 0x40000000)
			memcpy(e->hv_sig, sig, sizeof(sig));
		if (!memcmp(sig, "KVMKVMKVM\0\0\0", 12))
			e->kvm = true;
		if (!memcmp(sig, "TCGTCGTCGTCG", 12))
			e->tcg = true;
	}
}

/* ---- the probes: each instruction once, with a fault fixup ------------- */

struct sb_probe {
	u64 rax;
	int fault;	/* vector, or -1 */
	bool cf;
};

/*
 * On #UD/#GP the exception-table entry of type FAULT puts the vector in RAX
 * and resumes at 2:, which records it.  The register lists name every GPR the
 * TDX module or the hypervisor may write for these leaves.
 */
static noinline void sb_probe_seamcall(struct sb_probe *p)
{
	register u64 r8 asm("r8") = 0;
	register u64 r9 asm("r9") = 0;
	register u64 r10 asm("r10") = 0;
	register u64 r11 asm("r11") = 0;
	u64 rax = SB_TDH_SYS_RD, rcx = 0, rdx = SB_TDX_FEATURES0;
	u8 cf = 0;
	int fault = -1;

	asm volatile("1: .byte 0x66, 0x0f, 0x01, 0xcf\n\t"	/* SEAMCALL */
		     "setc %[cf]\n\t"
		     "jmp 3f\n\t"
		     "2: movl %k[rax], %[flt]\n\t"
		     "3:\n\t"
		     _ASM_EXTABLE_FAULT(1b, 2b)
		     : [rax] "+a"(rax), "+c"(rcx), "+d"(rdx), "+r"(r8), "+r"(r9),
		       "+r"(r10), "+r"(r11), [cf] "+qm"(cf), [flt] "+rm"(fault)
		     :
		     : "rbx", "rsi", "rdi", "r12", "r13", "r14", "r15", "memory", "cc");
	p->rax = rax;
	p->fault = fault;
	p->cf = cf;
}

static noinline void sb_probe_tdcall(struct sb_probe *p)
{
	register u64 r8 asm("r8") = 0;
	register u64 r9 asm("r9") = 0;
	register u64 r10 asm("r10") = 0;
	register u64 r11 asm("r11") = 0;
	u64 rax = SB_TDG_VP_INFO, rcx = 0, rdx = 0;
	int fault = -1;

	asm volatile("1: .byte 0x66, 0x0f, 0x01, 0xcc\n\t"	/* TDCALL */
		     "jmp 3f\n\t"
		     "2: movl %k[rax], %[flt]\n\t"
		     "3:\n\t"
		     _ASM_EXTABLE_FAULT(1b, 2b)
		     : [rax] "+a"(rax), "+c"(rcx), "+d"(rdx), "+r"(r8), "+r"(r9),
		       "+r"(r10), "+r"(r11), [flt] "+rm"(fault)
		     :
		     : "rbx", "rsi", "rdi", "r12", "r13", "r14", "r15", "memory", "cc");
	p->rax = rax;
	p->fault = fault;
	p->cf = false;
}

/* KVM's hypercall ABI: number in RAX, arguments RBX, RCX, RDX, RSI, result RAX. */
static noinline void sb_probe_hypercall(struct sb_probe *p, bool amd)
{
	u64 rax = SB_KVM_HC_UNUSED;
	int fault = -1;

	if (amd)
		asm volatile("1: .byte 0x0f, 0x01, 0xd9\n\t"	/* VMMCALL */
			     "jmp 3f\n\t"
			     "2: movl %k[rax], %[flt]\n\t"
			     "3:\n\t"
			     _ASM_EXTABLE_FAULT(1b, 2b)
			     : [rax] "+a"(rax), [flt] "+rm"(fault)
			     : "b"(0UL), "c"(0UL), "d"(0UL), "S"(0UL)
			     : "memory", "cc");
	else
		asm volatile("1: .byte 0x0f, 0x01, 0xc1\n\t"	/* VMCALL */
			     "jmp 3f\n\t"
			     "2: movl %k[rax], %[flt]\n\t"
			     "3:\n\t"
			     _ASM_EXTABLE_FAULT(1b, 2b)
			     : [rax] "+a"(rax), [flt] "+rm"(fault)
			     : "b"(0UL), "c"(0UL), "d"(0UL), "S"(0UL)
			     : "memory", "cc");
	p->rax = rax;
	p->fault = fault;
	p->cf = false;
}

static void sb_run_probe(int kx, const struct sb_env *e, struct sb_probe *p)
{
	unsigned long flags;

	/* One CPU, no interruption: VMX state and the answer belong together. */
	preempt_disable();
	local_irq_save(flags);
	switch (kx) {
	case SB_KX_SEAMCALL:
		sb_probe_seamcall(p);
		break;
	case SB_KX_TDCALL:
		sb_probe_tdcall(p);
		break;
	case SB_KX_VMCALL:
		sb_probe_hypercall(p, false);
		break;
	case SB_KX_VMMCALL:
		sb_probe_hypercall(p, true);
		break;
	}
	local_irq_restore(flags);
	preempt_enable();
}

static const char *sb_vector_name(int v)
{
	switch (v) {
	case 6: return "#UD";
	case 13: return "#GP";
	case 14: return "#PF";
	default: return "exception";
	}
}

#define SB_WHY(c, ...) scnprintf((c)->why, sizeof((c)->why), __VA_ARGS__)

static void sb_refuse(struct sb_kx_cap *c, u32 reason)
{
	c->state = SB_KS_REFUSED;
	c->reason = reason;
}

/*
 * Decide, per crossing, whether executing the instruction here is known to be
 * harmless (then probe it) or could hurt (then refuse without executing):
 *  - under KVM, SEAMCALL/TDCALL exit with reasons 76/77, which KVM before the
 *    Oct 2025 fix does not handle (the VM dies): refused;
 *  - in a TD, VMCALL raises #VE, which Linux does not emulate: refused;
 *  - KVM rewrites the other vendor's hypercall instruction in guest memory
 *    (our module text): refused;
 *  - any other hypervisor's hypercall ABI is not KVM's: refused;
 *  - on bare metal and under QEMU's software CPU (TCG) the instructions either
 *    work or fault (#UD/#GP) or fail with CF: probed, faults caught.
 */
static void sb_probe_one(int kx, const struct sb_env *e, struct sb_kx_cap *c)
{
	struct sb_probe p = { .rax = 0, .fault = -1, .cf = false };
	const char *where = e->tcg ? "QEMU TCG" : e->hypervisor ? e->hv_sig : "bare metal";
	bool amd_insn = kx == SB_KX_VMMCALL;
	int tries;

	memset(c, 0, sizeof(*c));
	c->fault = -1;
	switch (kx) {
	case SB_KX_EMULATED:
		c->state = SB_KS_AVAILABLE;
		SB_WHY(c, "ring-0 stub standing in for the TDX module; always available");
		return;
	case SB_KX_SEAMCALL:
		if (e->td_guest) {
			sb_refuse(c, SB_KR_TD_GUEST);
			SB_WHY(c, "refused: TD guest; SEAMCALL is the host VMM's instruction");
			return;
		}
		if (e->hypervisor && !e->tcg) {
			sb_refuse(c, SB_KR_HYPERVISOR);
			SB_WHY(c, "refused: under hypervisor '%s'; SEAMCALL would exit to it (not a TDX host)", where);
			return;
		}
		if (!e->hypervisor && !e->intel) {
			sb_refuse(c, SB_KR_VENDOR);
			SB_WHY(c, "refused: %s CPU, SEAMCALL is Intel TDX only", e->vendor);
			return;
		}
		break;
	case SB_KX_TDCALL:
		if (e->hypervisor && !e->tcg && !e->td_guest) {
			sb_refuse(c, SB_KR_HYPERVISOR);
			SB_WHY(c, "refused: ordinary VM under '%s', not a TD; TDCALL would exit to it", where);
			return;
		}
		if (!e->hypervisor && !e->intel) {
			sb_refuse(c, SB_KR_VENDOR);
			SB_WHY(c, "refused: %s CPU, TDCALL is Intel TDX only", e->vendor);
			return;
		}
		break;
	case SB_KX_VMCALL:
	case SB_KX_VMMCALL:
		if (e->td_guest) {
			sb_refuse(c, SB_KR_TD_GUEST);
			SB_WHY(c, "refused: TD guest; %s raises #VE there (use tdcall)",
			       amd_insn ? "VMMCALL" : "VMCALL");
			return;
		}
		if (!e->hypervisor) {
			sb_refuse(c, SB_KR_BARE_METAL);
			SB_WHY(c, "refused: bare metal, not a KVM guest");
			return;
		}
		if (!e->tcg && !e->kvm) {
			sb_refuse(c, SB_KR_NOT_KVM);
			SB_WHY(c, "refused: hypervisor '%s' is not KVM", where);
			return;
		}
		if (e->kvm && (amd_insn ? !e->amd : !e->intel)) {
			sb_refuse(c, SB_KR_VENDOR);
			SB_WHY(c, "refused: %s CPU; KVM expects %s and would rewrite our %s",
			       e->vendor, amd_insn ? "VMCALL" : "VMMCALL", amd_insn ? "VMMCALL" : "VMCALL");
			return;
		}
		break;
	default:
		return;
	}

	/* The TDX module answers OPERAND_BUSY while another CPU holds a lock it needs. */
	for (tries = 0; tries < 3; tries++) {
		sb_run_probe(kx, e, &p);
		if (kx != SB_KX_SEAMCALL || p.fault >= 0 || p.cf || (p.rax >> 32) != SB_TDX_OPERAND_BUSY_HI)
			break;
	}
	c->probed = 1;
	c->status = p.rax;
	c->fault = p.fault;
	if (p.fault >= 0) {
		c->state = SB_KS_UNAVAILABLE;
		c->reason = SB_KR_FAULT;
		SB_WHY(c, "unavailable: %s (vector %d) on the probe (%s)%s", sb_vector_name(p.fault),
		       p.fault, where,
		       kx == SB_KX_SEAMCALL && p.fault == 6 ? ": VMX off or no TDX (need kvm_intel.tdx=1)" :
		       kx == SB_KX_SEAMCALL && p.fault == 13 ? ": TDX not enabled by the BIOS" :
		       kx == SB_KX_TDCALL ? ": not a TD guest" : ": not a KVM guest");
		return;
	}
	switch (kx) {
	case SB_KX_SEAMCALL:
		if (p.cf) {
			c->state = SB_KS_UNAVAILABLE;
			c->reason = SB_KR_VMFAILINVALID;
			c->status = SB_TDX_VMFAILINVALID;
			SB_WHY(c, "unavailable: VMfailInvalid, no TDX module answering (not initialised)");
		} else if (p.rax) {
			c->state = SB_KS_UNAVAILABLE;
			c->reason = SB_KR_STATUS;
			SB_WHY(c, "unavailable: TDH.SYS.RD returned 0x%llx (TDX module not initialised on this CPU?)",
			       p.rax);
		} else {
			c->state = SB_KS_AVAILABLE;
			SB_WHY(c, "TDX module answered TDH.SYS.RD(TDX_FEATURES0)");
		}
		return;
	case SB_KX_TDCALL:
		if (p.rax) {
			c->state = SB_KS_UNAVAILABLE;
			c->reason = SB_KR_STATUS;
			SB_WHY(c, "unavailable: TDG.VP.INFO returned 0x%llx", p.rax);
		} else {
			c->state = SB_KS_AVAILABLE;
			SB_WHY(c, "TDX module answered TDG.VP.INFO");
		}
		return;
	default:
		if (p.rax != (u64)-SB_KVM_ENOSYS) {
			c->state = SB_KS_UNAVAILABLE;
			c->reason = SB_KR_STATUS;
			SB_WHY(c, "unavailable: hypercall 0x%llx answered 0x%llx, not -KVM_ENOSYS",
			       SB_KVM_HC_UNUSED, p.rax);
		} else {
			c->state = SB_KS_AVAILABLE;
			SB_WHY(c, "KVM answered the unused hypercall with -KVM_ENOSYS");
		}
		return;
	}
}

/* Caller holds sb_lock. */
static void sb_probe_all(struct sb_env *e)
{
	int kx;

	sb_detect(e);
	for (kx = 0; kx < SB_KX_COUNT; kx++)
		sb_probe_one(kx, e, &sb_cap[kx]);
}

/* ---- the generated table ----------------------------------------------- */

static const char *const sb_kx_names[SB_KX_COUNT] = {
	[SB_KX_EMULATED] = "emulated",
	[SB_KX_SEAMCALL] = "seamcall",
	[SB_KX_TDCALL] = "tdcall",
	[SB_KX_VMCALL] = "vmcall",
	[SB_KX_VMMCALL] = "vmmcall",
};

static u32 sb_kx_of(const char *name)
{
	u32 kx;

	for (kx = 0; kx < SB_KX_COUNT; kx++)
		if (name && !strcmp(name, sb_kx_names[kx]))
			return kx;
	return SB_KX_NONE;	/* e.g. cpuid: generated, but not something this module issues */
}

/*
 * What the module will issue: the only leaves of the real crossings are
 * read-only ones (TDH.SYS.RD, TDG.VP.INFO); VMCALL/VMMCALL carry an unused
 * hypercall number fixed in the crossing text.  Emulated: anything, the stub
 * ignores RAX; known profiles get their TDX leaf numbers for realism.
 */
struct sb_leafrule {
	u32 kx;
	const char *leaf;	/* NULL: any profile */
	u64 rax;
	bool set_rdx;
	u64 rdx;
};

static const struct sb_leafrule sb_rules[] = {
	{ SB_KX_SEAMCALL, "sys_rd", SB_TDH_SYS_RD, true, SB_TDX_FEATURES0 },
	{ SB_KX_TDCALL, "vp_info", SB_TDG_VP_INFO, false, 0 },
	{ SB_KX_VMCALL, NULL, 0, false, 0 },
	{ SB_KX_VMMCALL, NULL, 0, false, 0 },
	{ SB_KX_EMULATED, "sys_rd", SB_TDH_SYS_RD, true, SB_TDX_FEATURES0 },
	{ SB_KX_EMULATED, "vp_info", SB_TDG_VP_INFO, false, 0 },
	{ SB_KX_EMULATED, "migration", 68, false, 0 },
	{ SB_KX_EMULATED, NULL, 0, false, 0 },
};

static const struct sb_leafrule *sb_rule(u32 kx, const char *leaf)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(sb_rules); i++)
		if (sb_rules[i].kx == kx && (!sb_rules[i].leaf || (leaf && !strcmp(leaf, sb_rules[i].leaf))))
			return &sb_rules[i];
	return NULL;
}

static bool sb_entry_ok(u32 idx)
{
	return idx < sb_gen_unit.count && sb_gen_unit.entries[idx].fn;
}

/* ---- ioctls -------------------------------------------------------------- */

static u64 sb_budget_ticks(void)
{
	u64 khz = tsc_khz ? tsc_khz : 1000000;	/* unknown TSC rate: assume 1 GHz */

	return khz * SB_BATCH_US / 1000;
}

static long sb_ioctl_caps(void __user *uarg)
{
	struct sb_kcaps *k;
	struct sb_env e;
	u32 a, b, c, d, size;
	long ret = 0;

	if (get_user(size, (u32 __user *)uarg))
		return -EFAULT;
	if (size != sizeof(*k))
		return -EINVAL;
	k = kzalloc(sizeof(*k), GFP_KERNEL);
	if (!k)
		return -ENOMEM;
	k->size = sizeof(*k);
	k->api_version = SB_KMOD_API_VERSION;
	k->abi_version = sb_gen_unit.abi_version;
	k->n_entries = sb_gen_unit.count;

	if (mutex_lock_interruptible(&sb_lock)) {	/* a RUN may hold it for seconds */
		kfree(k);
		return -EINTR;
	}
	sb_probe_all(&e);
	memcpy(k->x, sb_cap, sizeof(k->x));
	mutex_unlock(&sb_lock);

	strscpy(k->vendor, e.vendor, sizeof(k->vendor));
	strscpy(k->hv_sig, e.hv_sig, sizeof(k->hv_sig));
	strscpy(k->kernel, utsname()->release, sizeof(k->kernel));
	k->flags = (e.hypervisor ? SB_KF_HYPERVISOR : 0) | (e.kvm ? SB_KF_KVM : 0) |
		   (e.tcg ? SB_KF_TCG : 0) | (e.td_guest ? SB_KF_TD_GUEST : 0) |
		   (e.vmx ? SB_KF_VMX : 0) | SB_KF_DIRECT_CALLS |
		   (IS_ENABLED(CONFIG_INTEL_TDX_HOST) ? SB_KF_TDX_HOST_BUILT : 0) |
		   (IS_ENABLED(CONFIG_INTEL_TDX_GUEST) ? SB_KF_TDX_GUEST_BUILT : 0) |
		   (boot_cpu_has(X86_FEATURE_SERIALIZE) ? SB_KF_SERIALIZE : 0) |
		   (may_use_simd() ? SB_KF_FPU_USABLE : 0);
	if (boot_cpu_has(X86_FEATURE_OSXSAVE)) {
		k->flags |= SB_KF_OSXSAVE;
		k->xcr0 = xgetbv(XCR_XFEATURE_ENABLED_MASK);
		cpuid_count(0xd, 0, &a, &b, &c, &d);
		k->xsave_size_xcr0 = b;
		k->xsave_size_max = c;
		cpuid_count(0xd, 1, &a, &b, &c, &d);
		k->xsaves_size = b;
		if (boot_cpu_has(X86_FEATURE_XGETBV1)) {
			k->flags |= SB_KF_XGETBV1;
			k->xinuse = xgetbv(1);
		}
	}
	k->tsc_khz = tsc_khz;
	k->budget_ticks = sb_budget_ticks();
	if (copy_to_user(uarg, k, sizeof(*k)))
		ret = -EFAULT;
	kfree(k);
	return ret;
}

static long sb_ioctl_entry(void __user *uarg)
{
	struct sb_kentry k;
	const struct sb_gen_entry *g;
	u32 idx;

	if (get_user(idx, (u32 __user *)uarg))
		return -EFAULT;
	memset(&k, 0, sizeof(k));
	k.index = idx;
	k.count = sb_gen_unit.count;
	if (!sb_entry_ok(idx))
		return -EINVAL;
	g = &sb_gen_unit.entries[idx];
	strscpy(k.convention, g->convention ? g->convention : "", sizeof(k.convention));
	strscpy(k.crossing_name, g->crossing ? g->crossing : "", sizeof(k.crossing_name));
	strscpy(k.leaf, g->leaf ? g->leaf : "", sizeof(k.leaf));
	k.crossing = sb_kx_of(g->crossing);
	if (k.crossing != SB_KX_NONE && sb_rule(k.crossing, g->leaf)) {
		/* sb_init probed before the device existed; a RUN may hold the lock for seconds. */
		if (mutex_lock_interruptible(&sb_lock))
			return -EINTR;
		k.runnable = sb_cap[k.crossing].state == SB_KS_AVAILABLE;
		mutex_unlock(&sb_lock);
	}
	return copy_to_user(uarg, &k, sizeof(k)) ? -EFAULT : 0;
}

static bool sb_zero(const void *p, size_t n)
{
	return !memchr_inv(p, 0, n);
}

/* Validate the stub's knobs against this CPU: the stub executes what they select. */
static int sb_check_emul(const struct sb_emul_cfg *c, u64 xcr0)
{
	if (c->serialize_mode > SB_SER_CPUID)
		return -EINVAL;
	if (c->serialize_mode == SB_SER_SERIALIZE && !boot_cpu_has(X86_FEATURE_SERIALIZE))
		return -EOPNOTSUPP;
	if (c->latency_iters > SB_KMAX_LATENCY)
		return -E2BIG;
	if (c->avx_reset_mask & ~(SB_XFEATURE_AVX_ALL & xcr0))
		return -EINVAL;
	/* Vector-marker poisoning belongs to user space's safety check; poison_area is a
	 * pointer the stub would XRSTOR from, which ring 0 never takes from user space. */
	if (c->poison || c->poison_area)
		return -EINVAL;
	return 0;
}

/* RAX of a call that did what it should: TDX_SUCCESS, or KVM's answer to the unused hypercall. */
static u64 sb_expect(u32 kx)
{
	return kx == SB_KX_VMCALL || kx == SB_KX_VMMCALL ? (u64)-SB_KVM_ENOSYS : 0;
}

struct sb_ctx {
	u32 idx;
	u64 leaf;
	u64 expect;		/* the crossing's success status */
	const struct sb_leafrule *rule;
	const sb_u64 *rdx;	/* the leaf's RDX input, reset before each call; NULL: none */
	struct sb_args *args;
	struct sb_kstat st;	/* the entry's timed calls so far */
};

/* Registers the kernel owns while a batch runs: kernel_fpu_begin saves the
 * task's vector state and invalidates the CPU's cache of it, so wrappers and
 * the stub may change vector registers until we return to user space.  It is
 * also what makes the kernel_fpu convention measure its steady state (user
 * state already saved), the same for every sample. */
static void sb_claim_fpu(void)
{
	kernel_fpu_begin();
	kernel_fpu_end();
}

/* `calls` back-to-back calls between two ordered TSC reads. */
static noinline u64 sb_time_calls(struct sb_ctx *x, u32 idx, u32 calls, struct sb_kstat *ks)
{
	u64 t0, t1;

	t0 = rdtsc_ordered();
	sb_gen_kloop(idx, x->leaf, x->args, calls, x->rdx, x->expect, ks);
	t1 = rdtsc_ordered();
	return t1 - t0;
}

/* hundreds x 100 dependent register-register ADDs (not ADD-immediate, which
 * newer Intel cores fold at rename): one core cycle each, whatever the clock.
 * The same chain as user space's sb_chain_ticks. */
static noinline u64 sb_time_ref(u32 hundreds)
{
	u64 t0, t1, acc = 0, one = 1;
	u32 i;

	t0 = rdtsc_ordered();
	for (i = 0; i < hundreds; i++)
		asm volatile(".rept 100\n\taddq %1, %0\n\t.endr" : "+r"(acc) : "r"(one));
	t1 = rdtsc_ordered();
	return t1 - t0;
}

/* One sample: every slot once, in sample s's order of the rotation (sb_slot_order:
 * each slot first as often, and behind each other slot as often); out[] in slot order.
 * With `count`, the entry's statuses go into x->st.  Returns the sample's ticks. */
static u64 sb_sample(struct sb_ctx *x, u32 s, u32 calls, u32 ref_hundreds, u64 out[SB_KSLOTS], bool count)
{
	u32 n = ref_hundreds ? SB_KSLOTS : SB_KSLOT_REF, j, slot;
	struct sb_kstat ks;
	u64 total = 0;

	out[SB_KSLOT_REF] = 0;
	for (j = 0; j < n; j++) {
		slot = sb_slot_order(s, n, j);
		switch (slot) {
		case SB_KSLOT_ENTRY:
			out[slot] = sb_time_calls(x, x->idx, calls, &ks);
			if (count) {
				if (ks.bad && !x->st.bad)
					x->st.first_bad = ks.first_bad;
				x->st.bad += ks.bad;
				x->st.last = ks.last;
			}
			break;
		case SB_KSLOT_EMPTY:
			/* The baseline issues nothing: the entry only selects the same leaf setup. */
			out[slot] = sb_time_calls(x, SB_GEN_BASELINE, calls, &ks);
			break;
		default:
			out[slot] = sb_time_ref(ref_hundreds);
			break;
		}
		total += out[slot];
	}
	return total;
}

/* Caller holds sb_lock and has disabled migration: every sample runs on r->cpu. */
static long sb_run_batches(struct sb_ctx *x, struct sb_krun *r, u64 *kbuf)
{
	u64 budget = sb_budget_ticks(), deadline, start, last, w[SB_KSLOTS], est;
	unsigned long flags;
	u32 s = 0, calls = r->calls_per_sample, ref = r->ref_hundreds;
	int faults0 = SB_GEN_FAULTS();
	bool moved;

	/* Warm-up, interrupts on.  One call (and one hundred ADDs) per slot first: a
	 * full-size sample of a slow crossing (or a large latency_iters or reference)
	 * could otherwise keep preemption off for far longer than a batch may last
	 * before anything is checked.  The estimate is for the whole 3-slot sample. */
	r->budget_ticks = budget;
	preempt_disable();
	r->cpu = smp_processor_id();
	sb_claim_fpu();
	sb_sample(x, 0, 1, ref ? 1 : 0, w, false);
	sb_sample(x, 1, 1, ref ? 1 : 0, w, false);
	preempt_enable();
	if (SB_GEN_FAULTS() != faults0)
		return -EOPNOTSUPP;	/* e.g. an XSAVE variant this CPU lacks */
	est = (w[SB_KSLOT_ENTRY] + w[SB_KSLOT_EMPTY]) * calls + w[SB_KSLOT_REF] * ref;
	if (est > budget / 2) {
		r->warmup_ticks = est;
		return -E2BIG;		/* lower calls_per_sample, ref_hundreds or latency_iters */
	}
	/* Then full size, the second sample with caches (and TCG's translations) warm:
	 * it decides whether one whole sample fits comfortably in a batch. */
	preempt_disable();
	moved = smp_processor_id() != r->cpu;
	sb_claim_fpu();
	sb_sample(x, 0, calls, ref, w, false);
	r->warmup_ticks = sb_sample(x, 1, calls, ref, w, false);
	preempt_enable();
	if (moved)
		return -EAGAIN;
	if (SB_GEN_FAULTS() != faults0)
		return -EOPNOTSUPP;
	if (r->warmup_ticks > budget / 2)
		return -E2BIG;

	deadline = ktime_get_ns() + SB_RUN_LIMIT_NS;
	while (s < r->samples) {
		preempt_disable();
		local_irq_save(flags);
		/* migrate_disable() pins the task; this says so rather than trusting it. */
		moved = smp_processor_id() != r->cpu;
		if (!moved) {
			sb_claim_fpu();
			start = rdtsc_ordered();
			do {
				last = sb_sample(x, s, calls, ref, &kbuf[(u64)s * SB_KSLOTS], true);
				s++;
			} while (s < r->samples && rdtsc_ordered() - start + 2 * last <= budget);
		}
		local_irq_restore(flags);
		preempt_enable();
		if (moved)
			return -EAGAIN;
		r->batches++;
		if (s < r->samples) {
			if (signal_pending(current))
				return -EINTR;
			if (ktime_get_ns() > deadline)
				return -ETIME;
			cond_resched();
		}
	}
	if (SB_GEN_FAULTS() != faults0)
		return -EOPNOTSUPP;
	r->status = x->st.last;
	r->bad_status = x->st.bad;
	r->first_bad_status = x->st.first_bad;
	return 0;
}

static long sb_ioctl_run(void __user *uarg)
{
	struct sb_krun r;
	struct sb_ctx x = { 0 };
	const struct sb_gen_entry *g;
	void __user *out;
	u64 *kbuf = NULL, xcr0 = 0, bytes;
	unsigned long xarea = 0;
	unsigned int xorder = 0;
	u32 kx;
	long ret;

	if (copy_from_user(&r, uarg, sizeof(r)))
		return -EFAULT;
	if (r.size != sizeof(r) || r.flags || !sb_zero(r.reserved, sizeof(r.reserved)))
		return -EINVAL;
	if (!sb_entry_ok(r.entry))
		return -EINVAL;
	if (!r.calls_per_sample || !r.samples)
		return -EINVAL;
	if (r.calls_per_sample > SB_KMAX_CALLS || r.samples > SB_KMAX_SAMPLES || r.ref_hundreds > SB_KMAX_REF_HUNDREDS)
		return -E2BIG;
	bytes = (u64)r.samples * SB_KSLOTS * sizeof(u64);
	if (r.out_len < bytes)
		return -EINVAL;
	out = u64_to_user_ptr(r.out);
	if (!r.out || !access_ok(out, bytes) || clear_user(out, bytes))
		return -EFAULT;
	/* Outputs start from zero whatever happens next. */
	r.status = r.bad_status = r.first_bad_status = r.warmup_ticks = r.budget_ticks = 0;
	r.batches = r.cpu = 0;

	g = &sb_gen_unit.entries[r.entry];
	kx = sb_kx_of(g->crossing);
	if (kx == SB_KX_NONE)
		return -EOPNOTSUPP;
	x.rule = sb_rule(kx, g->leaf);
	if (!x.rule)
		return -EOPNOTSUPP;	/* a leaf profile this crossing may not issue */
	if (boot_cpu_has(X86_FEATURE_OSXSAVE))
		xcr0 = xgetbv(XCR_XFEATURE_ENABLED_MASK);
	if (kx == SB_KX_EMULATED) {
		ret = sb_check_emul(&r.emul, xcr0);
		if (ret)
			return ret;
	} else if (!sb_zero(&r.emul, sizeof(r.emul))) {
		return -EINVAL;
	}
	if (!may_use_simd())
		return -EBUSY;

	x.idx = r.entry;
	x.leaf = x.rule->rax;
	x.expect = sb_expect(kx);
	x.rdx = x.rule->set_rdx ? &x.rule->rdx : NULL;
	x.args = kzalloc(sizeof(*x.args), GFP_KERNEL);
	kbuf = kvcalloc((size_t)r.samples * SB_KSLOTS, sizeof(u64), GFP_KERNEL);
	if (!x.args || !kbuf) {
		ret = -ENOMEM;
		goto out_free;
	}
	if (xcr0) {
		u32 a, b, c, d;

		/* Wrappers XSAVE the live (user) components, never XFD-armed AMX ones. */
		cpuid_count(0xd, 0, &a, &b, &c, &d);
		xorder = get_order(max_t(u32, c, PAGE_SIZE));
		xarea = __get_free_pages(GFP_KERNEL | __GFP_ZERO, xorder);
		if (!xarea) {
			ret = -ENOMEM;
			goto out_free;
		}
		x.args->xsave_area = xarea;
		x.args->fpu_mask = xcr0 & ~SB_XFEATURE_AMX & sb_gen_fpu_mask(r.entry);
	}

	ret = mutex_lock_interruptible(&sb_lock);
	if (ret)
		goto out_free;
	if (sb_cap[kx].state != SB_KS_AVAILABLE) {
		ret = -ENODEV;	/* CAPS says why */
	} else {
		*sb_gen_unit.emul = r.emul;
		/* One CPU for the whole run: its clock is the one the reference measures. */
		migrate_disable();
		ret = sb_run_batches(&x, &r, kbuf);
		migrate_enable();
		memset(sb_gen_unit.emul, 0, sizeof(*sb_gen_unit.emul));
	}
	mutex_unlock(&sb_lock);

	if (!ret && copy_to_user(out, kbuf, bytes))
		ret = -EFAULT;
	if (ret != -EFAULT && copy_to_user(uarg, &r, sizeof(r)))
		ret = -EFAULT;
out_free:
	if (xarea)
		free_pages(xarea, xorder);
	kvfree(kbuf);
	kfree(x.args);
	return ret;
}

/* One call of an emulated entry, untimed, with the caller's struct: the wrapper only moves
 * these values between the struct and registers and the stub ignores them, so any value is
 * harmless; nothing but the stub is ever crossed to. */
static long sb_ioctl_call(void __user *uarg)
{
	struct sb_kcall c;
	struct sb_kstat ks;
	const struct sb_gen_entry *g;
	const struct sb_leafrule *rule;
	struct sb_args *args;
	unsigned long xarea = 0;
	unsigned int xorder = 0;
	u64 xcr0 = 0;
	int faults0;
	long ret = 0;

	if (copy_from_user(&c, uarg, sizeof(c)))
		return -EFAULT;
	if (c.size != sizeof(c) || (c.flags & ~SB_KCALL_COLD) || !sb_zero(c.reserved, sizeof(c.reserved)))
		return -EINVAL;
	if (!sb_entry_ok(c.entry))
		return -EINVAL;
	g = &sb_gen_unit.entries[c.entry];
	if (sb_kx_of(g->crossing) != SB_KX_EMULATED)
		return -EOPNOTSUPP;
	rule = sb_rule(SB_KX_EMULATED, g->leaf);
	if (!rule)
		return -EOPNOTSUPP;
	if (!may_use_simd())
		return -EBUSY;
	args = kzalloc(sizeof(*args), GFP_KERNEL);
	if (!args)
		return -ENOMEM;
	memcpy(args->regs, c.regs, sizeof(args->regs));
	if (boot_cpu_has(X86_FEATURE_OSXSAVE))
		xcr0 = xgetbv(XCR_XFEATURE_ENABLED_MASK);
	if (xcr0) {
		u32 a, b, cc, d;

		cpuid_count(0xd, 0, &a, &b, &cc, &d);
		xorder = get_order(max_t(u32, cc, PAGE_SIZE));
		xarea = __get_free_pages(GFP_KERNEL | __GFP_ZERO, xorder);
		if (!xarea) {
			ret = -ENOMEM;
			goto out_free;
		}
		args->xsave_area = xarea;
		args->fpu_mask = xcr0 & ~SB_XFEATURE_AMX & sb_gen_fpu_mask(c.entry);
	}
	ret = mutex_lock_interruptible(&sb_lock);
	if (ret)
		goto out_free;
	memset(sb_gen_unit.emul, 0, sizeof(*sb_gen_unit.emul));
	faults0 = SB_GEN_FAULTS();
	preempt_disable();
	c.cpu = smp_processor_id();
	if (!(c.flags & SB_KCALL_COLD))
		sb_claim_fpu();
	sb_gen_kloop(c.entry, rule->rax, args, 1, rule->set_rdx ? &rule->rdx : NULL, 0, &ks);
	preempt_enable();
	mutex_unlock(&sb_lock);
	if (SB_GEN_FAULTS() != faults0) {
		ret = -EOPNOTSUPP;	/* an XSAVE variant this CPU lacks */
		goto out_free;
	}
	c.status = ks.last;
	memcpy(c.regs, args->regs, sizeof(c.regs));
	if (copy_to_user(uarg, &c, sizeof(c)))
		ret = -EFAULT;
out_free:
	if (xarea)
		free_pages(xarea, xorder);
	kfree(args);
	return ret;
}

static long sb_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case SB_IOC_CAPS:
		return sb_ioctl_caps(uarg);
	case SB_IOC_ENTRY:
		return sb_ioctl_entry(uarg);
	case SB_IOC_RUN:
		return sb_ioctl_run(uarg);
	case SB_IOC_CALL:
		return sb_ioctl_call(uarg);
	default:
		return -ENOTTY;
	}
}

static int sb_open(struct inode *inode, struct file *f)
{
	/* The device runs privileged instructions and masks interrupts. */
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	return 0;
}

static const struct file_operations sb_fops = {
	.owner = THIS_MODULE,
	.open = sb_open,
	.unlocked_ioctl = sb_ioctl,
	.compat_ioctl = NULL,	/* 64-bit callers only */
	.llseek = noop_llseek,
};

static struct miscdevice sb_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "seambench",
	.fops = &sb_fops,
	.mode = 0600,
};

static int __init sb_init(void)
{
	struct sb_env e;
	int kx, ret;

	if (sb_gen_unit.abi_version != SB_ABI_VERSION) {
		pr_err("generated unit has ABI %llu, module expects %d\n",
		       sb_gen_unit.abi_version, SB_ABI_VERSION);
		return -EINVAL;
	}
	mutex_lock(&sb_lock);
	sb_probe_all(&e);
	mutex_unlock(&sb_lock);
	for (kx = 0; kx < SB_KX_COUNT; kx++)
		pr_info("%s: %s\n", sb_kx_names[kx], sb_cap[kx].why);
	ret = misc_register(&sb_misc);
	if (ret)
		return ret;
	pr_info("/dev/seambench ready: %llu generated wrappers, called directly\n", sb_gen_unit.count);
	return 0;
}

static void __exit sb_exit(void)
{
	misc_deregister(&sb_misc);
}

module_init(sb_init);
module_exit(sb_exit);
MODULE_LICENSE("GPL");	/* kernel_fpu_begin_mask/kernel_fpu_end are GPL-only exports */
MODULE_DESCRIPTION("seambench: per-call cost of SEAMCALL/TDCALL calling conventions");
