"""Package files the server stores and serves itself.

Uploads stream to a temporary file while SHA-1, SHA-256 and the size are computed; only a
file matching the package record is renamed into place (``<data>/packages/<id>/<filename>``).
Downloads honour a single HTTP Range (nodes resume interrupted downloads this way), answer
``HEAD``, carry ``Content-Length`` and an ``ETag`` derived from the content's SHA-256, and
honour ``If-None-Match`` / ``If-Range``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from railcar.server.admin import AdminError
from railcar.server.models import Package

PIECE = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class HostingUnavailableError(AdminError):
    status = 409


class RangeNotSatisfiableError(AdminError):
    status = 416


@dataclass(frozen=True)
class PackageStore:
    root: Path

    def path(self, package: Package) -> Path:
        return self.root / package.id / package.filename

    async def receive(self, package: Package, chunks: AsyncIterator[bytes]) -> Path:
        """Store an upload for ``package``; raise AdminError unless size and hashes match."""
        with _Incoming(self.path(package), package) as incoming:
            async for chunk in chunks:
                incoming.add(chunk)
            return incoming.commit()

    def import_file(self, package: Package, source: Path) -> Path:
        """Copy a local file in, with the same checks as an upload."""
        with _Incoming(self.path(package), package) as incoming, open(source, "rb") as src:
            while chunk := src.read(PIECE):
                incoming.add(chunk)
            return incoming.commit()


class _Incoming:
    """A file being stored: written to a temporary name, hashed on the way, renamed into place
    by :meth:`commit` only if it matches its package record; removed otherwise."""

    def __init__(self, final: Path, package: Package) -> None:
        self._final, self._package = final, package
        final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = final.with_name(f".{final.name}.upload")
        self._out = open(self._tmp, "wb")  # noqa: SIM115 (closed in __exit__/commit)
        self._sha1, self._sha256 = hashlib.sha1(), hashlib.sha256()
        self._size = 0

    def __enter__(self) -> _Incoming:
        return self

    def __exit__(self, *_: object) -> None:
        self._out.close()
        self._tmp.unlink(missing_ok=True)

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._package.size:
            raise AdminError(f"upload is larger than the package's {self._package.size} bytes")
        self._sha1.update(chunk)
        self._sha256.update(chunk)
        self._out.write(chunk)

    def commit(self) -> Path:
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        _check(self._package, self._size, self._sha1.digest(), self._sha256.digest())
        os.replace(self._tmp, self._final)
        return self._final


def _check(package: Package, size: int, sha1: bytes, sha256: bytes) -> None:
    if size != package.size:
        raise AdminError(f"file is {size} bytes; the package says {package.size}")
    if base64.b64encode(sha1).decode() != package.sha1_b64:
        raise AdminError("file's SHA-1 differs from the package's hash")
    if base64.b64encode(sha256).decode() != package.sha256_b64:
        raise AdminError("file's SHA-256 differs from the package's sha256")


def file_digests(path: Path) -> tuple[int, str, str]:
    """Size, SHA-1 (base64) and SHA-256 (base64) of a file, as a package record holds them."""
    sha1, sha256, size = hashlib.sha1(), hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(PIECE):
            size += len(chunk)
            sha1.update(chunk)
            sha256.update(chunk)
    return (
        size,
        base64.b64encode(sha1.digest()).decode(),
        base64.b64encode(sha256.digest()).decode(),
    )


def etag(package: Package) -> str:
    return '"sha256-' + package.sha256_b64.rstrip("=").replace("/", "_").replace("+", "-") + '"'


def parse_range(
    header: str | None, size: int, if_range: str | None, tag: str
) -> tuple[int, int] | None:
    """The inclusive byte range to send, or None for the whole file."""
    if not header or (if_range is not None and if_range != tag):
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # unsupported forms (several ranges) get the whole file, as RFC 9110 allows
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiableError("empty suffix range")
        start, end = max(0, size - length), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start >= size or end < start:
            raise RangeNotSatisfiableError(f"range {header!r} is outside the file's {size} bytes")
    return start, end


def read_range(path: Path, start: int, end: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        remaining = end - start + 1
        while remaining > 0:
            chunk = f.read(min(PIECE, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
