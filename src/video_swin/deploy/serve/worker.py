"""The one thread that runs the model: a bounded queue in front of it, and dynamic batching.

A request takes a place in the queue when it arrives (`reserve`), before its upload is read, and gives it
back when it is answered, so that `queue_size` bounds what the service holds at once: uploads on disk,
decoded views in memory, work for the model. A request that finds the queue full is refused at once (503)
instead of uploading a video that would wait behind all the others.

The model thread takes the views of every job that is waiting when it gets to them, up to `max_batch`
views, and scores them in one model call; each job's probabilities come from its own rows of the logits
(softmax per view, mean over views: `VideoClassifier.probabilities`), so a video scored beside others
gets the probabilities it gets alone (equal to a few ulps: the model's arithmetic does not depend on the
other rows). A job with more views than `max_batch` is scored in several calls. Other work on the model
(`call`: the timeline, an explanation) runs on the same thread, between batches.
"""

from __future__ import annotations

import concurrent.futures
import math
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np


class QueueFull(RuntimeError):
    """No place left in the queue; `retry_after` is a guess, in whole seconds, of when one frees up."""

    def __init__(self, capacity, retry_after):
        super().__init__(f"the model's queue is full ({capacity} requests); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Scoring:
    views: np.ndarray
    future: concurrent.futures.Future
    submitted: float = field(default_factory=time.perf_counter)


@dataclass
class _Call:
    fn: object
    future: concurrent.futures.Future


_STOP = object()


class ModelWorker:
    """Scores views on one thread, batching the jobs that wait together.

    classifier: a `VideoClassifier` (its `view_logits` and `probabilities`), whose `batch_size` is at least
    `max_batch` (one batch, one model call). metrics: a `ServiceMetrics` or None.
    """

    def __init__(self, classifier, max_batch=8, queue_size=32, metrics=None):
        if int(max_batch) < 1 or int(queue_size) < 1:
            raise ValueError(f"max batch and queue size must be at least 1, got {max_batch} and {queue_size}")
        self.classifier = classifier
        self.max_batch = int(max_batch)
        self.capacity = int(queue_size)
        self.metrics = metrics
        self._jobs = queue.Queue()  # bounded by the reservations, not here
        self._lock = threading.Lock()
        self._reserved = 0
        self._hold_s = 1.0  # running mean of how long a place is held, for Retry-After
        self._thread = None

    # -- places in the queue ------------------------------------------------------------------ #

    @property
    def depth(self) -> int:
        with self._lock:
            return self._reserved

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    def reserve(self):
        """A place in the queue, to release with `release(place)` when the request is answered; raises
        `QueueFull` when there is none."""
        with self._lock:
            if self._reserved >= self.capacity:
                # A place frees when the oldest request is answered: about one mean hold away, or less.
                raise QueueFull(self.capacity, max(1, math.ceil(self._hold_s)))
            self._reserved += 1
        return time.perf_counter()

    def release(self, place):
        held = time.perf_counter() - place
        with self._lock:
            self._reserved -= 1
            self._hold_s = 0.8 * self._hold_s + 0.2 * held

    # -- work ---------------------------------------------------------------------------------- #

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="video-swin-model", daemon=True)
            self._thread.start()
        return self

    def score(self, views) -> concurrent.futures.Future:
        """A future of (probabilities (classes,) float64, info) for one video's views (V, T, C, C, 3); info
        has `model_s` (the time of the model call(s) the views were in), `queue_s` (waiting for the model)
        and `batch_views` (views in the model call, its own and others')."""
        future = concurrent.futures.Future()
        self._jobs.put(_Scoring(np.asarray(views), future))
        return future

    def call(self, fn) -> concurrent.futures.Future:
        """A future of `fn()`, run on the model thread between batches (work that uses the model)."""
        future = concurrent.futures.Future()
        self._jobs.put(_Call(fn, future))
        return future

    def close(self, timeout=None):
        if self._thread is not None:
            self._jobs.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _run(self):
        carry = None
        while True:
            job, carry = (carry if carry is not None else self._jobs.get()), None
            if job is _STOP:
                return
            if isinstance(job, _Call):
                self._run_call(job)
                continue
            batch, views = [job], len(job.views)
            while views < self.max_batch:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(more, _Scoring) or views + len(more.views) > self.max_batch:
                    carry = more  # next turn: a call, the stop, or views that would overfill this batch
                    break
                batch.append(more)
                views += len(more.views)
            self._score(batch)

    def _run_call(self, job):
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.fn())
        except BaseException as exc:  # the caller gets it; the worker goes on
            job.future.set_exception(exc)

    def _score(self, batch):
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        start = time.perf_counter()
        try:
            views = batch[0].views if len(batch) == 1 else np.concatenate([job.views for job in batch])
            logits = []
            for first in range(0, len(views), self.max_batch):
                chunk = views[first : first + self.max_batch]
                call_start = time.perf_counter()
                logits.append(self.classifier.view_logits(chunk))
                if self.metrics is not None:
                    self.metrics.model_seconds.inc(time.perf_counter() - call_start)
                    self.metrics.model_batches.inc()
                    self.metrics.model_views.inc(len(chunk))
                    self.metrics.batch_views.observe(len(chunk))
            logits = np.concatenate(logits)
        except BaseException as exc:
            for job in batch:
                job.future.set_exception(exc)
            return
        model_s = time.perf_counter() - start
        offset = 0
        for job in batch:
            rows = logits[offset : offset + len(job.views)]
            offset += len(job.views)
            info = {"model_s": model_s, "queue_s": start - job.submitted, "batch_views": int(len(views))}
            job.future.set_result((self.classifier.probabilities(rows), info))
