"""The agent's Omaha exchange over HTTP, and the offer it reads from a response.

:class:`OmahaClient` POSTs an encoded :class:`~railcar.omaha.model.Request` as ``text/xml`` and
parses the answer, mapping every failure to the update_engine error code a node reports
(``shared/spec/omaha-delivery.md`` §2.1, §2.3; update_engine ``omaha_request_action.cc``
``TransferComplete()``):

* transfer failed or HTTP status outside 2xx → ``2000 + status`` (clamped to 999; a transfer
  that produced no status, e.g. connection refused or a timeout, is ``2000 + 0``);
* empty body → 30; not well-formed, forbidden XML or over the size cap → 31;
* well-formed but not a usable Omaha response → 34.

The seam is an ``httpx.BaseTransport``: production passes nothing (a real connection pool);
tests pass the transport of a ``starlette.testclient.TestClient`` (``client._transport``) to
run against the server app in-process, or an ``httpx.MockTransport`` for failures the real
server never produces.

:func:`offer_from` is pure: it turns the app's ``<updatecheck>`` into an
:class:`~railcar.agent.machine.Offer` (None for ``noupdate``), raising code 34 for any other
status, as update_engine ``ParseStatus`` does.

Errors::

    AgentError
    └── OmahaExchangeError   the exchange failed; ``code`` is the update_engine ActionExitCode
                             (2000+HTTP status, 30, 31 or 34), ``http_status`` the status if any
"""

from __future__ import annotations

import httpx

from railcar.agent.errors import AgentError
from railcar.agent.machine import Offer
from railcar.omaha.codec import encode_request, parse_response
from railcar.omaha.errors import (
    DocumentTooLargeError,
    ForbiddenXmlError,
    InvalidDocumentError,
    MalformedXmlError,
)
from railcar.omaha.model import (
    MAX_DOCUMENT_BYTES,
    ErrorCode,
    Request,
    Response,
    UpdateCheckStatus,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "HTTP_RESPONSE_BASE",
    "OmahaClient",
    "OmahaExchangeError",
    "http_error_code",
    "offer_from",
]

# update_engine action_processor.h kActionCodeOmahaRequestHTTPResponseBase; the status added is
# clamped to [0, 999] in omaha_request_action.cc TransferComplete() (spec §2.1).
HTTP_RESPONSE_BASE = 2000
_MAX_HTTP_STATUS = 999
# Railcar choice: an update check is small; a server that has not answered in 30 s is down.
DEFAULT_TIMEOUT = 30.0
# update_engine omaha_request_action.cc PerformAction(): kHttpContentTypeTextXml.
_CONTENT_TYPE = "text/xml"


def http_error_code(status: int) -> int:
    """The ActionExitCode for a failed transfer with HTTP ``status`` (0: none received)."""
    if status < 0 or status > _MAX_HTTP_STATUS:
        status = _MAX_HTTP_STATUS
    return HTTP_RESPONSE_BASE + status


class OmahaExchangeError(AgentError):
    """The Omaha exchange failed; ``code`` is what update_engine would report for it."""

    def __init__(self, code: int, message: str, *, http_status: int | None = None) -> None:
        super().__init__(f"{message} (error code {code})")
        self.code = code
        self.http_status = http_status


def _bare_appid(appid: str) -> str:
    # Nebraska echoes the appid verbatim, braces kept (spec §2.4); update_engine sends braces.
    return appid.strip().strip("{}").lower()


def offer_from(response: Response, appid: str) -> Offer | None:
    """The update offered to ``appid`` in ``response``; None for ``noupdate``.

    Raises :class:`OmahaExchangeError` with code 34 when the app or its updatecheck is missing
    or the updatecheck status is anything but ``ok``/``noupdate`` (spec §2.3). The app-level
    ``status`` is ignored, as update_engine ignores it (§2.1).
    """
    invalid = ErrorCode.OMAHA_RESPONSE_INVALID
    wanted = _bare_appid(appid)
    app = next((a for a in response.apps if _bare_appid(a.appid) == wanted), None)
    if app is None:
        raise OmahaExchangeError(invalid, f"the response has no <app> for {appid}")
    check = app.updatecheck
    if check is None:
        raise OmahaExchangeError(invalid, f"the response's <app> for {appid} has no updatecheck")
    if check.status == UpdateCheckStatus.NO_UPDATE:
        return None
    if check.status != UpdateCheckStatus.OK:
        raise OmahaExchangeError(
            invalid, f"updatecheck status is {check.status!r} (app status {app.status!r})"
        )
    manifest = check.manifest
    if manifest is None or not manifest.packages or not check.urls:
        # parse_response refuses these already; a hand-built Response may not.
        raise OmahaExchangeError(invalid, "updatecheck status ok without urls or a manifest")
    first, *extra = manifest.packages
    # update_engine ParseUrls/ParsePackage: "/" appended to a codebase if missing, then the name.
    urls = tuple((u if u.endswith("/") else u + "/") + first.name for u in check.urls)
    return Offer(
        version=manifest.version,
        urls=urls,
        size=first.size,
        sha256_b64=manifest.action.sha256_b64,
        disable_backoff=manifest.action.disable_payload_backoff,
        extra_packages=tuple(extra),
        poll_interval=check.poll_interval,
    )


class OmahaClient:
    """POSTs Omaha requests to one server URL. Use as a context manager or call :meth:`close`
    (which also closes the transport)."""

    def __init__(
        self,
        server_url: str,
        transport: httpx.BaseTransport | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = MAX_DOCUMENT_BYTES,
    ) -> None:
        self.server_url = server_url
        self._cap = max_response_bytes
        self._client = httpx.Client(transport=transport, timeout=timeout)

    def __enter__(self) -> OmahaClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def exchange(self, request: Request) -> Response:
        """Send ``request`` and return the parsed response; raises :class:`OmahaExchangeError`."""
        body = self._post(encode_request(request))
        if not body.strip():
            raise OmahaExchangeError(
                ErrorCode.OMAHA_REQUEST_EMPTY_RESPONSE, "the Omaha server sent an empty body"
            )
        try:
            return parse_response(body, cap=self._cap)
        except (MalformedXmlError, ForbiddenXmlError, DocumentTooLargeError) as exc:
            raise OmahaExchangeError(ErrorCode.OMAHA_REQUEST_XML_PARSE_ERROR, str(exc)) from exc
        except InvalidDocumentError as exc:
            raise OmahaExchangeError(ErrorCode.OMAHA_RESPONSE_INVALID, str(exc)) from exc

    def _post(self, payload: bytes) -> bytes:
        try:
            with self._client.stream(
                "POST", self.server_url, content=payload, headers={"Content-Type": _CONTENT_TYPE}
            ) as response:
                status = response.status_code
                if not 200 <= status < 300:
                    raise OmahaExchangeError(
                        http_error_code(status),
                        f"the Omaha server at {self.server_url} answered HTTP {status}",
                        http_status=status,
                    )
                # Stop reading once past the cap, so a huge body is refused without buffering it.
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self._cap:
                        raise OmahaExchangeError(
                            ErrorCode.OMAHA_REQUEST_XML_PARSE_ERROR,
                            f"the Omaha response exceeds {self._cap} bytes",
                        )
                return bytes(body)
        except httpx.HTTPError as exc:
            raise OmahaExchangeError(
                http_error_code(0),
                f"no answer from the Omaha server at {self.server_url}: {exc!r}",
            ) from exc
