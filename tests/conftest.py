"""Fixtures shared by every test: signing keys, sample images, the CLI runner."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from railcar.release.keys import generate_key
from tests.scheduling import EachTestAUnit, longest_first


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    longest_first(items)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> EachTestAUnit | None:
    """Long tests first, each test its own unit (tests/scheduling.py); other --dist modes
    keep xdist's own schedulers."""
    if config.getvalue("dist") != "load":
        return None
    return EachTestAUnit(config, log)  # xdist's log: quiet unless --debug


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    key = generate_key(tmp_path_factory.mktemp("key-a"))
    return KeyPair(key.private_path, key.public_path)


@pytest.fixture(scope="session")
def other_keypair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    key = generate_key(tmp_path_factory.mktemp("key-b"))
    return KeyPair(key.private_path, key.public_path)


def usr_like_bytes(size: int, seed: int = 1) -> bytes:
    """Bytes shaped like a filesystem: compressible text runs, random runs, zero runs."""
    rng = __import__("random").Random(seed)
    out = bytearray()
    while len(out) < size:
        kind = rng.randrange(3)
        n = rng.randrange(1, 64 << 10)
        if kind == 0:
            out += (b"railcar /usr line %d\n" % rng.randrange(1000)) * (n // 24 + 1)
        elif kind == 1:
            out += rng.randbytes(n)
        else:
            out += bytes(n)
    return bytes(out[:size])


MakeFile = Callable[[str, bytes], Path]


@pytest.fixture
def make_file(tmp_path: Path) -> MakeFile:
    def make(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return make


@pytest.fixture
def cli_runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _no_pkcs11_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RAILCAR_PKCS11_MODULE", "RAILCAR_PKCS11_PIN"):
        if var in os.environ:
            monkeypatch.delenv(var)
