/* Test tree: the guest side, and an old-style call with an output struct that keeps its
 * pointer in R12 (pushed) across the instruction. */
#include <asm/asm-offsets.h>
#include <linux/linkage.h>
#include "../../virt/vmx/tdx/tdxcall.S"

SYM_FUNC_START(__tdcall)
	CALL_TDX_MODULE host=0
SYM_FUNC_END(__tdcall)

SYM_FUNC_START(__tdx_module_call)
	FRAME_BEGIN
	push	%r12
	mov	%r9, %r12
	mov	%rdi, %rax
	mov	%r8, %r9
	mov	%rcx, %r8
	mov	%rsi, %rcx
	tdcall
	test	%r12, %r12
	jz	1f
	movq	%rcx, TDX_OUT_rcx(%r12)
	movq	%rdx, TDX_OUT_rdx(%r12)
	movq	%r8, TDX_OUT_r8(%r12)
	movq	%r9, TDX_OUT_r9(%r12)
	movq	%r10, TDX_OUT_r10(%r12)
	movq	%r11, TDX_OUT_r11(%r12)
1:	pop	%r12
	FRAME_END
	RET
SYM_FUNC_END(__tdx_module_call)
