# The kernel module (_native/kmod) and its proof in a booted kernel.
#   make kmod       build seambench.ko for the running kernel (KDIR=... for another)
#   make test-kmod  install QEMU + Debian's kernel, boot it under TCG, load and exercise the
#                   module there (scripts/test-kmod); skips with a reason where it cannot
.PHONY: kmod test-kmod
kmod: install
	$(MAKE) -C _native/kmod PYTHON=$(abspath $(BIN))/python $(if $(KDIR),KDIR=$(KDIR))

test-kmod: install
	$(BIN)/python scripts/test-kmod --python $(abspath $(BIN))/python
