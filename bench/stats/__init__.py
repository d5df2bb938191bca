"""Stage "stats" (the lowest): pure statistics on figures, no I/O, no native code.

summary      medians, order-statistic CIs, t quantiles, bench ab's outlying processes
noise        the between-run variance: sessions, replicates, estimates by moments
verdict      the one decision rule (decide's zones, Holm over a comparison, estimates with
             within + between variance), shared by `bench compare`, `bench ab`,
             `bench history --bisect` and the dashboard
changepoints steps in a per-commit series (asv's detector)
"""
