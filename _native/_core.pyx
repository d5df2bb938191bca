# cython: language_level=3, boundscheck=False, wraparound=False
"""The native hot path: generated convention code, the timed loop, CPU probes.

Python calls in here once per measurement (thousands of calls); it never sits
between two measured calls.
"""
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy, memset
from cpython.array cimport array, clone

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)

cdef extern from "sb_abi.h" nogil:
    ctypedef uint64_t sb_u64
    struct sb_args:
        sb_u64 regs[13]
        sb_u64 rbp_slot
        sb_u64 fpu_mask
        sb_u64 xsave_area
    ctypedef sb_u64 (*sb_conv_fn)(sb_u64 leaf, sb_args *args)
    unsigned int sb_slot_order(unsigned int s, unsigned int n, unsigned int j)
    struct sb_code_range:
        const void *lo
        const void *hi
    struct sb_gen_entry:
        const char *convention
        const char *crossing
        const char *leaf
        sb_conv_fn fn
        sb_code_range code[3]
    struct sb_emul_cfg:
        sb_u64 serialize_mode
        sb_u64 latency_iters
        sb_u64 avx_reset_mask
        sb_u64 poison
        sb_u64 poison_area
    struct sb_gen_unit:
        sb_u64 abi_version
        sb_u64 count
        const sb_gen_entry *entries
        sb_emul_cfg *emul
    int SB_ABI_VERSION
    int SB_NREGS

cdef extern from "measure.h" nogil:
    int SB_SET_MAX
    int SB_REF_MAX_HUNDREDS
    int SB_REF_PIECES
    struct sb_set_req:
        uint32_t n_fns
        const sb_conv_fn *fns
        const sb_u64 *leaves
        sb_args *const *args
        uint32_t n_calls
        uint32_t n_samples
        uint32_t first_sample
        uint32_t ref_hundreds
        uint64_t *ticks
        uint64_t *t_start
        uint64_t *probe
        uint64_t gate_ticks
        uint32_t gate_max
        uint32_t *waited
        int perf_fd
        uint32_t n_events
        uint64_t *events
    int sb_measure_set(const sb_set_req *req)
    sb_u64 sb_empty(sb_u64 leaf, sb_args *args)
    sb_u64 sb_call_once(sb_conv_fn fn, sb_u64 leaf, sb_args *args)
    void sb_cpuid(uint32_t leaf, uint32_t sub, uint32_t out[4])
    uint64_t sb_xgetbv(uint32_t index)
    double sb_tsc_hz(double seconds)
    uint64_t sb_chain_ticks(uint64_t hundreds)
    int SB_PROBE_OPS
    int SB_GATE_RUN
    unsigned int SB_GATE_MAX
    uint64_t sb_probe_ticks()
    int sb_ioctl_pair_ticks(int fd, unsigned long req, void *a, void *b, uint32_t n, int dirty,
                            uint64_t *ticks_a, uint64_t *ticks_b)
    void sb_timed_code(const void **lo, const void **hi)
    int SB_PERF_NEVENTS
    const char *sb_perf_event_names[5]
    int sb_perf_open(int *errnos, int *slot)

cdef extern from *:
    """
    extern const struct sb_gen_unit sb_gen_unit;
    static const struct sb_gen_unit *sb_builtin_unit(void) { return &sb_gen_unit; }
    """
    const sb_gen_unit *sb_builtin_unit()

ABI_VERSION = SB_ABI_VERSION
SET_MAX = SB_SET_MAX
REF_MAX_HUNDREDS = SB_REF_MAX_HUNDREDS
REF_PIECES = SB_REF_PIECES
PROBE_OPS = SB_PROBE_OPS
GATE_RUN = SB_GATE_RUN
GATE_MAX = SB_GATE_MAX
EMPTY_FN = <size_t>&sb_empty


