"""Sharing the CPU between the encoder and the decoding threads while a file-backed set streams.

When images stream from disk into an encoder on the CPU, two kinds of work
run at once: torch's intra-op threads (the network) and the decoding threads
(:func:`~medsynth_explore.data.sources.default_workers`, one per core up to
8). By default torch also takes every core, and its OpenMP threads spin
while they wait for work, on the cores the decoders need. On a 2-core
machine, streaming 5,000 JPEGs of 512 px with 2 decoding threads ran at
398-449 images/s with torch on 2 threads and at 614-639 with torch on one
(``benchmarks/bench_real_data.py``'s ``ours`` run, three tries each).

:func:`streaming_threads` gives torch half the cores for the duration of a
block and puts the old setting back. The decoders keep every core: they
sleep rather than spin when there is nothing to decode, so they use the
encoder's core whenever it waits. It changes a process-wide setting, so
``medsynth evaluate`` (a process of its own) uses it; in a notebook, call it
around a long ``evaluate`` of a folder if nothing else runs torch meanwhile.
A user's ``OMP_NUM_THREADS`` is left alone.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional

__all__ = ["streaming_torch_threads", "streaming_threads"]


def streaming_torch_threads(cpus: Optional[int] = None) -> int:
    """Torch threads while a file-backed set streams on ``cpus`` cores: half of them, at least one.

    Examples
    --------
    >>> [streaming_torch_threads(n) for n in (1, 2, 5, 16)]
    [1, 1, 2, 8]
    """
    n = max(1, int(cpus if cpus is not None else (os.cpu_count() or 1)))
    return max(1, n // 2)


@contextmanager
def streaming_threads(cpus: Optional[int] = None) -> Iterator[Optional[int]]:
    """Within the block torch runs on :func:`streaming_torch_threads` threads; restored afterwards, also on errors.

    Yields the number of threads set, or None where ``OMP_NUM_THREADS`` is
    set (the user's own choice, kept).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with streaming_threads(cpus=2) as n:
    ...     inside = torch.get_num_threads()
    >>> n is None or inside == n == 1, torch.get_num_threads() == before
    (True, True)
    """
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        yield None
        return
    old = torch.get_num_threads()
    n = streaming_torch_threads(cpus)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)
