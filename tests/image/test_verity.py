"""The dm-verity hash area made in Python, byte for byte against ``veritysetup format``."""

from __future__ import annotations

import io
import os
import re
import subprocess
from pathlib import Path
from uuid import UUID

import pytest

from railcar.image.layout import VERITY_BLOCK
from railcar.image.verity import SUPERBLOCK, data_digests, hash_area, superblock

UUID_ = UUID("0c2bbb2f-7e2d-4d43-9a1e-3b7a5d8f6a10")
SALT = bytes(range(32))


def _veritysetup(data: Path, hashes: Path, data_blocks: int, salt: bytes) -> str:
    """veritysetup's own hash area for ``data`` in the file ``hashes``; its root hash."""
    printed = subprocess.run(
        [
            "veritysetup", "format", "--hash=sha256",
            f"--data-block-size={VERITY_BLOCK}", f"--hash-block-size={VERITY_BLOCK}",
            f"--data-blocks={data_blocks}", f"--salt={salt.hex() or '-'}", f"--uuid={UUID_}",
            str(data), str(hashes),
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = re.search(r"^Root hash:\s*([0-9a-f]{64})$", printed, re.MULTILINE)
    assert found, printed
    return found.group(1)


@pytest.mark.parametrize(
    ("data_blocks", "length"),
    [
        (1, 100),  # one block, no levels: the root hash is the block's digest
        (2, 2 * VERITY_BLOCK),  # one level
        (128, 5000),  # one full level-0 block; data ends inside a block, zeros after
        (129, 129 * VERITY_BLOCK),  # two levels
        (16385, 3 * VERITY_BLOCK + 1),  # three levels; mostly zero blocks never read
        (300, 0),  # all zeros
    ],
)
def test_hash_area_is_what_veritysetup_writes(
    tmp_path: Path, data_blocks: int, length: int
) -> None:
    payload = os.urandom(length)
    data = tmp_path / "data"
    data.write_bytes(payload)
    os.truncate(data, data_blocks * VERITY_BLOCK)
    hashes = tmp_path / "hashes"
    root = _veritysetup(data, hashes, data_blocks, SALT)

    area = hash_area(io.BytesIO(payload), length, data_blocks, salt=SALT, uuid=UUID_)
    assert area.root_hash == root
    assert area.data == hashes.read_bytes()


def test_superblock_fields() -> None:
    sb = superblock(UUID_, SALT, 260094)
    assert len(sb) == SUPERBLOCK
    assert sb[:8] == b"verity\0\0"
    assert sb[8:16] == (1).to_bytes(4, "little") + (1).to_bytes(4, "little")
    assert sb[16:32] == UUID_.bytes
    assert sb[32:64].rstrip(b"\0") == b"sha256"
    assert int.from_bytes(sb[72:80], "little") == 260094
    assert int.from_bytes(sb[80:82], "little") == 32
    assert sb[88:120] == SALT and not any(sb[120:])


def test_data_shorter_than_claimed_is_read_as_zeros_and_too_long_is_refused() -> None:
    short = data_digests(io.BytesIO(b"x" * 10), 3 * VERITY_BLOCK, 4, SALT)
    assert short == data_digests(io.BytesIO(b"x" * 10 + bytes(100)), 10, 4, SALT)
    with pytest.raises(ValueError, match="do not fit"):
        data_digests(io.BytesIO(), 5 * VERITY_BLOCK, 4, SALT)
    with pytest.raises(ValueError, match="at most 256"):
        superblock(UUID_, bytes(257), 1)