cdef class Unit:
    """A table of generated wrappers: built into this module, or a compiled user file."""
    cdef const sb_gen_unit *u
    cdef object keepalive

    @staticmethod
    def builtin():
        cdef Unit self = Unit.__new__(Unit)
        self.u = sb_builtin_unit()
        return self

    @staticmethod
    def at(size_t address, keepalive):
        """The unit at `address` (from dlopen); `keepalive` holds the library open."""
        cdef Unit self = Unit.__new__(Unit)
        self.u = <const sb_gen_unit *>address
        self.keepalive = keepalive
        if self.u.abi_version != SB_ABI_VERSION:
            raise ValueError(f"generated unit has ABI version {self.u.abi_version}, "
                             f"this core expects {SB_ABI_VERSION}; rebuild it")
        return self

    def entries(self):
        """[(convention, crossing, leaf, function address)]"""
        out = []
        for i in range(self.u.count):
            e = self.u.entries[i]
            out.append((e.convention.decode(), e.crossing.decode(), e.leaf.decode(), <size_t>e.fn))
        return out

    def code_ranges(self):
        """{function address: [(lo, hi)]}: the machine code one call of each entry executes
        (C wrapper, assembly wrapper, emulated stub; empty ranges left out)."""
        out = {}
        for i in range(self.u.count):
            e = self.u.entries[i]
            out[<size_t>e.fn] = [(<size_t>e.code[j].lo, <size_t>e.code[j].hi) for j in range(3)
                                 if e.code[j].hi != NULL]
        return out

    def set_emulation(self, serialize_mode, latency_iters=0, avx_reset_mask=0, poison=0, poison_area=0):
        # poison_area (safety checker only) resets to off on every timed setup
        self.u.emul.serialize_mode = serialize_mode
        self.u.emul.latency_iters = latency_iters
        self.u.emul.avx_reset_mask = avx_reset_mask
        self.u.emul.poison = poison
        self.u.emul.poison_area = poison_area


cdef class Args:
    """A struct sb_args and its XSAVE area, each at the start of a page of its own, zeroed: the
    same offsets in every process (see SB_STACK_PAGE_OFFSET in measure.h)."""
    cdef sb_args *p
    cdef void *area
    cdef readonly size_t area_size

    def __cinit__(self, size_t xsave_size=4096, uint64_t fpu_mask=0):
        if posix_memalign(<void **>&self.p, 4096, sizeof(sb_args)) != 0:
            raise MemoryError()
        memset(self.p, 0, sizeof(sb_args))
        self.area_size = (xsave_size + 63) & ~(<size_t>63)
        if posix_memalign(&self.area, 4096, self.area_size) != 0:
            raise MemoryError()
        memset(self.area, 0, self.area_size)
        self.p.xsave_area = <size_t>self.area
        self.p.fpu_mask = fpu_mask

    def __dealloc__(self):
        free(self.p)
        free(self.area)

    @property
    def regs(self):
        return [self.p.regs[i] for i in range(SB_NREGS)]

    @regs.setter
    def regs(self, values):
        if len(values) != SB_NREGS:
            raise ValueError(f"expected {SB_NREGS} register values")
        for i in range(SB_NREGS):
            self.p.regs[i] = values[i]


    @property
    def fpu_mask(self):
        return self.p.fpu_mask

    @fpu_mask.setter
    def fpu_mask(self, uint64_t m):
        self.p.fpu_mask = m


def call_once(size_t fn, uint64_t leaf, Args args):
    """One call (not timed): the status it returned."""
    if fn == 0:
        raise ValueError("null function")
    return sb_call_once(<sb_conv_fn>fn, leaf, args.p)


