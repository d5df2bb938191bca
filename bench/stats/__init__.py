"""Stage "stats" (the lowest): pure statistics on figures, no I/O, no native code.

summary      medians, order-statistic CIs, bootstraps over workers and sessions
verdict      the one decision rule (decide) and compare_benchmarks, shared by
             `bench compare`, `bench history --bisect` and `bench ab`
changepoints steps in a per-commit series (asv's detector)
"""
