"""RFC 2397 ``data:`` URLs for contents written inline or read from ``local:`` files.

Like Butane, three encodings are tried and the shortest URL wins: percent-escaped text, base64,
and base64 of the gzip-compressed bytes (then the resource says ``compression: gzip``). A tie
goes to the uncompressed form, so short text stays readable in the JSON. gzip runs at level 9
with a zero timestamp, so the same input always gives the same URL.
"""

from __future__ import annotations

import base64
import gzip
from dataclasses import dataclass
from urllib.parse import quote

# Unreserved characters (RFC 3986 §2.3) and marks that need no escaping stay as they are; every
# other byte is written as %XX.
_SAFE = "-_.!~*'()"


@dataclass(frozen=True)
class DataUrl:
    url: str
    gzipped: bool


def encode(data: bytes, *, allow_gzip: bool = True) -> DataUrl:
    """The shortest data URL for ``data``; gzip only when it makes the URL shorter."""
    candidates = [
        DataUrl("data:," + quote(data, safe=_SAFE), gzipped=False),
        DataUrl("data:;base64," + base64.b64encode(data).decode("ascii"), gzipped=False),
    ]
    if allow_gzip:
        packed = gzip.compress(data, compresslevel=9, mtime=0)
        candidates.append(DataUrl("data:;base64," + base64.b64encode(packed).decode(), True))
    return min(candidates, key=lambda c: len(c.url))
