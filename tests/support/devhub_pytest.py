"""pytest glue for suites that run a devhub session fixture named `hub` (devhub_harness.py).

Import `pytest_runtest_makereport` into a conftest to activate the hook there.
"""

from __future__ import annotations

import os

import pytest
from devhub_harness import devhub_bin


def require_devhub_bin(how_to_build: str) -> str:
    """The devhub binary's path; ends the session (exit code 2) when it is missing."""
    path = devhub_bin()
    if not os.access(path, os.X_OK):
        pytest.exit(f"devhub binary not found at {path} ({how_to_build})", 2)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, append the end of devhub's log to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and "hub" in getattr(item, "funcargs", {}):
        rep.sections.append(("devhub log (tail)", item.funcargs["hub"].log_tail()))
