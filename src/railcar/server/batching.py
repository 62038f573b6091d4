"""Group commit for SQLite: one writer thread answers queued Omaha requests in one transaction.

SQLite admits one writer at a time, so requests queue for it anyway; what each still pays on
its own is the commit (writing its pages to the WAL), which is the largest single cost of a
fast-path answer. :class:`GroupCommit` lets the requests that arrived while a batch was being
written share the next commit. A request is answered only after the commit that holds its
writes, so nothing is acknowledged that a crash could lose. Under light load a batch is one
request and nothing changes.

If any request of a batch fails, or the commit does, nothing of the batch is kept and each
request is answered again on its own (with the handler's usual retries), so one bad request
fails alone. PostgreSQL does not use this: its requests run concurrently on a connection pool
and grant decisions lock their group row, and holding such locks across a batch would only
lengthen other processes' waits.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from railcar.omaha.model import Request, Response
from railcar.server.db import QUIET, Database

MAX_BATCH = 64  # requests per transaction; bounds the latency one batch adds to its last member

# (session, request, client ip) → (response, quiet: nothing others cache was changed)
AnswerIn = Callable[[Session, Request, str], tuple[Response, bool]]
AnswerAlone = Callable[[Request, str], Response]


@dataclass
class _Item:
    request: Request
    ip: str
    future: Future[Response] = field(default_factory=Future)
    # Set for requests from an event loop: answered on it, one wake-up per batch and loop
    # (waking a loop from another thread costs a pipe write and a GIL hand-over each).
    loop: asyncio.AbstractEventLoop | None = None
    waiter: asyncio.Future[Response] | None = None

    def live(self) -> bool:
        if self.waiter is not None:
            return not self.waiter.cancelled()
        return self.future.set_running_or_notify_cancel()


def _settle(answers: list[tuple[asyncio.Future[Response], Response | BaseException]]) -> None:
    """On the waiters' loop: hand each its answer."""
    for waiter, answer in answers:
        if waiter.cancelled():
            continue
        if isinstance(answer, BaseException):
            waiter.set_exception(answer)
        else:
            waiter.set_result(answer)


class GroupCommit:
    """Answers requests on one writer thread, several per transaction when they queue up."""

    def __init__(self, db: Database, answer_in: AnswerIn, answer_alone: AnswerAlone) -> None:
        self._db = db
        self._answer_in = answer_in
        self._answer_alone = answer_alone
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0
        self.requests = 0

    def submit(self, request: Request, ip: str) -> Future[Response]:
        item = _Item(request, ip)
        self._enqueue(item)
        return item.future

    async def answer(self, request: Request, ip: str) -> Response:
        """:meth:`submit` for a caller on an event loop."""
        loop = asyncio.get_running_loop()
        item = _Item(request, ip, loop=loop, waiter=loop.create_future())
        self._enqueue(item)
        assert item.waiter is not None
        return await item.waiter

    def _enqueue(self, item: _Item) -> None:
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
                self._deliver(self._process(live))

    def _process(self, batch: list[_Item]) -> list[tuple[_Item, Response | BaseException]]:
        self.batches += 1
        self.requests += len(batch)
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

    def _alone(self, item: _Item) -> Response | BaseException:
        try:
            return self._answer_alone(item.request, item.ip)
        except BaseException as exc:
            return exc

    @staticmethod
    def _deliver(answers: list[tuple[_Item, Response | BaseException]]) -> None:
        by_loop: dict[
            asyncio.AbstractEventLoop,
            list[tuple[asyncio.Future[Response], Response | BaseException]],
        ] = {}
        for item, answer in answers:
            if item.loop is not None and item.waiter is not None:
                by_loop.setdefault(item.loop, []).append((item.waiter, answer))
            elif isinstance(answer, BaseException):
                item.future.set_exception(answer)
            else:
                item.future.set_result(answer)
        for loop, waiting in by_loop.items():
            loop.call_soon_threadsafe(_settle, waiting)
