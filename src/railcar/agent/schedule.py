"""When the agent checks next, and when it may download again: pure arithmetic.

Check scheduling (``shared/spec/omaha-delivery.md`` §6.1, update_engine
``update_check_scheduler.cc`` ``ComputeNextIntervalAndFuzz``, ``utils.cc`` ``FuzzInt``):

* the first check runs ``initial`` (7 min) after start, fuzzed by the regular fuzz;
* a server ``PollInterval`` > 0 is used as the interval, fuzzed by ±interval/2;
* else after HTTP 500 or 503 the previous (un-fuzzed) interval doubles, fuzzed by ±interval/2;
* an interval below ``periodic`` (45 min) becomes ``periodic`` with the regular ±5 min fuzz;
* an interval above ``max_backoff`` (4 h) becomes ``max_backoff``.

Invariants: the un-fuzzed interval is always within [periodic, max_backoff] after the first
check; the delay is within ±fuzz/2 of it. Railcar deviation: update_engine keeps the fuzz of the
*unclamped* doubled interval when clamping to 4 h (so a delay could reach 0 or 8 h); we fuzz by
the clamped interval, so a delay never exceeds 1.5 × ``max_backoff``.

Payload backoff and URL failover (§6.2, update_engine ``payload_state.cc``) live in
:class:`PayloadAttempts`, an immutable record whose methods return the next record.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from railcar.omaha.model import ErrorCode, mask_error_code

# update_engine update_check_scheduler.cc kTimeout* (seconds).
INITIAL_INTERVAL = 7 * 60  # kTimeoutInitialInterval
PERIODIC_INTERVAL = 45 * 60  # kTimeoutPeriodicInterval
REGULAR_FUZZ = 10 * 60  # kTimeoutRegularFuzz: ±5 min
MAX_BACKOFF_INTERVAL = 4 * 60 * 60  # kTimeoutMaxBackoffInterval
# update_engine update_check_scheduler.cc: only these HTTP codes back off.
BACKOFF_HTTP_CODES = frozenset({500, 503})
# update_engine omaha_request_action.cc kActionCodeOmahaRequestHTTPResponseBase.
HTTP_RESPONSE_CODE_BASE = 2000


def fuzz(value: int, fuzz_range: int, rng: random.Random) -> int:
    """update_engine utils.cc ``FuzzInt``: uniform in [value − range/2, value + range − range/2]."""
    low = value - fuzz_range // 2
    return rng.randint(low, low + fuzz_range)


@dataclass(frozen=True)
class CheckSchedule:
    """The constants of §6.1, overridable for tests and fleets that want them."""

    initial: int = INITIAL_INTERVAL
    periodic: int = PERIODIC_INTERVAL
    regular_fuzz: int = REGULAR_FUZZ
    max_backoff: int = MAX_BACKOFF_INTERVAL

    def __post_init__(self) -> None:
        if not 0 < self.periodic <= self.max_backoff or self.initial < 0 or self.regular_fuzz < 0:
            raise ValueError(f"inconsistent check schedule {self}")


@dataclass(frozen=True)
class NextCheck:
    """The delay before the next check and the un-fuzzed interval to double next time."""

    delay: int  # seconds, fuzzed
    interval: int  # seconds, un-fuzzed; feed back as ``last_interval``


def first_check(rng: random.Random, schedule: CheckSchedule = CheckSchedule()) -> NextCheck:
    """The check after the agent starts (update_check_scheduler.cc ``Run``)."""
    return NextCheck(max(0, fuzz(schedule.initial, schedule.regular_fuzz, rng)), 0)


def next_check(
    rng: random.Random,
    *,
    last_interval: int,
    http_status: int | None = None,
    poll_interval: int | None = None,
    schedule: CheckSchedule = CheckSchedule(),
) -> NextCheck:
    """The check after one that ended with ``http_status`` and the server's ``PollInterval``.

    ``last_interval`` is the previous :attr:`NextCheck.interval` (0 before the first periodic
    check)."""
    interval = 0
    if poll_interval is not None and poll_interval > 0:
        interval = poll_interval
    elif http_status in BACKOFF_HTTP_CODES:
        interval = 2 * last_interval
    fuzz_range = interval
    if interval < schedule.periodic:
        interval, fuzz_range = schedule.periodic, schedule.regular_fuzz
    if interval > schedule.max_backoff:
        interval = fuzz_range = schedule.max_backoff
    return NextCheck(max(0, fuzz(interval, fuzz_range, rng)), interval)


def http_status_of(code: int) -> int | None:
    """The HTTP status encoded in an update_engine error code (2000 + status), if any."""
    plain = mask_error_code(code)
    return plain - HTTP_RESPONSE_CODE_BASE if plain >= HTTP_RESPONSE_CODE_BASE else None


# --- payload backoff and URL failover (§6.2) -------------------------------------------------

# update_engine omaha_response.h / payload_state.cc defaults.
DEFAULT_MAX_FAILURES_PER_URL = 10
MAX_BACKOFF_DAYS = 16  # payload_state.cc kMaxBackoffDays
BACKOFF_FUZZ = timedelta(hours=12)  # payload_state.cc: ±6 h

# payload_state.cc UpdateFailed: the payload itself is bad, so this URL is no use.
_ADVANCE_URL = frozenset(
    {
        ErrorCode.PAYLOAD_HASH_MISMATCH,
        ErrorCode.PAYLOAD_SIZE_MISMATCH,
        ErrorCode.DOWNLOAD_PAYLOAD_VERIFICATION_ERROR,
        ErrorCode.DOWNLOAD_INVALID_METADATA_MAGIC,
        ErrorCode.DOWNLOAD_MANIFEST_PARSE_ERROR,
        ErrorCode.DOWNLOAD_OPERATION_HASH_MISMATCH,
        ErrorCode.DOWNLOAD_OPERATION_HASH_MISSING,
        *range(17, 30),  # 17–29: signature, metadata and operation hash/execution errors
        32,  # DownloadInvalidMetadataSize
        33,  # DownloadInvalidMetadataSignature
        39,  # DownloadMetadataSignatureMissingError
    }
)
# payload_state.cc UpdateFailed: transient, count against this URL.
_COUNT_FAILURE = frozenset(
    {
        ErrorCode.ERROR,
        ErrorCode.DOWNLOAD_TRANSFER_ERROR,
        ErrorCode.DOWNLOAD_WRITE_ERROR,
        20,  # DownloadStateInitializationError
        37,  # OmahaErrorInHTTPResponse
    }
)


@dataclass(frozen=True)
class ResponseSignature:
    """What makes two offers the same payload (payload_state.cc ``SetResponse``); any change
    resets all payload state."""

    urls: tuple[str, ...]
    size: int
    sha256_b64: str
    is_delta: bool = False
    max_failures_per_url: int = DEFAULT_MAX_FAILURES_PER_URL
    disable_backoff: bool = False


@dataclass(frozen=True)
class PayloadAttempts:
    """Persisted payload state (prefs ``current-url-index``, ``current-url-failure-count``,
    ``payload-attempt-number``, ``backoff-expiry-time``, ``current-response-signature``).

    Invariants: ``0 <= url_index < len(signature.urls)`` whenever there is a signature;
    ``url_failures < max_failures_per_url``; backoff is ``None`` when disabled for the offer."""

    signature: ResponseSignature | None = None
    url_index: int = 0
    url_failures: int = 0
    attempt: int = 0
    backoff_until: datetime | None = None

    def for_response(self, signature: ResponseSignature) -> PayloadAttempts:
        """Keep the state for the same offer; start afresh for a different one."""
        if signature == self.signature:
            return self
        if not signature.urls:
            raise ValueError("an offer needs at least one URL")
        return PayloadAttempts(signature=signature)

    @property
    def current_url(self) -> str:
        if self.signature is None:
            raise ValueError("no offer recorded")
        return self.signature.urls[self.url_index]

    def backing_off(self, now: datetime) -> bool:
        """Whether an ``ok`` offer must be deferred with code 40 (§6.2)."""
        return self.backoff_until is not None and now < self.backoff_until

    def bytes_received(self) -> PayloadAttempts:
        """Any progress clears this URL's failure count (payload_state.cc ``DownloadProgress``)."""
        return replace(self, url_failures=0) if self.url_failures else self

    def failed(self, code: int, now: datetime, rng: random.Random) -> PayloadAttempts:
        """Account a failed attempt with update_engine's classification of ``code``."""
        plain = mask_error_code(code)
        if plain in _ADVANCE_URL:
            return self._next_url(now, rng)
        if plain in _COUNT_FAILURE or plain >= HTTP_RESPONSE_CODE_BASE:
            sig = self._sig()
            failures = self.url_failures + 1
            if failures >= sig.max_failures_per_url:
                return self._next_url(now, rng)
            return replace(self, url_failures=failures)
        return self  # Omaha, postinstall, verification errors leave URL state alone

    def download_complete(self, now: datetime, rng: random.Random) -> PayloadAttempts:
        """A full payload arrived: one more attempt, and back off before the next download."""
        if self._sig().is_delta:
            return self
        return self._next_attempt(now, rng)

    def _sig(self) -> ResponseSignature:
        if self.signature is None:
            raise ValueError("no offer recorded")
        return self.signature

    def _next_url(self, now: datetime, rng: random.Random) -> PayloadAttempts:
        index = self.url_index + 1
        if index < len(self._sig().urls):
            return replace(self, url_index=index, url_failures=0)
        return replace(self._next_attempt(now, rng), url_index=0, url_failures=0)

    def _next_attempt(self, now: datetime, rng: random.Random) -> PayloadAttempts:
        attempt = self.attempt + 1
        sig = self._sig()
        if sig.disable_backoff or sig.is_delta:
            return replace(self, attempt=attempt, backoff_until=None)
        # payload_state.cc UpdateBackoffExpiryTime: 2^(n−1) days, at most 16, ±6 h.
        days = min(1 << (attempt - 1), MAX_BACKOFF_DAYS)
        half = int(BACKOFF_FUZZ.total_seconds()) // 2
        jitter = timedelta(seconds=rng.randint(-half, half))
        return replace(self, attempt=attempt, backoff_until=now + timedelta(days=days) + jitter)
