/* The ioctl interface of /dev/seambench, shared by the module and by
 * bench/native/kmod.py (which mirrors these layouts with ctypes; a host-side test
 * compiles this header and compares offsets).  Fixed-width fields only, no
 * implicit padding, every struct a multiple of 8 bytes. */
#ifndef SB_KMOD_UAPI_H
#define SB_KMOD_UAPI_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/ioctl.h>
#else
#include <stdint.h>
#include <sys/ioctl.h>
typedef uint32_t __u32;
typedef int32_t __s32;
typedef uint64_t __u64;
#endif

#include "sb_abi.h"

#define SB_KMOD_API_VERSION 4

/* Crossings the module knows.  Nothing else is ever issued. */
#define SB_KX_EMULATED 0
#define SB_KX_SEAMCALL 1
#define SB_KX_TDCALL 2
#define SB_KX_VMCALL 3
#define SB_KX_VMMCALL 4
#define SB_KX_COUNT 5
#define SB_KX_NONE 0xffffffffu	/* an entry whose crossing the module refuses */

/* What the capability probe concluded for one crossing. */
#define SB_KS_AVAILABLE 0	/* the instruction ran and answered as expected */
#define SB_KS_UNAVAILABLE 1	/* probed: it faulted or reported failure */
#define SB_KS_REFUSED 2		/* not probed: executing it here could do harm */

/* Why (SB_KR_*). */
#define SB_KR_OK 0
#define SB_KR_FAULT 1		/* probe raised an exception (fault holds the vector) */
#define SB_KR_VMFAILINVALID 2	/* SEAMCALL: CF=1, no SEAM module answering */
#define SB_KR_STATUS 3		/* instruction completed with an error status */
#define SB_KR_TD_GUEST 4	/* wrong side of TDX: this is a TD guest */
#define SB_KR_NOT_TD_GUEST 5
#define SB_KR_HYPERVISOR 6	/* under a hypervisor that would take the exit */
#define SB_KR_NOT_KVM 7		/* not a KVM guest */
#define SB_KR_VENDOR 8		/* the other vendor's instruction */
#define SB_KR_BARE_METAL 9

/* Capability flags. */
#define SB_KF_HYPERVISOR (1u << 0)	/* CPUID.1:ECX[31] */
#define SB_KF_KVM (1u << 1)		/* KVM signature in the hypervisor leaves */
#define SB_KF_TCG (1u << 2)		/* QEMU's software CPU */
#define SB_KF_TD_GUEST (1u << 3)	/* CPUID.0x21 says IntelTDX */
#define SB_KF_OSXSAVE (1u << 4)
#define SB_KF_XGETBV1 (1u << 5)
#define SB_KF_SERIALIZE (1u << 6)
#define SB_KF_VMX (1u << 7)		/* CPUID.1:ECX[5] */
#define SB_KF_TDX_HOST_BUILT (1u << 8)	/* kernel built with CONFIG_INTEL_TDX_HOST */
#define SB_KF_TDX_GUEST_BUILT (1u << 9)	/* kernel built with CONFIG_INTEL_TDX_GUEST */
#define SB_KF_DIRECT_CALLS (1u << 10)	/* batches call generated code directly */
#define SB_KF_FPU_USABLE (1u << 11)	/* kernel_fpu_begin allowed in the ioctl */

#define SB_KWHY_LEN 120

struct sb_kx_cap {
	__u32 state;		/* SB_KS_* */
	__u32 reason;		/* SB_KR_* */
	__s32 fault;		/* exception vector the probe caught, -1 if none */
	__u32 probed;		/* 1 if the probe executed the instruction */
	__u64 status;		/* RAX after the probe */
	char why[SB_KWHY_LEN];	/* one line for people */
};

struct sb_kcaps {
	__u32 size;		/* in: sizeof(struct sb_kcaps) */
	__u32 api_version;	/* out: SB_KMOD_API_VERSION */
	__u32 abi_version;	/* out: SB_ABI_VERSION of the generated unit */
	__u32 n_entries;	/* out: rows in the generated table */
	__u32 flags;		/* out: SB_KF_* */
	__u32 xsave_size_xcr0;	/* CPUID(0xD,0).EBX: XSAVE area for XCR0 */
	__u32 xsave_size_max;	/* CPUID(0xD,0).ECX: for every supported component */
	__u32 xsaves_size;	/* CPUID(0xD,1).EBX: XSAVES area for XCR0|XSS */
	__u64 xcr0;
	__u64 xinuse;		/* XGETBV(1) at the time of the call, 0 if unsupported */
	__u64 tsc_khz;
	__u64 budget_ticks;	/* longest interrupt-off batch, in TSC ticks */
	char vendor[16];	/* CPUID(0) */
	char hv_sig[16];	/* CPUID(0x40000000) signature, "" on bare metal */
	char kernel[64];	/* utsname release */
	struct sb_kx_cap x[SB_KX_COUNT];
};

