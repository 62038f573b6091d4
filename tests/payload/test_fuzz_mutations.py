"""Property: any change to a valid payload's bytes makes reading/verifying/applying fail with a
Railcar payload error — never another exception, never success."""

from __future__ import annotations

import io
import tempfile
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from railcar.payload import PayloadReader, TargetFile, TrustedKeys, apply_stream, generate_payload
from railcar.payload.errors import PayloadError
from railcar.payload.reader import require_signed
from railcar.payload.signing import FileKeySigner
from railcar.release.keys import generate_key
from tests.conftest import usr_like_bytes


@cache
def _fixture() -> tuple[bytes, TrustedKeys]:
    work = Path(tempfile.mkdtemp(prefix="railcar-fuzz-"))
    key = generate_key(work / "key")
    (work / "usr").write_bytes(usr_like_bytes(300_000, seed=11))
    (work / "kernel").write_bytes(usr_like_bytes(20_000, seed=12))
    generate_payload(
        work / "usr", work / "kernel", work / "p.gz", [FileKeySigner(key.private_path)]
    )
    return (work / "p.gz").read_bytes(), TrustedKeys.from_files([key.public_path])


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data, _ = _fixture()
    kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "splice"]))
    pos = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        bit = draw(st.integers(0, 7))
        return data[:pos] + bytes([data[pos] ^ (1 << bit)]) + data[pos + 1 :]
    if kind == "set":
        value = draw(st.binary(min_size=1, max_size=16))
        return data[:pos] + value + data[pos + len(value) :]
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + draw(st.binary(min_size=1, max_size=16)) + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + draw(st.integers(1, 64)) :]
    other = draw(st.integers(0, len(data) - 1))
    n = draw(st.integers(1, 512))
    return data[:pos] + data[other : other + n] + data[pos + n :]


def _verify(data: bytes, trusted: TrustedKeys) -> None:
    reader = PayloadReader(io.BytesIO(data))
    reader.skip_blobs()
    digests = reader.finish()
    trusted.check(require_signed(digests), digests.signatures)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutated_payload_never_verifies(mutated: bytes) -> None:
    original, trusted = _fixture()
    if mutated == original:
        return
    try:
        _verify(mutated, trusted)
    except PayloadError:
        return
    raise AssertionError("a mutated payload verified")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutated_payload_never_applies(mutated: bytes) -> None:
    original, trusted = _fixture()
    if mutated == original:
        return
    with tempfile.TemporaryDirectory() as tmp:
        partition = TargetFile(Path(tmp) / "usr-b", what="partition", replace_atomically=False)
        try:
            apply_stream(io.BytesIO(mutated), partition, None, trusted, workers=2)
        except PayloadError:
            partition.abort()
            return
        partition.abort()
    raise AssertionError("a mutated payload applied")


def test_the_unmutated_payload_verifies() -> None:
    original, trusted = _fixture()
    _verify(original, trusted)
