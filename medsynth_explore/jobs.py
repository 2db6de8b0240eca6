"""Background work for interactive use: one worker thread, newer requests supersede older ones.

A widget must never freeze the kernel: long work (sampling, encoding, UMAP)
runs on a :class:`JobRunner` thread while the kernel keeps serving widget
messages. Submitting a new job to a lane cancels the job still running there;
cancellation is cooperative, through the progress callback that every long
function of the package accepts (``callback(done, total)`` returning
``False`` stops the work with :class:`~medsynth_explore.errors.CancelledError`).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import CancelledError

__all__ = ["Job", "JobRunner"]


@dataclass
class Job:
    """A unit of background work with progress and cooperative cancellation.

    Examples
    --------
    >>> job = Job("demo")
    >>> job.progress(1, 4), job.fraction
    (True, 0.25)
    >>> job.cancel(); job.progress(2, 4)
    False
    """

    name: str
    done: int = 0
    total: int = 0
    on_progress: Callable[["Job"], None] | None = None
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    future: Future | None = field(default=None, repr=False)

    def progress(self, done: int, total: int) -> bool:
        """Progress callback to hand to long functions; returns ``False`` once cancelled."""
        self.done, self.total = int(done), int(total)
        if self.on_progress is not None:
            try:
                self.on_progress(self)
            except Exception:  # a broken progress display must not kill the work
                pass
        return not self._cancelled.is_set()

    def cancel(self) -> None:
        """Ask the work to stop at its next progress report."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    @property
    def fraction(self) -> float:
        """Share of the work done, in [0, 1]."""
        return self.done / self.total if self.total else 0.0

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job and return its result (re-raises its error)."""
        if self.future is None:
            raise RuntimeError("job was not submitted")
        return self.future.result(timeout)


class JobRunner:
    """Runs jobs on one background thread, one current job per lane.

    Parameters
    ----------
    synchronous : bool
        Run jobs in the calling thread (for tests and scripts). Results and
        callbacks are the same; only the thread differs.

    Examples
    --------
    >>> runner = JobRunner(synchronous=True)
    >>> job = runner.submit("generate", lambda job: job.progress(1, 1) and 42)
    >>> job.result()
    42
    """

    def __init__(self, synchronous: bool = False) -> None:
        self.synchronous = synchronous
        self._pool = None if synchronous else ThreadPoolExecutor(max_workers=1, thread_name_prefix="medsynth")
        self._current: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(
        self,
        lane: str,
        fn: Callable[[Job], Any],
        *,
        on_progress: Callable[[Job], None] | None = None,
        on_done: Callable[[Job, Any, BaseException | None], None] | None = None,
    ) -> Job:
        """Run ``fn(job)`` in the background, cancelling the job running in ``lane``.

        ``on_done(job, result, error)`` is called when it ends; a superseded or
        cancelled job ends with a :class:`CancelledError` as ``error``.
        """
        job = Job(lane, on_progress=on_progress)
        with self._lock:
            old = self._current.get(lane)
            if old is not None:
                old.cancel()
            self._current[lane] = job

        def run() -> Any:
            result, error = None, None
            try:
                if job.cancelled:
                    raise CancelledError(f"{lane}: superseded by a newer request")
                result = fn(job)
                if job.cancelled:
                    raise CancelledError(f"{lane}: superseded by a newer request")
                return result
            except BaseException as exc:
                error = exc
                raise
            finally:
                with self._lock:
                    if self._current.get(lane) is job:
                        del self._current[lane]
                if on_done is not None:
                    on_done(job, result, error)

        if self.synchronous:
            fut: Future = Future()
            try:
                fut.set_result(run())
            except BaseException as exc:  # delivered through job.result()
                fut.set_exception(exc)
            job.future = fut
        else:
            job.future = self._pool.submit(run)
        return job

    def current(self, lane: str) -> Job | None:
        """The job running in ``lane``, if any."""
        return self._current.get(lane)

    def cancel(self, lane: str) -> None:
        """Cancel the job running in ``lane``."""
        job = self._current.get(lane)
        if job is not None:
            job.cancel()

    def shutdown(self) -> None:
        """Cancel everything and stop the worker thread."""
        for job in list(self._current.values()):
            job.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
