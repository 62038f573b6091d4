"""The dm-verity hash area of a USR partition: superblock and hash tree, as ``veritysetup format``
writes them with ``--hash-offset`` (format 1, SHA-256, one block size for data and hashes).

Made here rather than by veritysetup because most of a USR slot's data area is the zeros after
the filesystem (~650 of 1,000 MiB in the example), and all zero blocks have one digest: this
hashes only the filesystem's blocks. veritysetup read and hashed all of them, then fsynced.
``tests/image/test_verity.py`` checks the bytes against veritysetup's for trees of zero to three
levels. Pure apart from reading the data through the file object it is given.

Facts from cryptsetup (``lib/verity/verity.c``, ``lib/verity/verity_hash.c``):

* The superblock (``struct verity_sb``, 512 bytes, little-endian) sits at the hash offset: the
  signature ``verity\\0\\0``, version 1, hash type 1 ("normal"; 0 is Chrome OS), the UUID's 16
  bytes, the algorithm name in 32 NUL-padded bytes, data and hash block sizes (u32), data block
  count (u64), salt size (u16), 6 bytes of padding, the salt in 256 bytes, 168 bytes of padding.
* The tree starts at the first hash block after the superblock (``VERITY_hash_offset_block``).
* A digest is SHA-256(salt ‖ block) for hash type 1. A hash block holds 4096 / 32 = 128 digests
  back to back, zero-filled after the last.
* Level 0 holds the data blocks' digests, level *i* the digests of level *i* − 1's blocks, up to
  a level of one block. The levels are stored top level first. The root hash is the digest of
  that top block; with a single data block there are no levels, and it is that block's digest.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import BinaryIO
from uuid import UUID

from railcar.image.layout import VERITY_BLOCK

ALGORITHM = "sha256"
SUPERBLOCK = 512
_SIGNATURE = b"verity\0\0"
_VERSION = 1
_HASH_TYPE_NORMAL = 1
# signature, version, hash_type, uuid, algorithm, data/hash block size, data blocks, salt size,
# padding, salt, padding: 8 + 4 + 4 + 16 + 32 + 4 + 4 + 8 + 2 + 6 + 256 + 168 = 512 bytes.
_SB = struct.Struct("<8sII16s32sIIQH6x256s168x")
_READ = 1 << 20  # bytes read from the data file at a time


@dataclass(frozen=True)
class HashArea:
    """What goes at the hash offset (superblock, then the tree), and the root hash (hex)."""

    data: bytes
    root_hash: str


def superblock(uuid: UUID, salt: bytes, data_blocks: int, block: int = VERITY_BLOCK) -> bytes:
    if len(salt) > 256:
        raise ValueError(f"a verity salt is at most 256 bytes, not {len(salt)}")
    return _SB.pack(
        _SIGNATURE, _VERSION, _HASH_TYPE_NORMAL, uuid.bytes, ALGORITHM.encode(),
        block, block, data_blocks, len(salt), salt,
    )  # fmt: skip


def _level(digests: list[bytes], block: int) -> bytes:
    """Digests packed into hash blocks, the last one zero-filled."""
    packed = b"".join(digests)
    return packed + bytes(-len(packed) % block)


def _digests_of(blocks: bytes, salt: bytes, block: int) -> list[bytes]:
    seed = hashlib.sha256(salt)
    out = []
    view = memoryview(blocks)
    for start in range(0, len(blocks), block):
        h = seed.copy()
        h.update(view[start : start + block])
        out.append(h.digest())
    return out


def data_digests(
    data: BinaryIO, length: int, data_blocks: int, salt: bytes, block: int = VERITY_BLOCK
) -> list[bytes]:
    """The digests of ``data_blocks`` blocks: the first ``length`` bytes read from ``data``
    (a short last block padded with zeros), every block after them zero without being read."""
    if length > data_blocks * block:
        raise ValueError(f"{length} bytes of data do not fit {data_blocks} blocks of {block}")
    digests: list[bytes] = []
    left = -(-length // block) * block
    while left:
        chunk = data.read(min(_READ, left))
        if not chunk:
            chunk = bytes(left)  # the file ended inside its last block: zeros
        chunk += bytes(-len(chunk) % block)
        digests += _digests_of(chunk, salt, block)
        left -= len(chunk)
    zero = _digests_of(bytes(block), salt, block)[0]
    digests += [zero] * (data_blocks - len(digests))
    return digests


def hash_area(
    data: BinaryIO,
    length: int,
    data_blocks: int,
    *,
    salt: bytes,
    uuid: UUID,
    block: int = VERITY_BLOCK,
) -> HashArea:
    """The superblock and hash tree for ``data_blocks`` blocks of data, of which only the first
    ``length`` bytes (read from ``data``) may be other than zero."""
    if data_blocks < 1:
        raise ValueError("dm-verity needs at least one data block")
    digests = data_digests(data, length, data_blocks, salt, block)
    levels: list[bytes] = []
    while len(digests) > 1:
        levels.append(_level(digests, block))
        digests = _digests_of(levels[-1], salt, block)
    head = superblock(uuid, salt, data_blocks, block)
    head += bytes(-len(head) % block)
    return HashArea(head + b"".join(reversed(levels)), digests[0].hex())
