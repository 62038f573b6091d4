"""Switching USR slots through :class:`GptBootControl`, the A→B cycle of spec §2.3 with cgpt
watching: a good update, a failed boot that falls back, and the mistakes that are refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from railcar.agent.errors import AgentError
from railcar.agent.slots import (
    BootControl,
    BootedSlotTargetError,
    GptBootControl,
    Slot,
    SlotNotFoundError,
    other,
)
from railcar.gpt import USR_A_UUID, USR_B_UUID, GptDisk, GptPrio, next_boot
from tests.gpt.tools import FLATCAR_LAYOUT, cgpt_prio, make_image, sgdisk_verify

FRESH_A = GptPrio(1, 0, True)  # disk_util leaves USR-A P1 T0 S1 (spec §1.3)
ZERO = GptPrio()


@pytest.fixture(scope="module")
def pristine_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image(tmp_path_factory.mktemp("slots") / "flatcar.img")


@pytest.fixture
def image(pristine_image: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "disk.img"
    shutil.copyfile(pristine_image, copy)
    return copy


@contextmanager
def control(image: Path, booted: Slot) -> Iterator[GptBootControl]:
    """One boot's view of the disk, as the agent would open it."""
    with GptDisk.open(image, writable=True) as disk:
        yield GptBootControl(disk, booted)


def grub_boots(image: Path) -> Slot:
    """GRUB's gptprio.next: pick a slot and spend one of its tries, on disk."""
    with GptDisk.open(image, writable=True) as disk:
        number, entries = next_boot(disk.table.entries)
        disk.update(lambda _: entries)
    return {3: Slot.A, 4: Slot.B}[number]


def expect(image: Path, a: GptPrio, b: GptPrio) -> None:
    assert (cgpt_prio(image, 3), cgpt_prio(image, 4)) == (a, b)
    sgdisk_verify(image)


def test_slot_vocabulary() -> None:
    assert (Slot.A.partition_number, Slot.B.partition_number) == (3, 4)
    assert (Slot.A.uuid, Slot.B.uuid) == (USR_A_UUID, USR_B_UUID)
    assert str(Slot.A.uuid) == "7130c94a-213a-4e5a-8e26-6cce9662f132"
    assert str(Slot.B.uuid) == "e03dd35c-7c2d-4a47-b3fe-27f15780a57c"
    assert (Slot.A.label, Slot.B.label) == ("USR-A", "USR-B")
    assert (other(Slot.A), other(Slot.B)) == (Slot.B, Slot.A)


def test_update_to_b_boots_b_and_marks_it_good(image: Path) -> None:
    expect(image, FRESH_A, ZERO)
    with control(image, Slot.A) as slots:
        boot: BootControl = slots
        assert boot.booted_slot() is Slot.A
        assert boot.next_boot() is Slot.A
        boot.mark_install_target(Slot.B)  # postinst: cgpt add -S0 -T1; cgpt prioritize
        assert boot.slot_state(Slot.B) == GptPrio(2, 1, False)
    expect(image, FRESH_A, GptPrio(2, 1, False))

    before = image.read_bytes()
    with control(image, Slot.A) as slots:
        assert slots.next_boot() is Slot.B
        assert slots.next_boot() is Slot.B  # a dry run: no try was spent
    assert image.read_bytes() == before

    assert grub_boots(image) is Slot.B
    expect(image, FRESH_A, GptPrio(2, 0, False))

    with control(image, Slot.B) as slots:
        slots.mark_booted_good()  # flatcar-setgoodroot: cgpt add -S1 -T0; cgpt prioritize
        assert slots.slot_state(Slot.B) == GptPrio(2, 0, True)
        assert slots.next_boot() is Slot.B
    expect(image, FRESH_A, GptPrio(2, 0, True))
    assert grub_boots(image) is Slot.B  # and keeps booting B
    expect(image, FRESH_A, GptPrio(2, 0, True))


def test_failed_boot_of_b_falls_back_to_a(image: Path) -> None:
    with control(image, Slot.A) as slots:
        slots.mark_install_target(Slot.B)
    assert grub_boots(image) is Slot.B  # B hangs or panics: nothing marks it good

    with control(image, Slot.A) as slots:
        assert slots.next_boot() is Slot.A
        assert slots.slot_state(Slot.B) == GptPrio(2, 0, False)
    assert grub_boots(image) is Slot.A
    expect(image, FRESH_A, GptPrio(2, 0, False))

    with control(image, Slot.A) as slots:  # back on A, the agent confirms it
        slots.mark_booted_good()
        assert slots.next_boot() is Slot.A
    expect(image, GptPrio(2, 0, True), GptPrio(1, 0, False))


def test_next_update_goes_back_to_a(image: Path) -> None:
    with control(image, Slot.A) as slots:
        slots.mark_install_target(Slot.B)
    grub_boots(image)
    with control(image, Slot.B) as slots:
        slots.mark_booted_good()
        slots.mark_install_target(Slot.A)
        assert slots.next_boot() is Slot.A
    expect(image, GptPrio(2, 1, False), GptPrio(1, 0, True))


@pytest.mark.parametrize("booted", list(Slot))
def test_install_to_booted_slot_is_refused(image: Path, booted: Slot) -> None:
    before = image.read_bytes()
    with control(image, booted) as slots, pytest.raises(BootedSlotTargetError) as caught:
        slots.mark_install_target(booted)
    assert isinstance(caught.value, AgentError)
    assert "booted slot" in caught.value.message
    assert image.read_bytes() == before


def test_slots_are_found_by_label_without_fixed_uuids(tmp_path: Path) -> None:
    layout = tuple(replace(p, uuid=None) for p in FLATCAR_LAYOUT)
    image = make_image(tmp_path / "random-uuids.img", layout)
    with control(image, Slot.A) as slots:
        slots.mark_install_target(Slot.B)
        assert slots.next_boot() is Slot.B
    expect(image, FRESH_A, GptPrio(2, 1, False))


def test_missing_slot_is_a_clear_error(tmp_path: Path) -> None:
    layout = tuple(p for p in FLATCAR_LAYOUT if p.label != "USR-B")
    image = make_image(tmp_path / "no-usr-b.img", layout)
    with GptDisk.open(image) as disk, pytest.raises(SlotNotFoundError, match="slot B not found"):
        GptBootControl(disk, Slot.A)
