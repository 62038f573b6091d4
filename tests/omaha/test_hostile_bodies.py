"""Hostile or broken bodies are refused with a typed error, quickly and without expanding
anything: XXE, billion laughs, oversize, invalid UTF-8, truncation."""

from __future__ import annotations

import resource

import pytest

from railcar.omaha.codec import parse_request, parse_response
from railcar.omaha.errors import (
    DocumentTooLargeError,
    ForbiddenXmlError,
    InvalidDocumentError,
    MalformedXmlError,
    OmahaError,
)
from tests.omaha.test_update_engine_documents import FIRST_CHECK_AFTER_UPDATE

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE request [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<request protocol="3.0"><app appid="&xxe;"><updatecheck/></app></request>"""

LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b']>\n<request protocol="3.0"><app appid="&lol9;"/></request>'
)

CASES: dict[str, tuple[bytes, type[OmahaError]]] = {
    "xxe": (XXE, ForbiddenXmlError),
    "billion laughs": (LAUGHS, ForbiddenXmlError),
    "plain dtd": (b'<!DOCTYPE request><request protocol="3.0"/>', ForbiddenXmlError),
    "10 MB": (b"<request>" + b" " * (10 << 20) + b"</request>", DocumentTooLargeError),
    "invalid utf-8": (
        FIRST_CHECK_AFTER_UPDATE.replace(b"web-01", b"web-\xff\xfe"),
        MalformedXmlError,
    ),
    "truncated": (
        FIRST_CHECK_AFTER_UPDATE[: len(FIRST_CHECK_AFTER_UPDATE) // 2],
        MalformedXmlError,
    ),
    "empty": (b"", MalformedXmlError),
    "not omaha": (b"<html><body/></html>", InvalidDocumentError),
    "protocol 2.0": (b'<request protocol="2.0"><app appid="x"/></request>', InvalidDocumentError),
    "no app": (b'<request protocol="3.0"></request>', InvalidDocumentError),
    "app without id": (b'<request protocol="3.0"><app/></request>', InvalidDocumentError),
    "too many apps": (
        b'<request protocol="3.0">' + b'<app appid="a"/>' * 17 + b"</request>",
        InvalidDocumentError,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_request_is_refused(case: str) -> None:
    body, error = CASES[case]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(error):
        parse_request(body)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024  # nothing got expanded into memory


@pytest.mark.parametrize("case", ["xxe", "billion laughs", "10 MB", "truncated"])
def test_hostile_response_is_refused(case: str) -> None:
    body, _ = CASES[case]
    with pytest.raises(OmahaError):
        parse_response(body.replace(b"request", b"response"))
