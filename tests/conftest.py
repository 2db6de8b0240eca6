"""Fixtures shared by the test files; the test doubles themselves live in ``tests/doubles.py``.

``--ignore-glob=notebooks/*.py`` (pyproject) keeps pytest from importing the
tutorials' jupytext sources, which are scripts: nbval runs the built
notebooks and ``tests/test_notebook_sources.py`` checks the pairs agree.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def sync_runner():
    """A job runner that runs each job at once, so a panel's result is ready after a click."""
    from medsynth_explore.jobs import JobRunner

    return JobRunner(synchronous=True)