struct sb_kentry {
	__u32 index;		/* in */
	__u32 crossing;		/* out: SB_KX_* or SB_KX_NONE */
	__u32 runnable;		/* out: 1 if the module would run it here now */
	__u32 count;		/* out: number of entries */
	char convention[64];
	char crossing_name[32];
	char leaf[32];
};

#define SB_KMAX_SAMPLES (1u << 20)
#define SB_KMAX_CALLS (1u << 16)
#define SB_KMAX_LATENCY (1u << 20)
#define SB_KMAX_REF_HUNDREDS (1u << 16)

/* The slots of one sample, in their order in `out` (not the order they ran in:
 * sample s runs them starting at slot s % n, n = 3, or 2 without a reference). */
#define SB_KSLOT_ENTRY 0	/* calls_per_sample calls of the entry */
#define SB_KSLOT_EMPTY 1	/* the same calls of an empty function, same leaf setup */
#define SB_KSLOT_REF 2		/* ref_hundreds x 100 dependent register ADDs: one core cycle each */
#define SB_KSLOTS 3

/* RUN: per sample, TSC ticks of each slot; ticks/(ref_hundreds*100) of the
 * reference is that sample's TSC ticks per core cycle. */
struct sb_krun {
	__u32 size;		/* in: sizeof(struct sb_krun) */
	__u32 entry;		/* in: row of the generated table (SB_IOC_ENTRY) */
	__u32 calls_per_sample;	/* in: 1..SB_KMAX_CALLS */
	__u32 samples;		/* in: 1..SB_KMAX_SAMPLES */
	__u32 flags;		/* in: 0 (none defined) */
	__u32 ref_hundreds;	/* in: 0 (no reference slot)..SB_KMAX_REF_HUNDREDS */
	__u64 out;		/* in: user address of samples x SB_KSLOTS u64 TSC ticks */
	__u64 out_len;		/* in: bytes at out */
	struct sb_emul_cfg emul;	/* in: emulated stub knobs; zero for real crossings */
	__u64 status;		/* out: RAX of the last timed call of the entry */
	__u64 bad_status;	/* out: timed entry calls whose RAX was not the crossing's success value */
	__u64 first_bad_status;	/* out: RAX of the first of them (0 if none) */
	__u64 warmup_ticks;	/* out: one untimed sample (all slots), interrupts on */
	__u64 budget_ticks;	/* out: interrupt-off limit per batch */
	__u32 batches;		/* out: interrupt-off batches it took */
	__u32 cpu;		/* out: the CPU the whole run stayed on */
	__u64 reserved[4];	/* in: 0 */
};

/* CALL: one untimed call of a kmod:emulated entry (the stub, never an instruction), with
 * regs[] as its struct sb_args before and, on return, after it: what the wrapper wrote back. */
struct sb_kcall {
	__u32 size;		/* in: sizeof(struct sb_kcall) */
	__u32 entry;		/* in: a row whose crossing is emulated */
	__u64 regs[SB_NREGS];	/* in/out: rcx rdx r8..r15 rbx rdi rsi, as in struct sb_args */
	__u64 status;		/* out: RAX */
	__u32 cpu;		/* out: where it ran */
	__u32 flags;		/* in: 0 or SB_KCALL_COLD */
	__u64 reserved[2];	/* in: 0 */
};
/* The FPU is not claimed first: a kernel_fpu entry's kernel_fpu_begin() then saves the
 * caller's live user registers, and the return to user space restores them (timed from
 * user space, that is kernel_fpu's cost to the first call after user code). */
#define SB_KCALL_COLD 1u

#define SB_IOC_MAGIC 0xB5
#define SB_IOC_CAPS _IOWR(SB_IOC_MAGIC, 1, struct sb_kcaps)
#define SB_IOC_ENTRY _IOWR(SB_IOC_MAGIC, 2, struct sb_kentry)
#define SB_IOC_RUN _IOWR(SB_IOC_MAGIC, 3, struct sb_krun)
#define SB_IOC_CALL _IOWR(SB_IOC_MAGIC, 4, struct sb_kcall)

#endif
