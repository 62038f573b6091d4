"""Omaha v3 documents to and from :mod:`railcar.omaha.model`.

Parsing goes through defusedxml with DTDs forbidden, so entity expansion ("billion laughs"),
external entities (XXE) and DTD retrieval are refused before anything is expanded; bodies over
the cap are refused before parsing. Readers are lenient about unknown attributes (kept in
``AppRequest.extra``) and strict about what the protocol requires.

Requests are written the way update_engine writes them (``omaha_request_action.cc``
``GetRequestXml``); responses the way Nebraska writes them (``backend/pkg/omaha/omaha.go``):
``shared/spec/omaha-delivery.md`` §2.2–§2.5.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.etree.ElementTree import Element

import defusedxml
import defusedxml.ElementTree as SafeET

from railcar.omaha.errors import (
    DocumentTooLargeError,
    ForbiddenXmlError,
    InvalidDocumentError,
    MalformedXmlError,
)
from railcar.omaha.model import (
    MAX_DOCUMENT_BYTES,
    PROTOCOL_VERSION,
    AppRequest,
    AppResponse,
    Event,
    Manifest,
    OsInfo,
    Package,
    PostinstallAction,
    Request,
    Response,
    UpdateCheck,
    UpdateCheckStatus,
)

_MAX_APPS = 16
_MAX_EVENTS = 32
_KNOWN_APP_ATTRS = {
    "appid",
    "version",
    "track",
    "bootid",
    "oem",
    "oemversion",
    "alephversion",
    "machineid",
    "machinealias",
    "lang",
    "board",
    "hardware_class",
    "delta_okay",
}


def _root(body: bytes, tag: str, cap: int) -> Element:
    if len(body) > cap:
        raise DocumentTooLargeError(f"Omaha document is {len(body)} bytes; the cap is {cap}")
    if not body.strip():
        raise MalformedXmlError("Omaha document is empty")
    try:
        root: Element = SafeET.fromstring(body, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise ForbiddenXmlError(
            f"Omaha document uses a forbidden XML construct ({type(exc).__name__})"
        ) from exc
    except ET.ParseError as exc:
        raise MalformedXmlError(f"Omaha document is not well-formed XML: {exc}") from exc
    if root.tag != tag:
        raise InvalidDocumentError(f"root element is <{root.tag}>; expected <{tag}>")
    protocol = root.get("protocol")
    if protocol != PROTOCOL_VERSION:
        raise InvalidDocumentError(f"protocol is {protocol!r}; expected {PROTOCOL_VERSION!r}")
    return root


def _int(element: Element, name: str, *, required: bool) -> int | None:
    raw = element.get(name)
    if raw is None or raw == "":
        if required:
            raise InvalidDocumentError(f"<{element.tag}> lacks the {name} attribute")
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidDocumentError(f"<{element.tag} {name}={raw!r}>: expected an integer") from None


def _event(element: Element) -> Event:
    event_type = _int(element, "eventtype", required=True)
    result = _int(element, "eventresult", required=True)
    assert event_type is not None and result is not None
    return Event(
        event_type,
        result,
        _int(element, "errorcode", required=False),
        element.get("previousversion"),
    )


def parse_request(body: bytes, *, cap: int = MAX_DOCUMENT_BYTES) -> Request:
    """A client's request; raises an :class:`~railcar.omaha.errors.OmahaError` if unusable."""
    root = _root(body, "request", cap)
    os_el = root.find("os")
    os_info = None
    if os_el is not None:
        os_info = OsInfo(
            os_el.get("version", ""),
            os_el.get("platform", ""),
            os_el.get("sp", ""),
            os_el.get("arch", ""),
        )
    app_elements = root.findall("app")
    if not app_elements:
        raise InvalidDocumentError("request has no <app>")
    if len(app_elements) > _MAX_APPS:
        raise InvalidDocumentError(f"request has {len(app_elements)} apps; at most {_MAX_APPS}")
    apps = []
    for app in app_elements:
        appid = app.get("appid")
        if not appid:
            raise InvalidDocumentError("<app> lacks the appid attribute")
        events = app.findall("event")
        if len(events) > _MAX_EVENTS:
            raise InvalidDocumentError(f"app has {len(events)} events; at most {_MAX_EVENTS}")
        apps.append(
            AppRequest(
                appid=appid,
                version=app.get("version", ""),
                track=app.get("track", ""),
                bootid=app.get("bootid", ""),
                oem=app.get("oem", ""),
                oemversion=app.get("oemversion", ""),
                alephversion=app.get("alephversion", ""),
                machineid=app.get("machineid", ""),
                machinealias=app.get("machinealias", ""),
                lang=app.get("lang", ""),
                board=app.get("board", ""),
                hardware_class=app.get("hardware_class", ""),
                delta_okay=app.get("delta_okay", "false") == "true",
                ping=app.find("ping") is not None,
                updatecheck=app.find("updatecheck") is not None,
                events=tuple(_event(e) for e in events),
                extra={k: v for k, v in app.attrib.items() if k not in _KNOWN_APP_ATTRS},
            )
        )
    return Request(
        apps=tuple(apps),
        protocol=root.get("protocol", ""),
        version=root.get("version", ""),
        updaterversion=root.get("updaterversion", ""),
        installsource=root.get("installsource", ""),
        ismachine=root.get("ismachine", ""),
        os=os_info,
    )


