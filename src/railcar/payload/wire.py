"""Protocol Buffers wire format (proto2), just enough for the CrAU manifest.

Messages are frozen dataclasses that declare their fields in a ``FIELDS`` table
(``Field(number, name, kind)``); :func:`encode` and :func:`decode` walk that table, so each
message's layout is written once. Encoding emits fields in field-number order, as the C++
runtime does, which keeps our manifests byte-identical to upstream generators' for the same
content. Decoding is strict about the wire (truncation, bad wire types, 32-bit overflow,
nesting depth) and skips unknown fields, as proto2 parsers do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Protocol, TypeVar

from railcar.payload.errors import ManifestDecodeError

# Wire types, from the protobuf encoding guide (protobuf.dev/programming-guides/encoding).
WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_LEN = 2
WIRE_FIXED32 = 5

_MAX_VARINT_BYTES = 10
_MAX_DEPTH = 16
_U32_MAX = 0xFFFFFFFF
_U64_MAX = 0xFFFFFFFFFFFFFFFF


class Kind(Enum):
    """How a field's value is carried on the wire."""

    UINT32 = "uint32"
    UINT64 = "uint64"
    BYTES = "bytes"
    MESSAGE = "message"


@dataclass(frozen=True)
class Field:
    """One entry of a message's field table."""

    number: int
    name: str
    kind: Kind
    repeated: bool = False
    message: type[Any] | None = None


class Message(Protocol):
    """A dataclass with a ``FIELDS`` table."""

    FIELDS: ClassVar[tuple[Field, ...]]


M = TypeVar("M")


def encode_varint(value: int) -> bytes:
    if value < 0 or value > _U64_MAX:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Return ``(value, next_pos)``; raise ManifestDecodeError on truncation or overlong input."""
    result = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos >= len(buf):
            raise ManifestDecodeError("manifest ends inside a varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if result > _U64_MAX:
                raise ManifestDecodeError("varint larger than 64 bits in manifest")
            return result, pos
    raise ManifestDecodeError("varint longer than 10 bytes in manifest")


def _key(number: int, wire_type: int) -> bytes:
    return encode_varint((number << 3) | wire_type)


def encode(message: Any) -> bytes:
    """Serialise a FIELDS-declaring dataclass; ``None`` and empty repeated fields are omitted."""
    out = bytearray()
    for field in type(message).FIELDS:
        value = getattr(message, field.name)
        values = value if field.repeated else ([] if value is None else [value])
        for item in values:
            if field.kind is Kind.BYTES:
                out += _key(field.number, WIRE_LEN) + encode_varint(len(item)) + item
            elif field.kind is Kind.MESSAGE:
                body = encode(item)
                out += _key(field.number, WIRE_LEN) + encode_varint(len(body)) + body
            else:
                out += _key(field.number, WIRE_VARINT) + encode_varint(int(item))
    return bytes(out)


def decode(cls: type[M], buf: bytes | memoryview, _depth: int = 0) -> M:
    """Parse ``buf`` as message ``cls``; unknown fields are skipped."""
    if _depth > _MAX_DEPTH:
        raise ManifestDecodeError("manifest nests messages deeper than any CrAU message does")
    table: dict[int, Field] = {f.number: f for f in cls.FIELDS}  # type: ignore[attr-defined]
    values: dict[str, Any] = {}
    for f in table.values():
        if f.repeated:
            values[f.name] = []
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = decode_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ManifestDecodeError("field number 0 in manifest")
        field = table.get(number)
        if wire_type == WIRE_VARINT:
            raw, pos = decode_varint(buf, pos)
            value: Any = raw
        elif wire_type == WIRE_LEN:
            length, pos = decode_varint(buf, pos)
            if length > end - pos:
                raise ManifestDecodeError(
                    f"field {number} claims {length} bytes but only {end - pos} remain"
                )
            value = memoryview(buf)[pos : pos + length]
            pos += length
        elif wire_type in (WIRE_FIXED64, WIRE_FIXED32):
            size = 8 if wire_type == WIRE_FIXED64 else 4
            if size > end - pos:
                raise ManifestDecodeError("manifest ends inside a fixed-width field")
            value = int.from_bytes(buf[pos : pos + size], "little")
            pos += size
        else:
            raise ManifestDecodeError(f"unsupported wire type {wire_type} for field {number}")
        if field is None:
            continue
        item = _convert(cls.__name__, field, wire_type, value, _depth)
        if field.repeated:
            values[field.name].append(item)
        else:
            values[field.name] = item
    for f in table.values():
        if f.repeated:
            values[f.name] = tuple(values[f.name])
    return cls(**values)


def _convert(owner: str, field: Field, wire_type: int, value: Any, depth: int) -> Any:
    where = f"{owner}.{field.name} (field {field.number})"
    if field.kind in (Kind.BYTES, Kind.MESSAGE):
        if wire_type != WIRE_LEN:
            raise ManifestDecodeError(
                f"{where}: expected length-delimited, got wire type {wire_type}"
            )
        if field.kind is Kind.BYTES:
            return bytes(value)
        assert field.message is not None
        return decode(field.message, value, depth + 1)
    if wire_type != WIRE_VARINT:
        raise ManifestDecodeError(f"{where}: expected a varint, got wire type {wire_type}")
    if field.kind is Kind.UINT32 and value > _U32_MAX:
        raise ManifestDecodeError(f"{where}: {value} does not fit the field's uint32")
    return value


def replace(message: M, **changes: Any) -> M:
    """``dataclasses.replace`` with a typed signature for FIELDS messages."""
    return dataclasses.replace(message, **changes)  # type: ignore[type-var]
