"""Prefs on disk, update_engine-style: one file per key, atomic writes, absent vs empty kept
apart, and damaged values read as absent rather than wedging the agent."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from railcar.agent import prefs as p
from railcar.agent.machine import Offer, Prefs
from railcar.agent.schedule import PayloadAttempts, ResponseSignature
from railcar.omaha.model import Package

OFFER = Offer(
    version="2.0.0",
    urls=("http://a.test/p.gz", "http://b.test/p.gz"),
    size=1234,
    sha256_b64="aGFzaA==",
    disable_backoff=True,
    extra_packages=(Package("oem-qemu.gz", 10, "c2hhMQ==", "ab" * 32, False),),
    poll_interval=600,
)


def test_prefs_round_trip_one_file_per_key(tmp_path: Path) -> None:
    store = p.PrefsDir(tmp_path / "prefs")
    prefs = Prefs(
        aleph_version="1.0.0",
        previous_version="1.0.0",
        pending_version="2.0.0",
        rolled_back_from=("1.5.0", "1.6.0"),
    )
    p.save_prefs(store, prefs)
    assert p.load_prefs(store) == prefs
    files = {f.name: f.read_text() for f in (tmp_path / "prefs").iterdir()}
    assert files == {
        "aleph-version": "1.0.0",
        "previous-version": "1.0.0",  # update_engine's key names (spec §6.6)
        "railcar-pending-version": "2.0.0",
        "railcar-rolled-back-from": "1.5.0,1.6.0",
    }


def test_previous_version_absent_differs_from_empty(tmp_path: Path) -> None:
    store = p.PrefsDir(tmp_path)
    assert p.load_prefs(store).previous_version is None
    p.save_prefs(store, Prefs(previous_version=""))
    assert p.load_prefs(store).previous_version == ""
    p.save_prefs(store, Prefs())
    assert p.load_prefs(store).previous_version is None
    assert not (tmp_path / "previous-version").exists()


def test_attempts_round_trip(tmp_path: Path) -> None:
    store = p.PrefsDir(tmp_path)
    attempts = PayloadAttempts(
        signature=ResponseSignature(OFFER.urls, OFFER.size, OFFER.sha256_b64),
        url_index=1,
        url_failures=2,
        attempt=3,
        backoff_until=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
    )
    p.save_attempts(store, attempts)
    assert p.load_attempts(store) == attempts
    p.save_attempts(store, PayloadAttempts())
    assert p.load_attempts(store) == PayloadAttempts()


def test_offer_and_completion_round_trip(tmp_path: Path) -> None:
    store = p.PrefsDir(tmp_path)
    p.save_offer(store, OFFER)
    assert p.load_offer(store) == OFFER
    done = p.Completion("{boot}", "A", OFFER)
    p.save_completion(store, done)
    assert p.load_completion(store) == done
    p.save_offer(store, None)
    p.save_completion(store, None)
    assert (p.load_offer(store), p.load_completion(store)) == (None, None)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (p.ACCEPTED_OFFER, "{not json"),
        (p.ACCEPTED_OFFER, '{"version": "2.0.0"}'),
        (p.UPDATE_COMPLETED, "[]"),
        (p.RESPONSE_SIGNATURE, '{"urls": 5}'),
    ],
)
def test_damaged_values_read_as_absent(tmp_path: Path, key: str, value: str) -> None:
    store = p.PrefsDir(tmp_path)
    (tmp_path / key).write_text(value)
    assert p.load_offer(store) is None
    assert p.load_completion(store) is None
    assert p.load_attempts(store) == PayloadAttempts()


def test_damaged_counters_read_as_zero(tmp_path: Path) -> None:
    store = p.PrefsDir(tmp_path)
    p.save_attempts(
        store, PayloadAttempts(signature=ResponseSignature(OFFER.urls, 1, "x"), attempt=2)
    )
    (tmp_path / p.ATTEMPT).write_text("-4")
    (tmp_path / p.URL_INDEX).write_text("9")  # beyond the two URLs
    loaded = p.load_attempts(store)
    assert (loaded.attempt, loaded.url_index) == (0, 0)


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path: Path) -> None:
    store = p.PrefsDir(tmp_path)
    store.set("aleph-version", "1.0.0")
    store.set("aleph-version", "1.1.0")
    assert [f.name for f in tmp_path.iterdir()] == ["aleph-version"]
    assert store.get("aleph-version") == "1.1.0"


def test_unwritable_directory_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    store = p.PrefsDir(tmp_path / "file" / "prefs")
    with pytest.raises(p.PrefsError, match=r"cannot write pref .*file/prefs/aleph-version"):
        store.set("aleph-version", "1.0.0")


def test_key_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lower-case"):
        p.PrefsDir(tmp_path).get("../etc/passwd")
