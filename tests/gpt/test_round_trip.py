"""Parsing and serializing lose nothing: what sgdisk wrote comes back byte for byte."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from railcar.gpt import USR_A_UUID, USR_B_UUID, CopyHealth, CopyRole, GptDisk, GptEntry
from railcar.gpt.table import ENTRY_SIZE, GptHeader, parse_header
from tests.gpt.tools import FLATCAR_LAYOUT, MemoryStore

SECTOR = 512


def test_both_copies_pack_to_the_bytes_sgdisk_wrote(pristine_image: Path) -> None:
    raw = pristine_image.read_bytes()
    with GptDisk.open(pristine_image) as disk:
        state = disk.state
    table = state.table
    assert state.primary.health is CopyHealth.VALID
    assert state.backup.health is CopyHealth.VALID
    for role in CopyRole:
        header = table.header_for(role)
        at = header.my_lba * SECTOR
        assert header.pack() == raw[at : at + SECTOR]
        entries_at = header.entries_lba * SECTOR
        assert table.entries_bytes() == raw[entries_at : entries_at + 128 * ENTRY_SIZE]


def test_the_layout_reads_as_flatcar_lays_it_out(pristine_image: Path) -> None:
    with GptDisk.open(pristine_image) as disk:
        table = disk.table
    assert table.used_numbers() == [p.number for p in FLATCAR_LAYOUT]
    for spec in FLATCAR_LAYOUT:
        entry = table.partition(spec.number)
        assert (entry.label, entry.type_guid) == (spec.label, spec.type.guid)
    assert table.partition(3).unique_guid == USR_A_UUID
    assert table.partition(4).unique_guid == USR_B_UUID
    assert table.disk_guid == UUID("00000000-0000-0000-0000-000000000001")
    assert table.find(label="USR-B") == 4
    assert table.find(unique_guid=USR_A_UUID) == 3


def test_rewriting_an_unchanged_table_changes_no_byte(pristine_image: Path) -> None:
    raw = pristine_image.read_bytes()
    store = MemoryStore(bytearray(raw))
    disk = GptDisk(store)
    disk.write(disk.table)
    assert bytes(store.data) == raw
    assert len([e for e in store.events if e is None]) == 2  # one fsync per copy


_guids = st.uuids()
_entries = st.builds(
    GptEntry,
    type_guid=_guids,
    unique_guid=_guids,
    first_lba=st.integers(0, 2**64 - 1),
    last_lba=st.integers(0, 2**64 - 1),
    attributes=st.integers(0, 2**64 - 1),
    name=st.text(max_size=36)
    .map(lambda s: s.rstrip("\0"))
    .filter(lambda s: len(s.encode("utf-16-le", "surrogatepass")) <= 72),
)


@given(_entries)
def test_any_entry_round_trips(entry: GptEntry) -> None:
    assert GptEntry.parse(entry.pack()) == entry


@given(st.binary(min_size=ENTRY_SIZE, max_size=ENTRY_SIZE))
def test_any_128_bytes_pack_back_identically(raw: bytes) -> None:
    # Names with bytes after the NUL or unpaired surrogates must survive a rewrite untouched.
    assert GptEntry.parse(raw).pack() == raw


@given(st.binary(max_size=SECTOR - 92), _guids)
def test_headers_larger_than_92_bytes_keep_their_tail(extra: bytes, guid: UUID) -> None:
    header = GptHeader(
        my_lba=1,
        alternate_lba=1000,
        first_usable_lba=34,
        last_usable_lba=966,
        disk_guid=guid,
        entries_lba=2,
        num_entries=128,
        entries_crc32=0x12345678,
        extra=extra,
    )
    assert parse_header(header.pack(), lba=1, disk_sectors=1001) == header
