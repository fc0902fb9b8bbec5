"""Requests that arrive within a short window are answered together, in one generation.

One worker thread owns the model: it waits for a first query, gathers whatever else arrives within `window_s`
(at most `max_batch`), and answers them with one `answer(queries)` call (a mixed batch: each row through its own
adapter). If that call raises, each query of the batch is answered alone, so an internal error fails only the
request that causes it. `close()` refuses new queries and returns once every query already queued is answered.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from llava_cit.serve.served_run import Query, Reply

_STOP = object()


@dataclass
class Batched:
    """A reply and the batch that produced it (`batch`: its number, `size`: how many queries it answered)."""

    reply: Reply
    batch: int
    size: int


class QueueClosed(RuntimeError):
    """The server is shutting down: no new query is taken."""


class BatchQueue:
    def __init__(self, answer: Callable[[list[Query]], list[Reply]], window_s: float = 0.01, max_batch: int = 16):
        if max_batch < 1 or window_s < 0:
            raise ValueError("max_batch must be >= 1 and window_s >= 0")
        self.answer, self.window_s, self.max_batch = answer, window_s, max_batch
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._numbers = itertools.count(1)
        self.pending = 0  # queries taken and not yet answered
        self.batches = 0
        self.largest = 0
        self._worker = threading.Thread(target=self._run, name="llava-cit-batches", daemon=True)
        self._worker.start()

    def submit(self, query: Query) -> Future:
        """A future that resolves to the query's Batched (or raises what answering it raised)."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise QueueClosed("the server is shutting down")
            self.pending += 1
            self._queue.put((query, future))
        return future

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._worker.join(timeout)

    def _gather(self, first) -> tuple[list, bool]:
        batch, stop = [first], False
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        while True:  # the queue is FIFO and close() queues _STOP last: every query before it is answered first
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            self._answer(batch)
            if stop:
                return

    def _answer(self, batch: list) -> None:
        number = next(self._numbers)
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        try:
            replies = self.answer([query for query, _ in batch])
            if len(replies) != len(batch):
                raise RuntimeError(f"{len(replies)} replies for {len(batch)} queries")
        except Exception as err:  # noqa: BLE001 (an internal error fails its own request only)
            if len(batch) > 1:
                for item in batch:  # alone, so the one that fails is found
                    self._answer([item])
                return
            self._settle(batch[0][1], error=err)
            return
        for (_, future), reply in zip(batch, replies):
            self._settle(future, Batched(reply, number, len(batch)))

    def _settle(self, future: Future, result: Batched | None = None, error: BaseException | None = None) -> None:
        with self._lock:
            self.pending -= 1
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
