import os

import pytest

from bench.config import Settings, load_builtin

# The suite's samplers wait little for a shared core to clear: on a loaded CI machine every
# sampler would otherwise spend its whole budget (bench.measure.sampler.CONTENTION_WAIT_S).
os.environ.setdefault("SEAMBENCH_CONTENTION_WAIT_S", "0.2")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """User conventions compile into a throwaway cache, not the developer's."""
    os.environ["SEAMBENCH_CACHE"] = str(tmp_path_factory.mktemp("seambench-cache"))


@pytest.fixture(scope="session")
def catalog():
    return load_builtin()


@pytest.fixture(scope="session")
def registry(catalog):
    from bench.native.registry import Registry
    return Registry(catalog)


@pytest.fixture(scope="session")
def pinned():
    from bench.native import machine
    before = os.sched_getaffinity(0)
    cpu = machine.pin()
    yield cpu
    os.sched_setaffinity(0, before)


@pytest.fixture(scope="session")
def fast():
    """Small but not tiny: enough samples for medians, a few seconds per test at most."""
    return Settings(runs=4, values=25, warmups=1, batch_us=50)
