"""pytest plugin that .ci/run loads on free-threaded builds: fail the run if the GIL got switched on.

CPython 3.13t turns the GIL back on, for the rest of the process, when it imports an
extension module that does not declare free-threading support. Tests that then pass
prove nothing about running without the GIL, so the run fails instead.
"""  # noqa: INP001 - loaded with -p from PYTHONPATH=.ci, not part of a package

from __future__ import annotations

import sys
import sysconfig

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Set a failing exit status when a free-threaded interpreter ends the run with the GIL on."""
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return
    enabled = sys._is_gil_enabled()  # type: ignore[attr-defined]  # 3.13+ only
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if enabled:
        if reporter is not None:
            reporter.write_line(
                "gil_check: the GIL was enabled during this run (an extension without free-threading "
                "support was imported); the run fails",
                red=True,
            )
        if exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line("gil_check: sys._is_gil_enabled() is False at the end of the run")
