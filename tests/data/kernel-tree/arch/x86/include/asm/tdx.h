#include <asm/shared/tdx.h>
#ifndef __ASSEMBLY__
u64 __seamcall_ret(u64 fn, struct tdx_module_args *args);
u64 __seamcall_saved_ret(u64 fn, struct tdx_module_args *args);
#endif