def measure_set(fns, leaves, args, uint32_t n_calls, uint32_t n_samples, int perf_fd=-1,
                uint32_t n_events=0, uint32_t ref_hundreds=0, uint64_t gate_ticks=0, uint32_t gate_max=0,
                uint32_t first_sample=0):
    """Interleaved batches of up to SB_SET_MAX functions (addresses), each with its leaf
    number and Args, plus, with ref_hundreds, a reference batch of 100 * ref_hundreds
    dependent ADDs (timed in REF_PIECES pieces: the median one times REF_PIECES) and the
    load/store probe (sb_probe_ticks).  Returns (ticks, t_start,
    events, probe): TSC ticks per batch ([sample][slot], row-major; slots are the functions,
    then the reference), the TSC at each sample's start, event deltas over each batch
    ([sample][slot][event]), and the probe's TSC ticks per sample, the slowest of those timed
    after each batch (empty without a reference).  With gate_ticks, each sample starts once
    GATE_RUN probes in a row took at most gate_ticks, or after gate_max probes; a fifth array
    says how many probes each sample waited (empty without a gate).  Batches run in the
    order slot_order gives, the samples numbered from first_sample."""
    cdef uint32_t n = len(fns)
    if n == 0 or n > SB_SET_MAX or len(leaves) != n or len(args) != n:
        raise ValueError(f"need 1..{SB_SET_MAX} functions with one leaf and one Args each")
    if any(f == 0 for f in fns):
        raise ValueError("null function")
    if n_calls == 0 or n_calls % 4:
        raise ValueError("n_calls must be a positive multiple of 4")
    if n_samples == 0:
        raise ValueError("n_samples must be positive")
    if ref_hundreds > <uint32_t>SB_REF_MAX_HUNDREDS or ref_hundreds % SB_REF_PIECES:
        raise ValueError(f"ref_hundreds must be a multiple of {SB_REF_PIECES} up to {SB_REF_MAX_HUNDREDS}")
    if gate_ticks and not 0 < gate_max <= SB_GATE_MAX:
        raise ValueError(f"gate_max must be 1..{SB_GATE_MAX} with a gate")
    cdef uint32_t slots = n + (1 if ref_hundreds else 0)
    cdef sb_conv_fn c_fns[16]
    cdef sb_u64 c_leaves[16]
    cdef sb_args *c_args[16]
    cdef Args a
    for i in range(n):
        a = args[i]
        c_fns[i] = <sb_conv_fn><size_t>fns[i]
        c_leaves[i] = leaves[i]
        c_args[i] = a.p
    cdef array tmpl = array('Q')
    cdef array ticks = clone(tmpl, n_samples * slots, True)
    cdef array t0 = clone(tmpl, n_samples, True)
    cdef array ev = clone(tmpl, n_samples * slots * n_events if perf_fd >= 0 else 0, True)
    cdef array probe = clone(tmpl, n_samples if ref_hundreds else 0, True)
    cdef array waited = clone(array('I'), n_samples if gate_ticks else 0, True)
    cdef sb_set_req r
    r.n_fns = n
    r.fns, r.leaves, r.args = c_fns, c_leaves, c_args
    r.n_calls, r.n_samples, r.ref_hundreds = n_calls, n_samples, ref_hundreds
    r.first_sample = first_sample
    r.ticks = ticks.data.as_ulonglongs
    r.t_start = t0.data.as_ulonglongs
    r.probe = probe.data.as_ulonglongs if ref_hundreds else NULL
    r.gate_ticks, r.gate_max = gate_ticks, gate_max
    r.waited = waited.data.as_uints if gate_ticks else NULL
    r.perf_fd = perf_fd
    r.n_events = n_events if perf_fd >= 0 else 0
    r.events = ev.data.as_ulonglongs if perf_fd >= 0 else NULL
    cdef int rc
    with nogil:
        rc = sb_measure_set(&r)
    if rc != 0:
        raise OSError(-rc, f"sb_measure_set failed ({rc})")
    return ticks, t0, ev, probe, waited


def slot_order(unsigned int s, unsigned int n):
    """The slots of sample s of a rotation over n slots, in the order they run (sb_slot_order:
    the native loop's and the kernel module's order)."""
    if n == 0:
        raise ValueError("n must be positive")
    return [sb_slot_order(s, n, j) for j in range(n)]


