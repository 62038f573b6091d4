"""Inline and local contents become RFC 2397 data URLs that decode back to the same bytes,
gzipped exactly when that makes the URL shorter."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from railcar.ignition import dataurl
from tests.ignition.tools import translate_yaml


def fetch(resource: dict[str, Any]) -> bytes:
    """What Ignition writes for a data-URL resource: decode (urllib's own data: handler), then
    gunzip when the resource says so."""
    with urllib.request.urlopen(resource["source"]) as response:
        data: bytes = response.read()
    return gzip.decompress(data) if resource.get("compression") == "gzip" else data


def file_contents(body: str, files_dir: Path | None = None) -> dict[str, Any]:
    config = translate_yaml(body, files_dir).config
    contents: dict[str, Any] = config["storage"]["files"][0]["contents"]
    return contents


def test_short_text_stays_readable() -> None:
    contents = file_contents(
        "storage: {files: [{path: /etc/hostname, contents: {inline: node-1}}]}"
    )
    assert contents == {"source": "data:,node-1"}


def test_repetitive_text_is_gzipped() -> None:
    text = "Environment=RAILCAR=1\n" * 200
    contents = file_contents(
        f"storage: {{files: [{{path: /etc/big, contents: {{inline: {json.dumps(text)}}}}}]}}"
    )
    assert contents["compression"] == "gzip"
    assert contents["source"].startswith("data:;base64,")
    assert len(contents["source"]) < len(text) / 4
    assert fetch(contents) == text.encode()


def test_binary_local_file_round_trips(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(3000)  # incompressible: base64 wins, no gzip
    (tmp_path / "blob.bin").write_bytes(data)
    contents = file_contents(
        "storage: {files: [{path: /var/blob, contents: {local: blob.bin}}]}", tmp_path
    )
    assert "compression" not in contents
    assert contents["source"].startswith("data:;base64,")
    assert fetch(contents) == data


def test_hash_of_inline_contents_describes_them_before_gzip() -> None:
    text = "railcar\n" * 300
    digest = hashlib.sha512(text.encode()).hexdigest()
    contents = file_contents(
        f"storage: {{files: [{{path: /etc/r, contents: {{inline: {json.dumps(text)}, "
        f"verification: {{hash: sha512-{digest}}}}}}}]}}"
    )
    assert contents["compression"] == "gzip"
    assert contents["verification"] == {"hash": f"sha512-{digest}"}
    assert hashlib.sha512(fetch(contents)).hexdigest() == digest


def test_empty_inline_is_an_empty_file() -> None:
    contents = file_contents("storage: {files: [{path: /etc/empty, contents: {inline: ''}}]}")
    assert contents == {"source": "data:,"}
    assert fetch(contents) == b""


def test_the_same_input_gives_the_same_url() -> None:
    data = b"x" * 5000
    assert dataurl.encode(data) == dataurl.encode(data)
    assert dataurl.encode(data).gzipped


@pytest.mark.parametrize(
    "text", ["hello world\n", "é ✓ 🚃\n", "#!/bin/sh\nexit 0\n", "100% = a&b?c#d\n"]
)
def test_escaped_text_decodes_to_utf8(text: str) -> None:
    url = dataurl.encode(text.encode(), allow_gzip=False)
    assert fetch({"source": url.url}) == text.encode()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_round_trip_through_the_shortest_url(data: bytes) -> None:
    chosen = dataurl.encode(data)
    assert fetch({"source": chosen.url, "compression": "gzip" if chosen.gzipped else ""}) == data
    plain = dataurl.encode(data, allow_gzip=False)
    assert len(chosen.url) <= len(plain.url)
    assert chosen.gzipped == (len(chosen.url) < len(plain.url))
