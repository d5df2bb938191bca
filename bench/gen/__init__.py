"""Stage "gen": C source generated from the declarations (bench.config's catalog).

crossings  the instruction sequence of each crossing (emulated stub, VMCALL, SEAMCALL...)
codegen    conventions x crossings x leaves -> C; `python -m bench.gen.codegen` is run by
           setup.py (user flavor) and _native/kmod/Makefile (kernel flavor)
"""