def ioctl_pair_ticks(int fd, unsigned long req, size_t a, size_t b, uint32_t n, int dirty):
    """TSC ticks of n ioctl(fd, req, a) and n ioctl(fd, req, b), alternating, each from user
    space with the vector registers made live first up to `dirty` (0 none .. 3 AVX-512; the
    caller checks the CPU has them).  a, b: addresses of the argument structs.  Returns
    (ticks_a, ticks_b); OSError on the first failing call."""
    if not a or not b or n == 0 or not 0 <= dirty <= 3:
        raise ValueError("need two argument addresses, n > 0 and dirty in 0..3")
    cdef array tmpl = array('Q')
    cdef array ta = clone(tmpl, n, True)
    cdef array tb = clone(tmpl, n, True)
    cdef int rc
    with nogil:
        rc = sb_ioctl_pair_ticks(fd, req, <void *>a, <void *>b, n, dirty, ta.data.as_ulonglongs,
                                 tb.data.as_ulonglongs)
    if rc != 0:
        raise OSError(-rc, f"ioctl failed ({rc})")
    return ta, tb


def timed_code():
    """(lo, hi): the address range of the timed loop's own code (section sb_timed)."""
    cdef const void *lo
    cdef const void *hi
    sb_timed_code(&lo, &hi)
    return <size_t>lo, <size_t>hi


def cpuid(uint32_t leaf, uint32_t sub=0):
    cdef uint32_t out[4]
    sb_cpuid(leaf, sub, out)
    return out[0], out[1], out[2], out[3]


def xgetbv(uint32_t index):
    return sb_xgetbv(index)



def tsc_hz(double seconds=0.05):
    cdef double hz
    with nogil:
        hz = sb_tsc_hz(seconds)
    return hz


def chain_ticks(uint64_t hundreds):
    cdef uint64_t t
    with nogil:
        t = sb_chain_ticks(hundreds)
    return t


def perf_open():
    """(leader fd or -1, {event name: slot or None}, {event name: errno})"""
    cdef int errnos[5]
    cdef int slot[5]
    fd = sb_perf_open(errnos, slot)
    names = [sb_perf_event_names[i].decode() for i in range(SB_PERF_NEVENTS)]
    return (fd, {n: (slot[i] if slot[i] >= 0 else None) for i, n in enumerate(names)},
            {n: errnos[i] for i, n in enumerate(names)})


# --- safety checker (check.c): untimed, run only in a forked child ----------------

cdef extern from "sys/mman.h" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    int PROT_READ, PROT_WRITE, MAP_SHARED, MAP_ANONYMOUS
    void *MAP_FAILED

cdef extern from "check.h" nogil:
    int SB_CK_NSAVED, SB_CK_NGREGS, SB_CK_FAULT_EXIT
    struct sb_check:
        sb_u64 fn, leaf, args, vec_mask, vec_in, vec_out
        sb_u64 set[6]
        sb_u64 status
        sb_u64 after[6]
        sb_u64 rsp_before, rsp_after, rflags_after, saved_rsp
        sb_u64 out_regs[13]
        sb_u64 done, fault_sig, fault_code, fault_addr
        sb_u64 fault_gregs[23]
    int sb_check_run(sb_check *c)
    struct sb_nmi:
        sb_u64 fn, leaf, args, post_iters, duration_us, interval_us
        sb_u64 samples[2]
        sb_u64 garbage[2]
        sb_u64 bad_rbp[2]
        sb_u64 elsewhere, calls, done
    int sb_nmi_run(sb_nmi *n)

CHECK_FAULT_EXIT = SB_CK_FAULT_EXIT
# glibc REG_* order of ucontext gregs
GREG_NAMES = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx", "rdx", "rax",
              "rcx", "rsp", "rip", "efl", "csgsfs", "err", "trapno", "oldmask", "cr2")


