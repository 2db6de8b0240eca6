"""Run every tutorial notebook with nbclient; report wall time and the kernel's peak memory.

Binder gives a teaching session about 2 GB of memory, and the tutorials run
inside the test suite, so each must stay well below both limits. The peer is
an empty notebook (kernel start plus ``import medsynth_explore``) run in the
same process: the ratio says how much of a tutorial's time is its own work.

Peak memory is the kernel process's maximum resident set size, read inside the
kernel with ``resource.getrusage(RUSAGE_SELF)`` after the last cell (Linux
reports it in KiB).

Usage::

    python benchmarks/bench_notebooks.py [prefix ...]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
BINDER_BYTES = 2 * 1024**3
PEAK_CELL = "import resource\nprint('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def run(nb: nbformat.NotebookNode) -> tuple[float, int]:
    nb = nbformat.from_dict(nb)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NB_DIR)}}).execute()
    seconds = time.perf_counter() - t0
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    kib = int(text.split("PEAK_RSS_KIB")[1].split()[0])
    return seconds, kib * 1024


def main(argv: list[str]) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    paths = sorted(NB_DIR.glob("*.ipynb"))
    if argv:
        paths = [p for p in paths if any(p.name.startswith(a) for a in argv)]
    empty = nbformat.v4.new_notebook()
    empty.cells = [nbformat.v4.new_code_cell("import medsynth_explore")]
    base_s, base_b = run(empty)
    print(f"{'peer: empty notebook':40s} {base_s:7.1f} s  {base_b / 2**20:7.0f} MiB")
    total, worst = 0.0, 0
    for p in paths:
        s, b = run(nbformat.read(p, as_version=4))
        total += s
        worst = max(worst, b)
        flag = "  OVER 2 GB" if b > BINDER_BYTES else ""
        print(
            f"{p.name:40s} {s:7.1f} s  {b / 2**20:7.0f} MiB  {s / base_s:5.1f}x time of peer  "
            f"{b / BINDER_BYTES:5.0%} of 2 GB{flag}",
            flush=True,
        )
    print(f"{'all tutorials':40s} {total:7.1f} s  (peak {worst / 2**20:.0f} MiB; {total / base_s:.1f}x the peer)")
    return 0 if worst <= BINDER_BYTES else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
