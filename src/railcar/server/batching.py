"""Queued Omaha requests answered in batches by one writer thread per process.

:class:`GroupCommit` (SQLite): SQLite admits one writer at a time, so requests queue for it
anyway; what each still pays on its own is the commit (writing its pages to the WAL), which is
the largest single cost of a fast-path answer. It lets the requests that arrived while a batch
was being written share the next commit. A request is answered only after the commit that holds
its writes, so nothing is acknowledged that a crash could lose. Under light load a batch is one
request and nothing changes. If any request of a batch fails, or the commit does, nothing of the
batch is kept and each request is answered again on its own (with the handler's usual retries),
so one bad request fails alone.

:class:`FastBatches` (PostgreSQL): the writer thread answers the batch's fast-path requests with
one read and one write statement for all of them (:mod:`railcar.server.pgbatch`). Everything
else — grants, events of an update in progress, hand-offs — is answered ``None``: the caller
runs the ORM handler in a transaction of its own, concurrently with other requests, so a grant's
group-row lock is never held for a batch.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from railcar.omaha.model import Request, Response
from railcar.server.db import QUIET, Database

MAX_BATCH = 64  # requests per transaction; bounds the latency one batch adds to its last member

# (session, request, client ip) → (response, quiet: nothing others cache was changed)
AnswerIn = Callable[[Session, Request, str], tuple[Response, bool]]
AnswerAlone = Callable[[Request, str], Response]
# [(request, client ip)] → per request its answer, or None: the full path must answer it
AnswerBatch = Callable[[list[tuple[Request, str]]], list[Response | None]]

T = TypeVar("T")


@dataclass(slots=True)
class _Item(Generic[T]):
    request: Request
    ip: str
    # Set for requests from a thread: the caller waits on it.
    future: Future[T] | None = None
    # Set for requests from an event loop: answered on it, one wake-up per batch and loop
    # (waking a loop from another thread costs a pipe write and a GIL hand-over each).
    loop: asyncio.AbstractEventLoop | None = None
    waiter: asyncio.Future[T] | None = None

    def live(self) -> bool:
        if self.waiter is not None:
            return not self.waiter.cancelled()
        assert self.future is not None
        return self.future.set_running_or_notify_cancel()


def _settle(answers: list[tuple[asyncio.Future[T], T | BaseException]]) -> None:
    """On the waiters' loop: hand each its answer."""
    for waiter, answer in answers:
        if waiter.cancelled():
            continue
        if isinstance(answer, BaseException):
            waiter.set_exception(answer)
        else:
            waiter.set_result(answer)


class _Writer(Generic[T]):
    """A writer thread taking what queued (≤ :data:`MAX_BATCH`) and answering it as a batch."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Item[T] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0
        self.requests = 0

    def submit(self, request: Request, ip: str) -> Future[T]:
        future: Future[T] = Future()
        self._enqueue(_Item(request, ip, future))
        return future

    async def answer(self, request: Request, ip: str) -> T:
        """:meth:`submit` for a caller on an event loop."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Item(request, ip, loop=loop, waiter=waiter))
        return await waiter

    def _enqueue(self, item: _Item[T]) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="railcar-omaha-writer", daemon=True
                    )
                    self._thread.start()
        self._queue.put(item)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            live = [i for i in batch if i.live()]
            if live:
                self.batches += 1
                self.requests += len(live)
                self._deliver(self._process(live))

    def _process(self, batch: list[_Item[T]]) -> list[tuple[_Item[T], T | BaseException]]:
        raise NotImplementedError

    @staticmethod
    def _deliver(answers: list[tuple[_Item[T], T | BaseException]]) -> None:
        by_loop: dict[
            asyncio.AbstractEventLoop,
            list[tuple[asyncio.Future[T], T | BaseException]],
        ] = {}
        for item, answer in answers:
            if item.loop is not None and item.waiter is not None:
                by_loop.setdefault(item.loop, []).append((item.waiter, answer))
                continue
            assert item.future is not None  # a request from a thread (submit)
            if isinstance(answer, BaseException):
                item.future.set_exception(answer)
            else:
                item.future.set_result(answer)
        for loop, waiting in by_loop.items():
            loop.call_soon_threadsafe(_settle, waiting)


class GroupCommit(_Writer[Response]):
    """SQLite: answers requests on one writer thread, several per transaction when they queue
    up."""

    def __init__(self, db: Database, answer_in: AnswerIn, answer_alone: AnswerAlone) -> None:
        super().__init__()
        self._db = db
        self._answer_in = answer_in
        self._answer_alone = answer_alone

    def _process(
        self, batch: list[_Item[Response]]
    ) -> list[tuple[_Item[Response], Response | BaseException]]:
        if len(batch) > 1:
            responses: list[Response] = []
            try:
                with self._db.write() as session:
                    quiet = True
                    for item in batch:
                        response, item_quiet = self._answer_in(session, item.request, item.ip)
                        responses.append(response)
                        quiet = quiet and item_quiet
                    session.info[QUIET] = quiet
            except Exception:
                responses = []  # again, alone, below, so one bad request fails by itself
            else:
                return list(zip(batch, responses, strict=True))
        return [(item, self._alone(item)) for item in batch]

    def _alone(self, item: _Item[Response]) -> Response | BaseException:
        try:
            return self._answer_alone(item.request, item.ip)
        except BaseException as exc:
            return exc


class FastBatches(_Writer[Response | None]):
    """PostgreSQL: the fast-path requests that queued, answered by ``answer_batch`` in a few
    statements; ``None`` for each request the full path must answer (also all of a batch
    whose statements failed — each then fails, or not, on its own)."""

    def __init__(self, answer_batch: AnswerBatch) -> None:
        super().__init__()
        self._answer_batch = answer_batch

    def _process(
        self, batch: list[_Item[Response | None]]
    ) -> list[tuple[_Item[Response | None], Response | BaseException | None]]:
        try:
            answers = self._answer_batch([(item.request, item.ip) for item in batch])
        except Exception:
            answers = [None] * len(batch)
        return list(zip(batch, answers, strict=True))
