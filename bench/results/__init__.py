"""Stage "results": results files on disk, and the git facts they are filed under.

store   pyperf BenchmarkSuite JSON, gzipped, values to their resolution: written atomically, never
        overwritten, loaded with a clear error
layout  the results folder's names (results/<machine>/<sha>[.<n>|-dirty-<n>].json[.gz]) and a fast reader
vcs     git: the measured tree's commit and state, commit subjects and dates

Nothing here imports native code or the measure stage (store.to_suite takes measurements
duck-typed), so the reading commands work where the extension is not built.
"""
