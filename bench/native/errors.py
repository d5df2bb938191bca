"""The native stage's error, in a module of its own: the CLI names it in its error handling,
and must be able to do so where the extension is not built (`bench compare`, `bench dashboard`)."""


class NativeError(RuntimeError):
    """A wrapper that cannot be found or built (no generated entry, no C compiler, a failed compile),
    or a machine that cannot do what was asked (a CPU outside the affinity set, a forced
    SEAMBENCH_SERIALIZE mode it lacks)."""
