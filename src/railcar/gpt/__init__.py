"""GUID Partition Tables and gptprio, the A/B boot attributes of Flatcar's USR partitions.

Public surface:

* :class:`GptTable`, :class:`GptHeader`, :class:`GptEntry` — the on-disk format, parsed and
  serialized byte for byte (:mod:`railcar.gpt.table`, pure);
* :class:`GptPrio`, :func:`prioritize`, :func:`next_boot`, :func:`set_prio` — cgpt's and GRUB's
  gptprio semantics (:mod:`railcar.gpt.prio`, pure);
* :class:`GptDisk`, :class:`BlockStore`, :class:`FileStore`, :class:`DiskState` — reading both
  copies of a disk, repairing one from the other, crash-safe writes (:mod:`railcar.gpt.disk`);
* :class:`PartitionType` and Flatcar's fixed USR partition UUIDs;
* the error tree in :mod:`railcar.gpt.errors`.
"""

from railcar.gpt.disk import BlockStore, CopyHealth, DiskState, FileStore, GptDisk, read_state
from railcar.gpt.partition_type import USR_A_UUID, USR_B_UUID, USR_TYPE_GUID, PartitionType
from railcar.gpt.prio import GptPrio, next_boot, prio_of, prioritize, set_prio
from railcar.gpt.table import CopyRole, GptEntry, GptHeader, GptTable

__all__ = [
    "USR_A_UUID",
    "USR_B_UUID",
    "USR_TYPE_GUID",
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
    "next_boot",
    "prio_of",
    "prioritize",
    "read_state",
    "set_prio",
]