cdef class SharedBlock:
    """Memory shared with forked children (MAP_SHARED): a struct sb_check, a struct sb_nmi and
    three 64-byte aligned XSAVE images (caller vectors in, vectors out, the stub's poison image).
    A child writes its results here, and the parent reads them even if the child crashed."""
    cdef char *base
    cdef size_t size
    cdef readonly size_t area_size
    cdef sb_check *c
    cdef sb_nmi *n

    def __cinit__(self, size_t area_size):
        self.area_size = (area_size + 63) & ~(<size_t>63)
        self.size = 4096 + 3 * self.area_size
        cdef void *p = mmap(NULL, self.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        if p == MAP_FAILED:
            raise MemoryError("mmap of the shared check block failed")
        self.base = <char *>p
        memset(self.base, 0, self.size)
        self.c = <sb_check *>self.base
        self.n = <sb_nmi *>(self.base + 2048)

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.size)

    cdef char *_area(self, int i) except NULL:
        """0: caller vectors in, 1: vectors out, 2: the stub's poison image."""
        if not 0 <= i < 3:
            raise IndexError(f"XSAVE area {i}: there are 3 (0..2)")
        return self.base + 4096 + i * self.area_size

    def area_address(self, int i):
        return <size_t>self._area(i)

    def write_area(self, int i, bytes data):
        if len(data) > self.area_size:
            raise ValueError(f"XSAVE image of {len(data)} bytes does not fit {self.area_size}")
        memset(self._area(i), 0, self.area_size)
        memcpy(self._area(i), <const char *>data, len(data))

    def read_area(self, int i):
        return self._area(i)[:self.area_size]

    def prepare_check(self, size_t fn, uint64_t leaf, Args args, uint64_t vec_mask, caller_values):
        if fn == 0:
            raise ValueError("null function")
        if len(caller_values) != SB_CK_NSAVED:
            raise ValueError(f"expected {SB_CK_NSAVED} caller values (rbx rbp r12 r13 r14 r15)")
        memset(self.c, 0, sizeof(sb_check))
        memset(self._area(1), 0, self.area_size)
        self.c.fn, self.c.leaf, self.c.args = fn, leaf, <size_t>args.p
        self.c.vec_mask = vec_mask
        self.c.vec_in, self.c.vec_out = <size_t>self._area(0), <size_t>self._area(1)
        for i in range(SB_CK_NSAVED):
            self.c.set[i] = caller_values[i]

    def run_check(self):
        """The call itself: only in a forked child (installs fault handlers, may crash)."""
        return sb_check_run(self.c)

    def check_result(self):
        c = self.c
        return dict(done=bool(c.done), status=c.status, set=[c.set[i] for i in range(SB_CK_NSAVED)],
                    after=[c.after[i] for i in range(SB_CK_NSAVED)], rsp_before=c.rsp_before,
                    rsp_after=c.rsp_after, rflags=c.rflags_after,
                    out_regs=[c.out_regs[i] for i in range(SB_NREGS)], fault_sig=c.fault_sig,
                    fault_code=c.fault_code, fault_addr=c.fault_addr,
                    fault_regs={GREG_NAMES[i]: c.fault_gregs[i] for i in range(SB_CK_NGREGS)})

    def prepare_nmi(self, size_t fn, uint64_t leaf, Args args, uint64_t post_iters, uint64_t duration_us,
                    uint64_t interval_us):
        if fn == 0:
            raise ValueError("null function")
        if not 0 < interval_us < 1000000:
            raise ValueError("interval_us must be 1..999999")
        memset(self.n, 0, sizeof(sb_nmi))
        self.n.fn, self.n.leaf, self.n.args = fn, leaf, <size_t>args.p
        self.n.post_iters, self.n.duration_us, self.n.interval_us = post_iters, duration_us, interval_us

    def run_nmi(self):
        """Only in a forked child: installs a SIGALRM handler and an interval timer."""
        return sb_nmi_run(self.n)

    def nmi_result(self):
        n = self.n
        return dict(done=bool(n.done), calls=n.calls, elsewhere=n.elsewhere,
                    samples=[n.samples[0], n.samples[1]], garbage=[n.garbage[0], n.garbage[1]],
                    bad_rbp=[n.bad_rbp[0], n.bad_rbp[1]])
