"""Payload download: resumable, verified, with URL failover (``shared/spec/omaha-delivery.md``
§2.3, §6.2; update_engine ``payload_state.cc``, ``payload_processor.cc`` ``VerifyPayload()``).

:meth:`Downloader.fetch` writes into ``<dest>.partial`` next to ``dest`` and renames it into
place only once its size and base64 SHA-256 equal the offer's, so ``dest`` either does not exist
or is the verified payload. A partial file left behind (by an earlier attempt or an earlier
process) is resumed with ``Range: bytes=<length>-``; the server must answer ``206`` with a
``Content-Range`` starting at that length, an answer of ``200`` restarts from byte 0, any other
start or a ``416`` discards the partial file. The hash of the resumed prefix is computed from
disk first, then updated with each streamed chunk, so memory stays bounded by the chunk size.

Failure handling follows update_engine's classes (§6.2): transfer errors (connection, timeout,
5xx, a body that ends early) are retried on the same URL up to ``attempts_per_url`` times, and
an attempt that added bytes resets the count; a 4xx answer (except 408/429) moves to the next URL
at once; a hash or size mismatch discards the partial file and moves to the next URL at once.
When every URL has failed, the last error is raised. Retries are immediate: backoff between
download attempts is the caller's (:mod:`railcar.agent.schedule`).

The seam is an ``httpx.BaseTransport``, as for :class:`railcar.agent.transport.OmahaClient`.

Errors::

    AgentError
    └── DownloadError                 ``code`` is the update_engine ActionExitCode
        ├── DownloadTransferError     9: no URL delivered the payload (HTTP status, transport)
        ├── PayloadHashMismatchError  10: the SHA-256 differs from the offer's
        ├── PayloadSizeMismatchError  11: the payload is longer or shorter than the offer's
        └── DownloadWriteError        14: the partial or final file could not be written
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from railcar.agent.errors import AgentError
from railcar.omaha.model import ErrorCode
from railcar.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = [
    "CHUNK_BYTES",
    "DownloadError",
    "DownloadTransferError",
    "DownloadWriteError",
    "Downloader",
    "PayloadHashMismatchError",
    "PayloadSizeMismatchError",
    "partial_path",
]

# Railcar choice: 1 MiB reads when hashing a resumed prefix from disk; the network side is
# written as httpx delivers it (its own reads are 64 KiB), so memory stays bounded either way.
CHUNK_BYTES = 1 << 20
# Railcar choice: immediate retries on one URL before failing over; update_engine's own
# MaxFailureCountPerUrl (default 10, §6.2) counts across scheduled attempts, not within one.
DEFAULT_ATTEMPTS_PER_URL = 3
# Railcar choice: payloads are large; this bounds connect/read stalls, not the whole transfer.
DEFAULT_TIMEOUT = 60.0
# update_engine libcurl_http_fetcher.cc kDownloadMaxRedirects.
MAX_REDIRECTS = 10
# 4xx answers that are worth retrying on the same URL (RFC 9110 §15.5.9, RFC 6585 §4).
_RETRYABLE_4XX = frozenset({408, 429})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadError(AgentError):
    """The payload could not be downloaded; ``code`` is update_engine's ActionExitCode."""

    code: int = ErrorCode.DOWNLOAD_TRANSFER_ERROR

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(f"{message} (error code {self.code})")
        self.http_status = http_status


class DownloadTransferError(DownloadError):
    """No URL delivered the payload: HTTP errors, transport failures, truncated bodies."""

    code = ErrorCode.DOWNLOAD_TRANSFER_ERROR


class PayloadHashMismatchError(DownloadError):
    """The downloaded payload's SHA-256 is not the offer's."""

    code = ErrorCode.PAYLOAD_HASH_MISMATCH


class PayloadSizeMismatchError(DownloadError):
    """The payload is not the size the offer states."""

    code = ErrorCode.PAYLOAD_SIZE_MISMATCH


class DownloadWriteError(DownloadError):
    """The partial or final file could not be written."""

    code = ErrorCode.DOWNLOAD_WRITE_ERROR


def partial_path(dest: Path) -> Path:
    """Where :meth:`Downloader.fetch` keeps the bytes received so far for ``dest``."""
    return dest.with_name(dest.name + ".partial")


def _hash_prefix(path: Path, length: int) -> _Hash:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        remaining = length
        while remaining:
            block = f.read(min(CHUNK_BYTES, remaining))
            if not block:
                break
            hasher.update(block)
            remaining -= len(block)
    return hasher