def _tostring(root: Element) -> bytes:
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def encode_request(request: Request) -> bytes:
    """A request as update_engine shapes it (attribute order included)."""
    root = Element(
        "request",
        {
            "protocol": request.protocol,
            "version": request.version,
            "updaterversion": request.updaterversion,
            "installsource": request.installsource,
            "ismachine": request.ismachine,
        },
    )
    if request.os is not None:
        attrs = {
            "version": request.os.version,
            "platform": request.os.platform,
            "sp": request.os.sp,
        }
        if request.os.arch:
            attrs["arch"] = request.os.arch
        ET.SubElement(root, "os", attrs)
    for app in request.apps:
        attrs = {
            "appid": app.appid,
            "version": app.version,
            "track": app.track,
            "bootid": app.bootid,
            "oem": app.oem,
            "oemversion": app.oemversion,
            "alephversion": app.alephversion,
            "machineid": app.machineid,
            "machinealias": app.machinealias,
            "lang": app.lang,
            "board": app.board,
            "hardware_class": app.hardware_class,
            "delta_okay": "true" if app.delta_okay else "false",
            **app.extra,
        }
        el = ET.SubElement(root, "app", attrs)
        if app.ping:
            ET.SubElement(el, "ping", {"active": "1"})
        if app.updatecheck:
            ET.SubElement(el, "updatecheck")
        for event in app.events:
            ev = {"eventtype": str(event.type), "eventresult": str(event.result)}
            if event.error_code is not None:
                ev["errorcode"] = str(event.error_code)
            if event.previous_version is not None:
                ev["previousversion"] = event.previous_version
            ET.SubElement(el, "event", ev)
    return _tostring(root)


def encode_response(response: Response) -> bytes:
    """A response as Nebraska shapes it: daystart, then per app ping, updatecheck, events."""
    root = Element("response", {"protocol": response.protocol, "server": response.server})
    ET.SubElement(root, "daystart", {"elapsed_seconds": str(response.daystart_elapsed_seconds)})
    for app in response.apps:
        el = ET.SubElement(root, "app", {"appid": app.appid, "status": app.status})
        if app.ping:
            ET.SubElement(el, "ping", {"status": "ok"})
        if app.updatecheck is not None:
            _encode_updatecheck(el, app.updatecheck)
        for _ in range(app.events):
            ET.SubElement(el, "event", {"status": "ok"})
    return _tostring(root)


