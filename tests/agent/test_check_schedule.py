"""Check scheduling and payload backoff (shared/spec/omaha-delivery.md §6.1, §6.2): a fleet must
neither hammer a failing server nor stop checking, and bad payloads must fail over."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from railcar.agent.schedule import (
    MAX_BACKOFF_INTERVAL,
    PERIODIC_INTERVAL,
    CheckSchedule,
    PayloadAttempts,
    ResponseSignature,
    first_check,
    fuzz,
    http_status_of,
    next_check,
)
from railcar.omaha.model import ERROR_FLAG_TEST_OMAHA_URL, ErrorCode

MIN = 60
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_first_check_is_seven_minutes_give_or_take_five() -> None:
    delays = {first_check(random.Random(seed)).delay for seed in range(300)}
    assert min(delays) >= 2 * MIN and max(delays) <= 12 * MIN
    assert min(delays) < 3 * MIN and max(delays) > 11 * MIN


def test_regular_check_is_45_minutes_give_or_take_five() -> None:
    for seed in range(300):
        nxt = next_check(random.Random(seed), last_interval=PERIODIC_INTERVAL)
        assert nxt.interval == PERIODIC_INTERVAL
        assert 40 * MIN <= nxt.delay <= 50 * MIN


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_double_the_interval_up_to_four_hours(status: int) -> None:
    rng = random.Random(1)
    intervals = []
    last = 0
    for _ in range(6):
        nxt = next_check(rng, last_interval=last, http_status=status)
        intervals.append(nxt.interval)
        last = nxt.interval
    assert intervals == [45 * MIN, 90 * MIN, 180 * MIN, 240 * MIN, 240 * MIN, 240 * MIN]


@pytest.mark.parametrize("status", [None, 200, 400, 404, 502])
def test_other_outcomes_return_to_the_regular_interval(status: int | None) -> None:
    nxt = next_check(random.Random(0), last_interval=4 * 3600, http_status=status)
    assert nxt.interval == PERIODIC_INTERVAL


def test_backoff_fuzz_is_half_the_interval_either_way() -> None:
    delays = [
        next_check(random.Random(s), last_interval=45 * MIN, http_status=500).delay
        for s in range(500)
    ]
    assert min(delays) >= 45 * MIN and max(delays) <= 135 * MIN


@pytest.mark.parametrize(
    ("poll", "interval"),
    [(3600, 3600), (60, PERIODIC_INTERVAL), (24 * 3600, MAX_BACKOFF_INTERVAL), (0, 45 * MIN)],
)
def test_poll_interval_overrides_but_is_clamped(poll: int, interval: int) -> None:
    nxt = next_check(random.Random(0), last_interval=0, http_status=503, poll_interval=poll)
    assert nxt.interval == interval


def test_schedule_is_configurable() -> None:
    fast = CheckSchedule(initial=0, periodic=10, regular_fuzz=0, max_backoff=40)
    assert first_check(random.Random(0), fast).delay == 0
    assert next_check(random.Random(0), last_interval=10, schedule=fast).delay == 10
    assert next_check(random.Random(0), last_interval=30, http_status=500, schedule=fast) == (
        next_check(random.Random(0), last_interval=30, http_status=500, schedule=fast)
    )


def test_inconsistent_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        CheckSchedule(periodic=5 * 3600)


@given(
    seed=st.integers(0, 2**32),
    last=st.integers(0, 10**6),
    status=st.sampled_from([None, 200, 500, 503, 2000]),
    poll=st.none() | st.integers(-10, 10**6),
)
def test_interval_always_within_clamps_and_delay_within_fuzz(
    seed: int, last: int, status: int | None, poll: int | None
) -> None:
    nxt = next_check(
        random.Random(seed), last_interval=last, http_status=status, poll_interval=poll
    )
    assert PERIODIC_INTERVAL <= nxt.interval <= MAX_BACKOFF_INTERVAL
    assert nxt.interval // 2 <= nxt.delay <= nxt.interval * 3 // 2
    if poll is None and status not in (500, 503):
        assert 40 * MIN <= nxt.delay <= 50 * MIN


@given(value=st.integers(0, 10**6), rng_range=st.integers(0, 10**5), seed=st.integers())
def test_fuzz_stays_in_update_engine_range(value: int, rng_range: int, seed: int) -> None:
    got = fuzz(value, rng_range, random.Random(seed))
    assert value - rng_range // 2 <= got <= value + rng_range - rng_range // 2


def test_http_status_is_read_from_flagged_codes() -> None:
    assert http_status_of(2503 | ERROR_FLAG_TEST_OMAHA_URL) == 503
    assert http_status_of(ErrorCode.OMAHA_RESPONSE_INVALID) is None


# --- payload backoff / URL failover --------------------------------------------------------

SIG = ResponseSignature(urls=("https://a/", "https://b/"), size=10, sha256_b64="x")


def _fresh(sig: ResponseSignature = SIG) -> PayloadAttempts:
    return PayloadAttempts().for_response(sig)


def test_transient_failures_move_to_next_url_after_max_count() -> None:
    state, rng = _fresh(), random.Random(0)
    for _ in range(9):
        state = state.failed(ErrorCode.DOWNLOAD_TRANSFER_ERROR, NOW, rng)
    assert (state.current_url, state.url_failures) == ("https://a/", 9)
    state = state.failed(ErrorCode.DOWNLOAD_TRANSFER_ERROR, NOW, rng)
    assert (state.current_url, state.url_failures) == ("https://b/", 0)


def test_received_bytes_forgive_earlier_failures() -> None:
    state = _fresh().failed(ErrorCode.DOWNLOAD_WRITE_ERROR, NOW, random.Random(0))
    assert state.bytes_received().url_failures == 0


@pytest.mark.parametrize(
    "code", [ErrorCode.PAYLOAD_HASH_MISMATCH, ErrorCode.DOWNLOAD_PAYLOAD_VERIFICATION_ERROR]
)
def test_bad_payload_moves_to_next_url_at_once(code: int) -> None:
    assert _fresh().failed(code, NOW, random.Random(0)).current_url == "https://b/"


@pytest.mark.parametrize(
    "code", [ErrorCode.OMAHA_RESPONSE_INVALID, ErrorCode.POSTINSTALL_RUNNER_ERROR]
)
def test_non_download_errors_leave_url_state_alone(code: int) -> None:
    state = _fresh()
    assert state.failed(code, NOW, random.Random(0)) == state


def test_wrapping_around_the_urls_counts_an_attempt_and_backs_off_a_day() -> None:
    state, rng = _fresh(), random.Random(0)
    for _ in range(2):
        state = state.failed(ErrorCode.PAYLOAD_HASH_MISMATCH, NOW, rng)
    assert (state.url_index, state.attempt) == (0, 1)
    assert state.backoff_until is not None
    assert abs(state.backoff_until - (NOW + timedelta(days=1))) <= timedelta(hours=6)
    assert state.backing_off(NOW) and not state.backing_off(NOW + timedelta(days=2))


def test_backoff_doubles_per_attempt_and_stops_at_16_days() -> None:
    state, rng = _fresh(), random.Random(0)
    days = []
    for _ in range(7):
        state = state.download_complete(NOW, rng)
        assert state.backoff_until is not None
        days.append(round((state.backoff_until - NOW) / timedelta(days=1)))
    assert days == [1, 2, 4, 8, 16, 16, 16]


@pytest.mark.parametrize(
    "sig",
    [
        ResponseSignature(urls=("https://a/",), size=1, sha256_b64="x", disable_backoff=True),
        ResponseSignature(urls=("https://a/",), size=1, sha256_b64="x", is_delta=True),
    ],
)
def test_backoff_disabled_by_response(sig: ResponseSignature) -> None:
    state = _fresh(sig).download_complete(NOW, random.Random(0))
    assert state.backoff_until is None and not state.backing_off(NOW)


def test_new_offer_resets_state_same_offer_keeps_it() -> None:
    state = _fresh().failed(ErrorCode.PAYLOAD_HASH_MISMATCH, NOW, random.Random(0))
    assert state.for_response(SIG) is state
    other = ResponseSignature(urls=SIG.urls, size=11, sha256_b64="x")
    assert state.for_response(other) == PayloadAttempts(signature=other)


def test_offer_without_urls_is_refused() -> None:
    with pytest.raises(ValueError, match="URL"):
        PayloadAttempts().for_response(ResponseSignature(urls=(), size=1, sha256_b64="x"))