class _Reporter:
    """Turns byte positions into Progress advances that never go backwards."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._reported = 0

    def at(self, position: int) -> None:
        if position > self._reported:
            self._progress.advance(position - self._reported)
            self._reported = position


class Downloader:
    """Fetches payloads over HTTP(S). Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        attempts_per_url: int = DEFAULT_ATTEMPTS_PER_URL,
        auth: tuple[str, str] | None = None,
    ) -> None:
        """``auth``: update.conf DOWNLOAD_USER/DOWNLOAD_PASSWORD, sent as HTTP basic auth."""
        if attempts_per_url < 1:
            raise ValueError("attempts_per_url must be at least 1")
        self._attempts = attempts_per_url
        self._client = httpx.Client(
            transport=transport,
            timeout=timeout,
            auth=auth,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
        )

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def fetch(
        self,
        urls: Sequence[str],
        dest: Path,
        size: int,
        sha256_b64: str,
        progress: Progress = NO_PROGRESS,
    ) -> Path:
        """Download the payload to ``dest`` from the first URL that delivers it intact."""
        if not urls:
            raise DownloadTransferError("the offer lists no URL")
        partial = partial_path(dest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DownloadWriteError(f"cannot create {dest.parent}: {exc}") from exc
        reporter = _Reporter(progress)
        progress.start(f"Downloading {dest.name}", size)
        try:
            return self._fetch(urls, dest, partial, size, sha256_b64, reporter)
        finally:
            progress.finish()

    def _fetch(
        self,
        urls: Sequence[str],
        dest: Path,
        partial: Path,
        size: int,
        sha256_b64: str,
        reporter: _Reporter,
    ) -> Path:
        last: DownloadError | None = None
        for url in urls:
            failures = 0
            while failures < self._attempts:
                before = _length(partial)
                try:
                    hasher = self._attempt(url, partial, size, reporter)
                except (PayloadSizeMismatchError, DownloadWriteError) as exc:
                    _discard(partial)
                    last = exc
                    break
                except DownloadTransferError as exc:
                    last = exc
                    status = exc.http_status
                    if status is not None and 400 <= status < 500 and status not in _RETRYABLE_4XX:
                        break
                    # update_engine payload_state.cc: any downloaded byte resets the count.
                    failures = 0 if _length(partial) > before else failures + 1
                    continue
                digest = base64.b64encode(hasher.digest()).decode("ascii")
                if digest != sha256_b64:
                    _discard(partial)
                    last = PayloadHashMismatchError(
                        f"{url}: SHA-256 is {digest}; the offer says {sha256_b64}"
                    )
                    break
                try:
                    with partial.open("rb+") as f:
                        os.fsync(f.fileno())
                    partial.replace(dest)
                except OSError as exc:
                    raise DownloadWriteError(f"cannot move {partial} to {dest}: {exc}") from exc
                return dest
        assert last is not None
        raise last

    def _attempt(self, url: str, partial: Path, size: int, reporter: _Reporter) -> _Hash:
        """One GET; returns the hash of the complete partial file or raises."""
        offset = _length(partial)
        if offset > size:
            _discard(partial)
            offset = 0
        if offset == size and size > 0:
            reporter.at(size)
            return _hash_prefix(partial, size)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                offset = self._check_answer(url, response, partial, offset, size)
                return self._receive(url, response, partial, offset, size, reporter)
        except httpx.HTTPError as exc:
            raise DownloadTransferError(f"{url}: {exc!r}") from exc

    @staticmethod
    def _check_answer(
        url: str, response: httpx.Response, partial: Path, offset: int, size: int
    ) -> int:
        """The offset the body starts at; raises for answers that cannot be used."""
        status = response.status_code
        if status == 206 and offset:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
            start = int(match.group(1)) if match else None
            if start != offset:
                # The server did not honour the range as asked: start over from byte 0.
                _discard(partial)
                raise DownloadTransferError(
                    f"{url}: asked for bytes from {offset}, the server answered "
                    f"Content-Range {response.headers.get('content-range')!r}",
                    http_status=status,
                )
            total = match.group(3) if match else "*"
            if total != "*" and int(total) != size:
                raise PayloadSizeMismatchError(
                    f"{url}: payload is {total} bytes; offer says {size}"
                )
            return offset
        if status == 200:
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) != size:
                raise PayloadSizeMismatchError(
                    f"{url}: payload is {length} bytes; offer says {size}"
                )
            return 0  # the range was ignored (or not asked for): the body is the whole payload
        if status == 416:
            _discard(partial)  # our prefix is not a prefix of what the server has
        raise DownloadTransferError(f"{url}: HTTP {status}", http_status=status)

    @staticmethod
    def _receive(
        url: str,
        response: httpx.Response,
        partial: Path,
        offset: int,
        size: int,
        reporter: _Reporter,
    ) -> _Hash:
        try:
            hasher = _hash_prefix(partial, offset) if offset else hashlib.sha256()
            position = offset
            with partial.open("ab" if offset else "wb") as f:
                # As received (no re-chunking), so bytes already read survive a cut transfer.
                for chunk in response.iter_bytes():
                    position += len(chunk)
                    if position > size:
                        raise PayloadSizeMismatchError(
                            f"{url}: payload is longer than the offer's {size} bytes"
                        )
                    f.write(chunk)
                    hasher.update(chunk)
                    reporter.at(position)
        except OSError as exc:
            raise DownloadWriteError(f"cannot write {partial}: {exc}") from exc
        if position < size:
            raise DownloadTransferError(f"{url}: body ended at byte {position} of {size}")
        return hasher


def _length(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
