"""Debian's cgpt and sgdisk read what we write, and we read what cgpt writes.

After every operation ``cgpt show -i N -P/-T/-S`` reports the gptprio we meant and ``sgdisk -v``
finds no problem. Debian's cgpt (vboot-utils) prioritizes ChromeOS *kernel* partitions with the
same algorithm seismograph's ``cgpt_prioritize.c`` applies to USR partitions, so we check our
:func:`prioritize` against it on kernel-typed images.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from railcar.gpt import GptDisk, GptPrio, PartitionType, prio_of, prioritize
from railcar.gpt.prio import next_boot, set_prio, with_prio
from tests.gpt.tools import PartitionSpec, cgpt_prio, make_image, require_tool, run, sgdisk_verify

ALL = (1, 2, 3, 4, 6, 7, 9)


def _assert_cgpt_agrees(image: Path) -> None:
    with GptDisk.open(image) as disk:
        table = disk.table
    for number in ALL:
        assert cgpt_prio(image, number) == prio_of(table.partition(number)), number
    sgdisk_verify(image)


def test_pristine_image_reads_the_same_in_cgpt(image: Path) -> None:
    assert cgpt_prio(image, 3) == GptPrio(1, 0, True)
    assert cgpt_prio(image, 4) == GptPrio(0, 0, False)
    _assert_cgpt_agrees(image)


@pytest.mark.parametrize(
    ("number", "priority", "tries", "successful"),
    [(4, 15, 15, True), (4, 0, 1, False), (3, 7, 0, None), (9, 3, 2, True), (4, None, 9, None)],
)
def test_set_is_read_back_by_cgpt(
    image: Path, number: int, priority: int | None, tries: int | None, successful: bool | None
) -> None:
    with GptDisk.open(image, writable=True) as disk:
        disk.update(
            lambda e: set_prio(e, number, priority=priority, tries=tries, successful=successful)
        )
    _assert_cgpt_agrees(image)


def test_each_step_of_a_sequence_is_read_back_by_cgpt(image: Path) -> None:
    steps = [
        lambda e: set_prio(e, 4, tries=3, successful=False),
        lambda e: prioritize(e, 4),
        lambda e: next_boot(e)[1],
        lambda e: next_boot(e)[1],
        lambda e: prioritize(e, 3, max_priority=9),
        lambda e: set_prio(e, 3, successful=False, tries=0),
        lambda e: next_boot(e)[1],
    ]
    for step in steps:
        with GptDisk.open(image, writable=True) as disk:
            disk.update(step)
        _assert_cgpt_agrees(image)


def test_what_cgpt_writes_we_read(image: Path) -> None:
    cgpt = require_tool("cgpt")
    run(cgpt, "add", "-i", "4", "-P", "5", "-T", "3", "-S", "0", image)
    run(cgpt, "add", "-i", "3", "-S", "0", image)
    with GptDisk.open(image) as disk:
        state = disk.state
    assert not state.needs_repair
    assert prio_of(state.table.partition(4)) == GptPrio(5, 3, False)
    assert prio_of(state.table.partition(3)) == GptPrio(1, 0, False)


def test_other_attribute_bits_survive(image: Path) -> None:
    # Legacy-BIOS-bootable (bit 2) and the Microsoft read-only bit (60) belong to others.
    run(require_tool("sgdisk"), "-A4:set:2", "-A4:set:60", image)
    with GptDisk.open(image, writable=True) as disk:
        disk.update(lambda e: prioritize(set_prio(e, 4, tries=1), 4))
    with GptDisk.open(image) as disk:
        attributes = disk.table.partition(4).attributes
    assert attributes & (1 << 2) and attributes & (1 << 60)
    _assert_cgpt_agrees(image)


KERNEL_PARTS = 6


@pytest.fixture(scope="module")
def kernel_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kernel-typed partitions 1-6 (what Debian's cgpt prioritizes) and one data partition."""
    kernels = [
        PartitionSpec(n, f"K{n}", PartitionType.CHROMEOS_KERNEL, 1)
        for n in range(1, KERNEL_PARTS + 1)
    ]
    data = PartitionSpec(KERNEL_PARTS + 1, "DATA", PartitionType.LINUX_DATA, 1, attributes=(49,))
    layout = (*kernels, data)
    return make_image(tmp_path_factory.mktemp("kernels") / "kernels.img", layout, mib=10)


def _kernel_image(template: Path, tmp_path: Path, priorities: list[int]) -> Path:
    image = tmp_path / "kernels.img"
    shutil.copyfile(template, image)
    cgpt = require_tool("cgpt")
    for n, p in enumerate(priorities, start=1):
        run(cgpt, "add", "-i", str(n), "-P", str(p), image)
    return image


_rng = random.Random(48)
_CASES = [
    ([_rng.choice([0, 0, 1, 2, 3, 5, 15]) for _ in range(KERNEL_PARTS)], _rng.randint(1, 6), mp, f)
    for mp in (None, 1, 2, 15)
    for f in (False, True)
    for _ in range(2)
] + [([0] * KERNEL_PARTS, 2, None, False), ([1, 2, 3, 4, 5, 6], 1, None, False)]


@pytest.mark.parametrize(("priorities", "target", "max_priority", "friends"), _CASES)
def test_prioritize_matches_cgpt(
    kernel_template: Path,
    tmp_path: Path,
    priorities: list[int],
    target: int,
    max_priority: int | None,
    friends: bool,
) -> None:
    image = _kernel_image(kernel_template, tmp_path, priorities)
    with GptDisk.open(image) as disk:
        before = disk.table.entries
    args = ["prioritize", "-i", str(target)]
    args += ["-P", str(max_priority)] if max_priority else []
    args += ["-f"] if friends else []
    run(require_tool("cgpt"), *args, image)
    with GptDisk.open(image) as disk:
        by_cgpt = [prio_of(e).priority for e in disk.table.entries]

    as_usr = tuple(
        replace(e, type_guid=PartitionType.FLATCAR_USR.guid)
        if e.type_guid == PartitionType.CHROMEOS_KERNEL.guid
        else e
        for e in before
    )
    ours = prioritize(as_usr, target, max_priority=max_priority, friends=friends)
    assert [prio_of(e).priority for e in ours] == by_cgpt
    assert ours[KERNEL_PARTS] == with_prio(before[KERNEL_PARTS], prio_of(before[KERNEL_PARTS]))
