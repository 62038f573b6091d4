"""The names ``railcar.gpt`` exports are a promise; changing them is a decision."""

from __future__ import annotations

import railcar.gpt


def test_exported_names() -> None:
    assert sorted(railcar.gpt.__all__) == [
        "BlockStore",
        "CopyHealth",
        "CopyRole",
        "DiskState",
        "FileStore",
        "GptDisk",
        "GptEntry",
        "GptHeader",
        "GptPrio",
        "GptTable",
        "PartitionType",
        "USR_A_UUID",
        "USR_B_UUID",
        "USR_TYPE_GUID",
        "next_boot",
        "prio_of",
        "prioritize",
        "read_state",
        "set_prio",
    ]
    for name in railcar.gpt.__all__:
        assert hasattr(railcar.gpt, name)
