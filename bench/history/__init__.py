"""Stage "history": measure every commit of a git range with its own code (walk.Walker),
and bisect for the first slower one.  Reads and writes through bench.results; judges with
bench.stats.verdict, as `bench compare` does.  Imports nothing native: the commits' own
`bench run` subprocesses do the measuring.
"""
