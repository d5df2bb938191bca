"""`make bench-overhead` prints the table the README quotes: after pytest's own summary, since
pytest captures what a test prints."""
import pytest

_TABLE = []  # Markdown lines, filled by the tests through the overhead_table fixture


@pytest.fixture(scope="session")
def overhead_table():
    return _TABLE


def pytest_terminal_summary(terminalreporter):
    if _TABLE:
        terminalreporter.section("harness overhead (README: Why the loop lives in C)")
        for line in _TABLE:
            terminalreporter.write_line(line)
