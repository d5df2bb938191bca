"""Stage "native": everything that needs the compiled extension bench.native._core
(built by setup.py from _native/) or this machine's hardware.

registry  the built-in wrapper table, and user conventions compiled on demand
machine   what this machine is (CPUID, XGETBV, /proc, /sys), its clocks, pinning
backends  how a measured call crosses, and the probe of whether it can here
kmod      client of the kernel module's device, and bench kmod build|load|unload|status
errors    NativeError, importable where the extension is not built

This file imports nothing, so that `import bench.native.errors` works without a build.
"""
