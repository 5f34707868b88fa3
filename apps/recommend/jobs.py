"""Background training jobs: one at a time, with an id, a stage and a progress fraction to poll.

A job runs in a daemon thread, so requests keep being answered by the model in service until
the job swaps its result in. Starting a second job while one runs is a ``ConflictError`` (409).
Finished jobs are kept (the last 20) so their outcome can still be read.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from kgnlp.errors import ConflictError, KgnlpError, NotFoundError

__all__ = ["Job", "Progress", "TrainingJobs"]

log = logging.getLogger("kgnlp.recommend")

Progress = Callable[[str, float], None]
"""Called as ``progress(stage, fraction_done)`` by the job's work."""


@dataclass
class Job:
    """One training run as the API reports it."""

    job_id: str
    status: str = "running"  # running | succeeded | failed
    stage: str = "queued"
    progress: float = 0.0
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrainingJobs:
    """Runs ``work(progress) -> result`` in a thread, one job at a time.

    Args:
        work: the training (and model swap); raise to fail the job.
        keep: how many finished jobs to remember.
    """

    def __init__(self, work: Callable[[Progress], dict[str, Any]], keep: int = 20) -> None:
        self.work = work
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._running: Job | None = None
        self._lock = threading.Lock()

    def start(self) -> Job:
        """Start a job and return it at once.

        Raises:
            ConflictError: a job is already running.
        """
        with self._lock:
            if self._running is not None:
                raise ConflictError(f"a training job is already running: {self._running.job_id}")
            job = Job(uuid.uuid4().hex[:16])
            self._running = job
            self._jobs[job.job_id] = job
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        threading.Thread(target=self._run, args=(job,), name=f"recommend-train-{job.job_id}", daemon=True).start()
        return job

    def _run(self, job: Job) -> None:
        def progress(stage: str, fraction: float) -> None:
            job.stage, job.progress = stage, round(min(max(fraction, 0.0), 1.0), 3)

        try:
            job.result = self.work(progress)
            job.status, job.stage, job.progress = "succeeded", "done", 1.0
        except KgnlpError as e:
            job.status, job.error = "failed", str(e)
        except Exception as e:  # a failed job must be reported, not kill the thread silently
            log.exception("recommend training job %s failed", job.job_id)
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            job.finished_at = time.time()
            with self._lock:
                self._running = None

    def get(self, job_id: str) -> Job:
        """A job by id.

        Raises:
            NotFoundError: unknown (or long forgotten) id.
        """
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"unknown training job: {job_id!r}")
        return job

    @property
    def running(self) -> Job | None:
        return self._running

    def wait(self, timeout_s: float = 600.0) -> None:
        """Block until no job runs (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._running is not None and time.monotonic() < deadline:
            time.sleep(0.05)
