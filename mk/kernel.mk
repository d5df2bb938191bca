# The kernel's own TDX call code, imported from Debian's kernel trees (bench kernel import).
#   make test-kernel-src  apt-get download linux-source-6.1 and -6.12, import their TDX call
#                         functions, run a short check and run on them; skips with a reason
#                         without apt or root (scripts/test-kernel-src)
.PHONY: test-kernel-src
test-kernel-src: install
	scripts/test-kernel-src $(abspath $(BIN))/bench
