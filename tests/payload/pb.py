"""A protobuf encoder for tests, written apart from railcar.payload.wire so that test vectors do
not share code with what they test."""

from __future__ import annotations


def varint(value: int) -> bytes:
    out = b""
    while value > 0x7F:
        out += bytes([(value & 0x7F) | 0x80])
        value >>= 7
    return out + bytes([value])


def vfield(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def bfield(number: int, data: bytes) -> bytes:
    return varint((number << 3) | 2) + varint(len(data)) + data