def _encode_updatecheck(parent: Element, check: UpdateCheck) -> None:
    attrs = {"status": check.status}
    if check.poll_interval is not None:
        attrs["PollInterval"] = str(check.poll_interval)
    el = ET.SubElement(parent, "updatecheck", attrs)
    if check.urls:
        urls = ET.SubElement(el, "urls")
        for url in check.urls:
            ET.SubElement(urls, "url", {"codebase": url})
    if check.manifest is None:
        return
    manifest = ET.SubElement(el, "manifest", {"version": check.manifest.version})
    packages = ET.SubElement(manifest, "packages")
    for pkg in check.manifest.packages:
        attrs = {"name": pkg.name, "hash": pkg.sha1_b64}
        if pkg.sha256_hex is not None:
            attrs["hash_sha256"] = pkg.sha256_hex
        attrs["size"] = str(pkg.size)
        attrs["required"] = "true" if pkg.required else "false"
        ET.SubElement(packages, "package", attrs)
    actions = ET.SubElement(manifest, "actions")
    action = {"event": "postinstall", "sha256": check.manifest.action.sha256_b64}
    if check.manifest.action.disable_payload_backoff:
        action["DisablePayloadBackoff"] = "true"
    ET.SubElement(actions, "action", action)


def parse_response(body: bytes, *, cap: int = MAX_DOCUMENT_BYTES) -> Response:
    """A server's response, checked as update_engine checks it (§2.3): with status ``ok`` the
    urls, manifest version, first package (name, size > 0) and postinstall sha256 must exist."""
    root = _root(body, "response", cap)
    apps = []
    for app in root.findall("app"):
        check_el = app.find("updatecheck")
        check = _parse_updatecheck(check_el) if check_el is not None else None
        apps.append(
            AppResponse(
                appid=app.get("appid", ""),
                status=app.get("status", ""),
                ping=app.find("ping") is not None,
                updatecheck=check,
                events=len(app.findall("event")),
            )
        )
    return Response(
        apps=tuple(apps), server=root.get("server", ""), protocol=root.get("protocol", "")
    )


def _parse_updatecheck(el: Element) -> UpdateCheck:
    status = el.get("status")
    if status is None:
        raise InvalidDocumentError("<updatecheck> lacks the status attribute")
    poll = _int(el, "PollInterval", required=False)
    if status != UpdateCheckStatus.OK:
        return UpdateCheck(status=status, poll_interval=poll)
    urls = tuple(u.get("codebase", "") for u in el.findall("urls/url") if u.get("codebase"))
    if not urls:
        raise InvalidDocumentError("updatecheck status ok without any <url codebase>")
    manifest_el = el.find("manifest")
    if manifest_el is None or not manifest_el.get("version"):
        raise InvalidDocumentError("updatecheck status ok without <manifest version>")
    packages = []
    for p in manifest_el.findall("packages/package"):
        size = _int(p, "size", required=True)
        if not p.get("name") or size is None or size <= 0:
            raise InvalidDocumentError("<package> needs a name and a size above 0")
        packages.append(
            Package(
                name=p.get("name", ""),
                size=size,
                sha1_b64=p.get("hash", ""),
                sha256_hex=p.get("hash_sha256"),
                required=p.get("required", "true") == "true",
            )
        )
    if not packages:
        raise InvalidDocumentError("manifest lists no <package>")
    action_el = next(
        (a for a in manifest_el.findall("actions/action") if a.get("event") == "postinstall"), None
    )
    if action_el is None or not action_el.get("sha256"):
        raise InvalidDocumentError("manifest has no postinstall action with a sha256")
    action = PostinstallAction(
        action_el.get("sha256", ""), action_el.get("DisablePayloadBackoff") == "true"
    )
    manifest = Manifest(manifest_el.get("version", ""), tuple(packages), action)
    return UpdateCheck(status=status, urls=urls, manifest=manifest, poll_interval=poll)
