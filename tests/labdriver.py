"""One driver for JupyterLab 4 and Debian's chromium, shared by the browser tests and benchmarks/bench_browser_map.py.

It writes a notebook, starts a JupyterLab server on a free port with its own
config and runtime folders, and runs a notebook's first cell once the kernel
is connected. Tests turn a missing chromium into a skip (a failure under CI,
where ``.ci/run`` installs it) with :func:`require_chromium`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> None:
    """Skip the calling test without chromium; fail instead under CI (``CI`` set), where it must be installed."""
    import pytest

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get install chromium")
        pytest.skip("Debian chromium not installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code cells, without outputs, on the python3 kernel."""
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": c} for c in cells],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


class LabServer:
    """A JupyterLab server serving ``root``; :meth:`url` of a notebook in it. Raises RuntimeError if it does not start."""

    def __init__(self, root: Path, token: str, extra_args: tuple[str, ...] = (), start_timeout: float = 60) -> None:
        self.root, self.token, self.port = root, token, free_port()
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".jupyter"), JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
        self.log = open(root / "server.log", "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                f"--port={self.port}",
                f"--ServerApp.token={token}",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.ip=127.0.0.1",
                "--allow-root",
                "--LabApp.news_url=",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                *extra_args,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
        )
        deadline = time.time() + start_timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if time.time() > deadline or self.process.poll() is not None:
                    self.close()
                    raise RuntimeError(f"JupyterLab did not start; log:\n{(root / 'server.log').read_text()[-3000:]}")
                time.sleep(0.3)

    def url(self, notebook: str) -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/{notebook}?token={self.token}"

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def run_first_cell(pg, on_failure=None) -> None:
    """Run the first cell once the kernel is connected; retry if the keystroke came too early."""
    pg.wait_for_selector(".jp-StatusBar-TextItem:has-text('Idle')", timeout=120_000)
    prompt = pg.locator(".jp-Cell").first.locator(".jp-InputPrompt")
    for _attempt in range(5):
        pg.locator(".jp-Cell .cm-content").first.click()
        pg.keyboard.press("Control+Enter")
        try:
            pg.wait_for_function("(el) => /\\[(\\*|\\d+)\\]/.test(el.textContent)", arg=prompt.element_handle(), timeout=15_000)
            return
        except Exception:  # the kernel was not ready for the keystroke: press again
            continue
    if on_failure is not None:
        on_failure(pg)
    raise AssertionError("the notebook cell never started running")
