"""seambench: what a SEAMCALL/TDCALL calling convention costs per call, and whether it is safe."""

__version__ = "0.1.0"
