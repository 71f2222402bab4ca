"""Micro-batching with asyncio: requests that arrive together share one model call.

A request announces itself (`reserve`) as soon as its handler starts, decodes its inputs, then `submit`s them. The
batching loop takes the first queued item and keeps gathering while other announced requests are still on their
way, for at most `max_wait_s` and at most `max_batch` items; then it runs the batch function once, in a dedicated
worker thread so the event loop keeps accepting requests, and hands each caller its own result. A lone request
(nobody else announced) runs at once: one-at-a-time clients pay no waiting time.

The queue is bounded: when `max_queue` requests are already waiting for a batch, `reserve` refuses the next one with
`QueueFull` (the server answers 503 with a Retry-After), so the requests it does admit keep a bounded latency under
overload instead of all of them waiting longer and longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(Exception):
    """`max_queue` requests already wait for a batch; `retry_after_s` estimates when there will be room."""

    def __init__(self, queued: int, retry_after_s: int) -> None:
        super().__init__(f"{queued} requests are already waiting for the model; try again in {retry_after_s} s")
        self.queued = queued
        self.retry_after_s = retry_after_s


@dataclass
class Ticket:
    """A request's place among the announced ones; `taken` once the loop has put it into a batch."""

    taken: bool = False


@dataclass
class _Pending(Generic[T]):
    item: T
    future: asyncio.Future
    ticket: Ticket | None


@dataclass
class BatchStats:
    """Counters exposed in /v1/info: how many requests, in how many model calls, of which sizes."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    refused: int = 0  # requests turned away because the queue was full
    sizes: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "batches": self.batches,
            "largest_batch": self.largest_batch,
            "refused_queue_full": self.refused,
            "mean_batch": round(self.requests / self.batches, 3) if self.batches else 0.0,
            "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
        }


class MicroBatcher(Generic[T, R]):
    """Gathers concurrent `submit` calls into one call of `fn`.

    Args:
        fn: items → one result per item, in order; called in a worker thread, one batch at a time.
        max_batch: most items per call.
        max_wait_s: longest the first item of a batch waits for others to join.
        max_queue: most requests waiting for a batch at once (announced, not yet taken into a batch); None: no bound.
    """

    def __init__(
        self, fn: Callable[[list[T]], Sequence[R]], *, max_batch: int = 32, max_wait_s: float = 0.005,
        max_queue: int | None = None,
    ) -> None:  # fmt: skip
        if max_batch < 1 or max_wait_s < 0 or (max_queue is not None and max_queue < 1):
            raise ValueError(f"max_batch and max_queue must be >= 1 and max_wait_s >= 0, got {max_batch}, "
                             f"{max_queue}, {max_wait_s}")  # fmt: skip
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._batch_seconds = 0.05  # moving average of one model call, for Retry-After
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending[T]] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._expected = 0  # announced requests not yet taken into a batch

    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is not None:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlfuse-model")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="vlfuse-micro-batcher")

    async def stop(self) -> None:
        """Stop the loop; requests still queued fail with RuntimeError."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        while self._queue is not None and not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=True)
        self._task = self._queue = self._executor = None

    @contextlib.contextmanager
    def reserve(self) -> Iterator[Ticket]:
        """Announce a request that will `submit` shortly (pass the ticket to it), so a batch waits for it.

        Raises:
            QueueFull: `max_queue` requests are already waiting.
        """
        if self.max_queue is not None and self._expected >= self.max_queue:
            self.stats.refused += 1
            batches_ahead = self._expected / self.max_batch + 1
            raise QueueFull(self._expected, max(1, math.ceil(batches_ahead * self._batch_seconds)))
        ticket = Ticket()
        self._expected += 1
        try:
            yield ticket
        finally:
            if not ticket.taken:  # failed before submitting, or submit was never reached
                ticket.taken = True
                self._expected -= 1

    async def submit(self, item: T, ticket: Ticket | None = None) -> R:
        """Queue one item and wait for its result (raises what `fn` raised)."""
        if self._queue is None:
            raise RuntimeError("the micro-batcher is not running; call start() first")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(item, future, ticket))
        return await future

    def _take(self, pending: _Pending[T]) -> _Pending[T]:
        if pending.ticket is not None and not pending.ticket.taken:
            pending.ticket.taken = True
            self._expected -= 1
        return pending

    async def _gather(self) -> list[_Pending[T]]:
        loop = asyncio.get_running_loop()
        batch = [self._take(await self._queue.get())]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._take(self._queue.get_nowait()))
                continue
            remaining = deadline - loop.time()
            if self._expected <= 0 or remaining <= 0:
                break
            try:
                batch.append(self._take(await asyncio.wait_for(self._queue.get(), remaining)))
            except TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [p for p in await self._gather() if not p.future.done()]  # drop callers that went away
            if not batch:
                continue
            self.stats.requests += len(batch)
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            self.stats.sizes[len(batch)] += 1
            try:
                started = time.perf_counter()
                results = await loop.run_in_executor(self._executor, self.fn, [p.item for p in batch])
                self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * (time.perf_counter() - started)
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            except Exception as err:  # handed to every caller of the batch, which turns it into a 500
                log.exception("batch of %d failed", len(batch))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)
