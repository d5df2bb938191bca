"""Stage "report": results files in, text, Markdown, JSON, HTML or a Perfetto trace out.

compare    `bench compare A B`: per benchmark, both medians, the change, CI, p, verdict
dashboard  `bench dashboard`: a static site from results/ (templates/, static/)
trace      Perfetto traces of every sample (`bench run --trace`, `bench ab --trace`)

Imports nothing native: it works where the extension is not built.
"""
