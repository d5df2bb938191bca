/* Test tree: one macro for every variant (host: SEAMCALL and its CF check; ret: store the
 * outputs; saved: all thirteen registers, callee-saved pushed, struct pointer on the stack). */
#include <asm/asm-offsets.h>
#include <asm/frame.h>
#include <asm/asm.h>
#include <asm/tdx.h>

#define tdcall		.byte 0x66,0x0f,0x01,0xcc
#define seamcall	.byte 0x66,0x0f,0x01,0xcf

.macro CALL_TDX_MODULE host:req ret=0 saved=0
	FRAME_BEGIN
	mov	%rdi, %rax
	movq	TDX_MODULE_rcx(%rsi), %rcx
	movq	TDX_MODULE_rdx(%rsi), %rdx
	movq	TDX_MODULE_r8(%rsi), %r8
	movq	TDX_MODULE_r9(%rsi), %r9
	movq	TDX_MODULE_r10(%rsi), %r10
	movq	TDX_MODULE_r11(%rsi), %r11
.if \saved
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	TDX_MODULE_r12(%rsi), %r12
	movq	TDX_MODULE_r13(%rsi), %r13
	movq	TDX_MODULE_r14(%rsi), %r14
	movq	TDX_MODULE_r15(%rsi), %r15
	movq	TDX_MODULE_rbx(%rsi), %rbx
.if \ret
	pushq	%rsi
.endif
	movq	TDX_MODULE_rdi(%rsi), %rdi
	movq	TDX_MODULE_rsi(%rsi), %rsi
.endif
.if \host
1:	seamcall
	jc	.Lfail\@
.else
	tdcall
.endif
.if \ret
.if \saved
	pushq	%rax
	movq	8(%rsp), %rax
	movq	%rsi, TDX_MODULE_rsi(%rax)
	popq	%rax
	popq	%rsi
	movq	%r12, TDX_MODULE_r12(%rsi)
	movq	%r13, TDX_MODULE_r13(%rsi)
	movq	%r14, TDX_MODULE_r14(%rsi)
	movq	%r15, TDX_MODULE_r15(%rsi)
	movq	%rbx, TDX_MODULE_rbx(%rsi)
	movq	%rdi, TDX_MODULE_rdi(%rsi)
.endif
	movq	%rcx, TDX_MODULE_rcx(%rsi)
	movq	%rdx, TDX_MODULE_rdx(%rsi)
	movq	%r8, TDX_MODULE_r8(%rsi)
	movq	%r9, TDX_MODULE_r9(%rsi)
	movq	%r10, TDX_MODULE_r10(%rsi)
	movq	%r11, TDX_MODULE_r11(%rsi)
.endif
.Ldone\@:
.if \saved
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
.endif
	FRAME_END
	RET
.if \host
.Lfail\@:
	mov	$TDX_SEAMCALL_VMFAILINVALID, %rax
.if \ret && \saved
	popq	%rsi
.endif
	jmp	.Ldone\@
	_ASM_EXTABLE_FAULT(1b, .Lfail\@)
.endif
.endm
