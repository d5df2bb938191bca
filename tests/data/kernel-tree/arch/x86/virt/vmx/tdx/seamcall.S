/* Test tree: the host side. */
#include <linux/linkage.h>
#include "tdxcall.S"

SYM_FUNC_START(__seamcall_ret)
	CALL_TDX_MODULE host=1 ret=1
SYM_FUNC_END(__seamcall_ret)

SYM_FUNC_START(__seamcall_saved_ret)
	CALL_TDX_MODULE host=1 ret=1 saved=1
SYM_FUNC_END(__seamcall_saved_ret)
