/* Test tree: the argument struct and prototypes, in the kernel's shape. */
#ifndef TEST_SHARED_TDX_H
#define TEST_SHARED_TDX_H
#define TDX_HCALL_HAS_OUTPUT	BIT(0)
#ifndef __ASSEMBLY__
struct tdx_module_args {
	u64 rcx;	/* six that every variant passes */
	u64 rdx;
	u64 r8;
	u64 r9;
	u64 r10;
	u64 r11;
	u64 r12;	/* seven more for the saved variants */
	u64 r13;
	u64 r14;
	u64 r15;
	u64 rbx;
	u64 rdi;
	u64 rsi;
};

struct tdx_module_output {
	u64 rcx;
	u64 rdx;
	u64 r8;
	u64 r9;
	u64 r10;
	u64 r11;
};

u64 __tdcall(u64 fn, struct tdx_module_args *args);
u64 __tdx_module_call(u64 fn, u64 rcx, u64 rdx, u64 r8, u64 r9,
		      struct tdx_module_output *out);
#endif
#endif
