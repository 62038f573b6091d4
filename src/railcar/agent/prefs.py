"""What the agent remembers across restarts, stored the way update_engine stores it: one small
file per key under a directory (update_engine ``prefs.cc``; ``/var/lib/update_engine/prefs``,
``shared/spec/omaha-delivery.md`` §6.6). Railcar's directory is ``/var/lib/railcar/prefs``.

Keys (update_engine's name where it has one; ``railcar-*`` for what it keeps elsewhere)::

    aleph-version               the version first installed on this node
    previous-version            absent: never written; "" after a check reported it
    railcar-pending-version     the version installed and awaiting reboot
    railcar-rolled-back-from    comma-separated versions the node fell back from
    current-url-index           payload state (§6.2, update_engine payload_state.cc)
    current-url-failure-count
    payload-attempt-number
    backoff-expiry-time         seconds since the epoch (update_engine: internal time units)
    current-response-signature  JSON: what makes two offers the same payload
    railcar-accepted-offer      JSON offer whose download/install is under way (resume)
    railcar-download-sha256     base64 SHA-256 of the offer whose bytes sit in the download dir
    railcar-update-completed    JSON marker of a finished install; update_engine keeps it in
                                /var/run (update_engine_autoupdate_completed), Railcar keeps the
                                boot id in it so a reboot voids it even where /run is not tmpfs

Writes are atomic: a temporary file in the same directory, fsync, rename, fsync of the
directory; a power cut leaves the old value or the new one, never a torn one. Reading a value
that is not in the expected form logs a warning and treats the key as absent (update_engine
does the same), so a damaged file can cost a re-download, never a wedged agent.

Errors::

    AgentError
    └── PrefsError     the prefs directory cannot be written (names the file and the cause)
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from railcar.agent.disk import fsync_dir
from railcar.agent.errors import AgentError
from railcar.agent.machine import Offer, Prefs
from railcar.agent.schedule import PayloadAttempts, ResponseSignature
from railcar.omaha.model import Package

log = logging.getLogger(__name__)

DEFAULT_PREFS_DIR = Path("/var/lib/railcar/prefs")
_KEY = re.compile(r"[a-z0-9][a-z0-9-]*")

# update_engine prefs.cc key names (spec §6.6).
ALEPH_VERSION = "aleph-version"
PREVIOUS_VERSION = "previous-version"
URL_INDEX = "current-url-index"
URL_FAILURES = "current-url-failure-count"
ATTEMPT = "payload-attempt-number"
BACKOFF_EXPIRY = "backoff-expiry-time"
RESPONSE_SIGNATURE = "current-response-signature"
# Railcar's own keys.
PENDING_VERSION = "railcar-pending-version"
ROLLED_BACK_FROM = "railcar-rolled-back-from"
ACCEPTED_OFFER = "railcar-accepted-offer"
DOWNLOAD_SHA256 = "railcar-download-sha256"
UPDATE_COMPLETED = "railcar-update-completed"


class PrefsError(AgentError):
    """The prefs directory cannot be written."""


class PrefsDir:
    """String values in one file per key under ``path`` (created on first write)."""

    def __init__(self, path: Path = DEFAULT_PREFS_DIR) -> None:
        self.path = path

    def _file(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"pref key {key!r} is not lower-case letters, digits and dashes")
        return self.path / key

    def get(self, key: str) -> str | None:
        try:
            return self._file(key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("ignoring unreadable pref %s: %s", self._file(key), exc)
            return None

    def set(self, key: str, value: str) -> None:
        target = self._file(key)
        temp = target.with_name(f".{key}.new")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with open(temp, "w", encoding="utf-8") as f:
                f.write(value)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, target)
            fsync_dir(self.path)
        except OSError as exc:
            raise PrefsError(f"cannot write pref {target}: {exc.strerror or exc}") from exc

    def delete(self, key: str) -> None:
        target = self._file(key)
        try:
            target.unlink(missing_ok=True)
            if self.path.is_dir():
                fsync_dir(self.path)
        except OSError as exc:
            raise PrefsError(f"cannot remove pref {target}: {exc.strerror or exc}") from exc

    def put(self, key: str, value: str | None) -> None:
        """Set ``key``, or delete it for ``None``; no write when the value is unchanged."""
        if value is None:
            if self.get(key) is not None:
                self.delete(key)
        elif self.get(key) != value:
            self.set(key, value)


def _int(store: PrefsDir, key: str, default: int = 0) -> int:
    text = store.get(key)
    if text is None:
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if value < 0:
        log.warning("ignoring pref %s: expected a non-negative integer, found %r", key, text)
        return default
    return value


def _json(store: PrefsDir, key: str) -> dict[str, Any] | None:
    text = store.get(key)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        log.warning("ignoring pref %s: expected a JSON object", key)
        return None
    return data


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True)


# --- machine.Prefs ----------------------------------------------------------------------------


def load_prefs(store: PrefsDir) -> Prefs:
    rolled = store.get(ROLLED_BACK_FROM) or ""
    return Prefs(
        aleph_version=(store.get(ALEPH_VERSION) or "").strip(),
        previous_version=None if (prev := store.get(PREVIOUS_VERSION)) is None else prev.strip(),
        pending_version=(store.get(PENDING_VERSION) or "").strip(),
        rolled_back_from=tuple(v for v in rolled.strip().split(",") if v),
    )


def save_prefs(store: PrefsDir, prefs: Prefs) -> None:
    store.put(ALEPH_VERSION, prefs.aleph_version or None)
    store.put(PREVIOUS_VERSION, prefs.previous_version)
    store.put(PENDING_VERSION, prefs.pending_version or None)
    store.put(ROLLED_BACK_FROM, ",".join(prefs.rolled_back_from) or None)


# --- payload attempts (§6.2) -----------------------------------------------------------------


def load_attempts(store: PrefsDir) -> PayloadAttempts:
    data = _json(store, RESPONSE_SIGNATURE)
    if data is None:
        return PayloadAttempts()
    try:
        signature = ResponseSignature(
            urls=tuple(str(u) for u in data["urls"]),
            size=int(data["size"]),
            sha256_b64=str(data["sha256_b64"]),
            is_delta=bool(data.get("is_delta", False)),
            max_failures_per_url=int(data["max_failures_per_url"]),
            disable_backoff=bool(data.get("disable_backoff", False)),
        )
    except (KeyError, TypeError, ValueError):
        log.warning("ignoring pref %s: not a response signature", RESPONSE_SIGNATURE)
        return PayloadAttempts()
    expiry = _int(store, BACKOFF_EXPIRY)
    index = _int(store, URL_INDEX)
    if not signature.urls or index >= len(signature.urls):
        index = 0
    return PayloadAttempts(
        signature=signature,
        url_index=index,
        url_failures=_int(store, URL_FAILURES),
        attempt=_int(store, ATTEMPT),
        backoff_until=datetime.fromtimestamp(expiry, UTC) if expiry else None,
    )


def save_attempts(store: PrefsDir, attempts: PayloadAttempts) -> None:
    sig = attempts.signature
    store.put(RESPONSE_SIGNATURE, None if sig is None else _dump(asdict(sig)))
    store.put(URL_INDEX, str(attempts.url_index))
    store.put(URL_FAILURES, str(attempts.url_failures))
    store.put(ATTEMPT, str(attempts.attempt))
    until = attempts.backoff_until
    store.put(BACKOFF_EXPIRY, None if until is None else str(int(until.timestamp())))


# --- the offer under way, and the finished install -------------------------------------------


def offer_to_json(offer: Offer) -> dict[str, Any]:
    data = asdict(offer)
    data["urls"] = list(offer.urls)
    data["extra_packages"] = [asdict(p) for p in offer.extra_packages]
    return data


def offer_from_json(data: dict[str, Any]) -> Offer:
    """Raises KeyError, TypeError or ValueError for anything not written by offer_to_json."""
    poll = data.get("poll_interval")
    return Offer(
        version=str(data["version"]),
        urls=tuple(str(u) for u in data["urls"]),
        size=int(data["size"]),
        sha256_b64=str(data["sha256_b64"]),
        disable_backoff=bool(data.get("disable_backoff", False)),
        extra_packages=tuple(Package(**p) for p in data.get("extra_packages", ())),
        poll_interval=None if poll is None else int(poll),
    )


def load_offer(store: PrefsDir, key: str = ACCEPTED_OFFER) -> Offer | None:
    data = _json(store, key)
    if data is None:
        return None
    try:
        return offer_from_json(data.get("offer", data))
    except (KeyError, TypeError, ValueError):
        log.warning("ignoring pref %s: not an offer", key)
        return None


def save_offer(store: PrefsDir, offer: Offer | None) -> None:
    store.put(ACCEPTED_OFFER, None if offer is None else _dump(offer_to_json(offer)))


@dataclass(frozen=True)
class Completion:
    """An install that finished: in which boot, from which slot, and what it installed."""

    boot_id: str
    booted_slot: str
    offer: Offer


def load_completion(store: PrefsDir) -> Completion | None:
    data = _json(store, UPDATE_COMPLETED)
    if data is None:
        return None
    try:
        return Completion(
            str(data["boot_id"]), str(data["booted_slot"]), offer_from_json(data["offer"])
        )
    except (KeyError, TypeError, ValueError):
        log.warning("ignoring pref %s: not a completion marker", UPDATE_COMPLETED)
        return None


def save_completion(store: PrefsDir, completion: Completion | None) -> None:
    if completion is None:
        store.put(UPDATE_COMPLETED, None)
        return
    data = {
        "boot_id": completion.boot_id,
        "booted_slot": completion.booted_slot,
        "offer": offer_to_json(completion.offer),
    }
    store.put(UPDATE_COMPLETED, _dump(data))
