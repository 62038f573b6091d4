"""gptprio bit positions and cgpt's prioritize / GRUB's next, on tables built in memory."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from railcar.gpt import GptEntry, GptPrio, PartitionType, next_boot, prio_of, prioritize, set_prio
from railcar.gpt.errors import AttributeRangeError, NoBootableUsrError, NotUsrPartitionError

USR = PartitionType.FLATCAR_USR.guid


def _entry(prio: GptPrio, type_guid: UUID = USR) -> GptEntry:
    return GptEntry(type_guid, uuid4(), 100, 199, prio.to_attributes(), "X")


def _table(*prios: tuple[int, int, int], other: int | None = None) -> tuple[GptEntry, ...]:
    entries = [_entry(GptPrio(p, t, bool(s))) for p, t, s in prios]
    if other is not None:  # a data partition carrying the same bits: never touched
        entries.insert(other, _entry(GptPrio(9, 9, True), PartitionType.LINUX_DATA.guid))
    return tuple(entries)


def _priorities(entries: tuple[GptEntry, ...]) -> list[int]:
    return [prio_of(e).priority for e in entries]


def test_bits_48_to_56_as_cgpt_and_grub_define_them() -> None:
    assert GptPrio(1, 0, False).to_attributes() == 1 << 48
    assert GptPrio(15, 0, False).to_attributes() == 0xF << 48
    assert GptPrio(0, 1, False).to_attributes() == 1 << 52
    assert GptPrio(0, 15, False).to_attributes() == 0xF << 52
    assert GptPrio(0, 0, True).to_attributes() == 1 << 56
    assert GptPrio.from_attributes(0x0101000000000000) == GptPrio(1, 0, True)


@given(st.integers(0, 2**64 - 1), st.integers(0, 15), st.integers(0, 15), st.booleans())
def test_setting_gptprio_keeps_every_other_bit(attrs: int, p: int, t: int, s: bool) -> None:
    new = GptPrio(p, t, s).to_attributes(attrs)
    assert GptPrio.from_attributes(new) == GptPrio(p, t, s)
    mask = (0xFF << 48) | (1 << 56)
    assert new & ~mask == attrs & ~mask


@pytest.mark.parametrize(("priority", "tries"), [(16, None), (None, -1), (None, 16)])
def test_values_outside_four_bits_are_refused(priority: int | None, tries: int | None) -> None:
    with pytest.raises(AttributeRangeError, match="expected 0 to 15"):
        set_prio(_table((1, 0, 1)), 1, priority=priority, tries=tries)


@pytest.mark.parametrize(
    ("before", "target", "max_priority", "friends", "after"),
    [
        ([1, 0], 2, None, False, [1, 2]),  # the Flatcar postinst case
        ([2, 1], 2, None, False, [1, 2]),  # rollback: roles swap
        ([2, 2, 1], 1, None, False, [3, 2, 1]),  # target leaves its group; groups ranked
        ([2, 2, 1], 1, None, True, [2, 2, 1]),  # with friends the group moves together
        ([5, 3, 0, 0], 3, None, False, [2, 1, 3, 0]),  # gaps close; other zeros stay 0
        ([5, 3, 1], 3, 10, False, [9, 8, 10]),  # -P sets the top
        ([5, 3, 1], 3, 2, False, [1, 1, 2]),  # never below 1
        ([0, 0], 1, None, False, [1, 0]),
        ([0, 0], 1, None, True, [1, 1]),  # friends of a zero are raised with it
        (list(range(15, -1, -1)), 16, None, False, [*range(14, 0, -1), 1, 15]),  # 16 groups
    ],
)
def test_prioritize_as_cgpt_prioritize(
    before: list[int], target: int, max_priority: int | None, friends: bool, after: list[int]
) -> None:
    entries = _table(*((p, 0, 1) for p in before))
    result = prioritize(entries, target, max_priority=max_priority, friends=friends)
    assert _priorities(result) == after
    assert [prio_of(e).tries for e in result] == [0] * len(before)


def test_prioritize_caps_at_fifteen_groups() -> None:
    entries = _table(*((p, 0, 1) for p in range(1, 16)), (15, 0, 1))
    result = prioritize(entries, 1)
    assert _priorities(result)[0] == 15 and min(_priorities(result)) == 1


def test_prioritize_ignores_other_partition_types() -> None:
    entries = _table((1, 0, 1), (0, 0, 0), other=1)
    result = prioritize(entries, 3)
    assert _priorities(result) == [1, 9, 2]
    assert result[1] == entries[1]


def test_prioritize_refuses_a_non_usr_partition() -> None:
    entries = _table((1, 0, 1), other=0)
    with pytest.raises(NotUsrPartitionError, match="type linux-data, expected flatcar-usr"):
        prioritize(entries, 1)


def test_next_prefers_priority_then_the_lower_number() -> None:
    entries = _table((1, 0, 1), (2, 0, 1), (2, 3, 0))
    number, after = next_boot(entries)
    assert number == 2
    assert after == entries  # successful with no tries: nothing to spend, nothing written


def test_next_spends_a_try_and_skips_spent_partitions() -> None:
    entries = _table((1, 0, 1), (2, 1, 0))
    number, entries = next_boot(entries)
    assert number == 2 and prio_of(entries[1]) == GptPrio(2, 0, False)
    number, entries = next_boot(entries)
    assert number == 1 and prio_of(entries[0]) == GptPrio(1, 0, True)


def test_next_never_picks_priority_zero_or_other_types() -> None:
    entries = _table((0, 5, 1), (1, 1, 0), other=0)
    number, _ = next_boot(entries)
    assert number == 3


def test_next_with_nothing_bootable_is_a_typed_error() -> None:
    with pytest.raises(NoBootableUsrError, match=r"1: 2/0/0, 2: 0/3/1"):
        next_boot(_table((2, 0, 0), (0, 3, 1)))
