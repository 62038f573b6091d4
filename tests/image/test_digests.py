"""The DIGESTS file: the spec's hashes of every output file, each section checkable with
coreutils."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from railcar.image.build import _Digests


def _sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            sections[line] = []
        else:
            sections[list(sections)[-1]].append(line)
    return sections


@pytest.mark.parametrize(
    "algorithms", [("sha256",), ("sha512",), ("sha256", "sha512"), ("sha512", "sha256")]
)
def test_one_section_per_hash_in_the_given_order(
    tmp_path: Path, algorithms: tuple[str, ...]
) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * 100_000)
    with open(tmp_path / "sparse.bin", "wb") as f:  # a hole, then data
        f.truncate(3 << 20)
        f.seek(2 << 20)
        f.write(b"data")
    (tmp_path / "late.txt").write_text("handed over by text() itself\n")
    digests = _Digests(algorithms)
    try:
        digests.add(tmp_path / "big.bin")
        digests.add(tmp_path / "sparse.bin", urgent=True)
        text = digests.text(tmp_path)
    finally:
        digests.close()
    sections = _sections(text)
    assert list(sections) == [f"# {a.upper()} HASH" for a in algorithms]
    for algo, lines in zip(algorithms, sections.values(), strict=True):
        assert [line.split("  ", 1)[1] for line in lines] == ["big.bin", "late.txt", "sparse.bin"]
        proc = subprocess.run(
            [f"{algo}sum", "--check", "--strict", "-"], input="\n".join(lines) + "\n",
            cwd=tmp_path, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.count(": OK") == 3
