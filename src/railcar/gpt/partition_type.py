"""Partition type GUIDs a Flatcar-compatible disk uses, and the partition UUIDs it fixes.

Values are the ones ``cgpt`` knows by alias (``seismograph:src/firmware/include/gpt.h`` and the
``supported_types[]`` table in ``seismograph:src/cgpt/cgpt_common.c``) and the ones Flatcar's
``scripts:build_library/disk_layout.json`` assigns; see spec §1.1–§1.3.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID


class PartitionType(StrEnum):
    """Type GUIDs, lower case as ``uuid.UUID`` prints them; names follow cgpt's aliases."""

    UNUSED = "00000000-0000-0000-0000-000000000000"
    # seismograph:src/firmware/include/gpt.h GPT_ENT_TYPE_EFI
    EFI = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
    # gpt.h GPT_ENT_TYPE_BIOS
    BIOS = "21686148-6449-6e6f-744e-656564454649"
    # gpt.h GPT_ENT_TYPE_FLATCAR_ROOTFS; cgpt aliases flatcar-usr, coreos-usr, *-rootfs.
    # cgpt_common.c IsRoot() accepts only this GUID (guid_coreos_rootfs is the same value).
    FLATCAR_USR = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6"
    # gpt.h GPT_ENT_TYPE_FLATCAR_RESIZE (ROOT, grown on first boot)
    FLATCAR_RESIZE = "3884dd41-8582-4404-b9a8-e9b84f2df50e"
    # gpt.h GPT_ENT_TYPE_FLATCAR_RESERVED (OEM-CONFIG)
    FLATCAR_RESERVED = "c95dc21a-df0e-4340-8d7b-26cbfa9a03e0"
    # gpt.h GPT_ENT_TYPE_FLATCAR_ROOT_RAID
    FLATCAR_ROOT_RAID = "be9067b9-ea49-4f15-b4f6-f36f8c9e1818"
    # gpt.h GPT_ENT_TYPE_LINUX_DATA (OEM)
    LINUX_DATA = "0fc63daf-8483-4772-8e79-3d69d8477de4"
    # gpt.h GPT_ENT_TYPE_CHROMEOS_{ROOTFS,KERNEL}: legacy, shown by name only
    CHROMEOS_ROOTFS = "3cb8e202-3b7e-47dd-8a3c-7ff2a13cfcec"
    CHROMEOS_KERNEL = "fe3a2a5d-4f32-41a7-b725-accc3285a309"

    @property
    def guid(self) -> UUID:
        return UUID(self.value)

    @property
    def alias(self) -> str:
        """The name ``cgpt add -t`` accepts, e.g. ``flatcar-usr``."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def name_of(cls, guid: UUID) -> str:
        """A cgpt-style alias for a known type, else the GUID itself."""
        try:
            return cls(str(guid)).alias
        except ValueError:
            return str(guid)


USR_TYPE_GUID = PartitionType.FLATCAR_USR.guid

# scripts:build_library/disk_layout.json fixes these; grub.cfg tests the USR-A one (spec §1.3).
USR_A_UUID = UUID("7130c94a-213a-4e5a-8e26-6cce9662f132")
USR_B_UUID = UUID("e03dd35c-7c2d-4a47-b3fe-27f15780a57c")
# disk_util runs `cgpt create -g` with this; disk-uuid.service randomizes it on first boot.
BUILD_DISK_GUID = UUID("00000000-0000-0000-0000-000000000001")
