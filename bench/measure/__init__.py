"""Stage "measure": time benchmarks through the native loop and turn them into records.

model        Spec, SampleBlock, Measurement, Prepared and the stage's errors (pure data)
prepare      Context, calibrate, prepare, measure_one (one benchmark in this process)
kmod_timer   the kmod:* backends, timed through the kernel module's device
worker       `python -m bench.measure.worker`: pyperf's manager and worker processes
driver       runs the suite through pyperf and judges its workers (bench run)
ab           `bench ab`: two conventions interleaved, in several processes
runner       expand a suite into a plan, skip what cannot run here, records
validate     `bench validate`: injected known cost must come back out
pytest_plugin  the `seambench` fixture for pytest-benchmark

This file imports nothing: importing one module of the stage costs only that module.
"""
