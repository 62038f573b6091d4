"""Package resolution is reused only while every suite's InRelease file is byte-identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from railcar.image import parse_spec
from railcar.image.resolve import (
    Resolution,
    release_urls,
    resolve_packages,
    simulation_preferences,
)
from tests.imagebuild import EXAMPLE, example_spec_text

ONE_LINE = """\
deb http://mirror.invalid/debian bookworm main
# deb http://commented.invalid/debian bookworm main
deb [signed-by=/k.gpg arch=amd64] http://mirror.invalid/debian/ bookworm-updates main contrib
deb https://security.invalid/debian-security bookworm-security main
"""

DEB822 = """\
Types: deb deb-src
URIs: http://a.invalid/debian http://b.invalid/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://c.invalid/x
Suites: trixie
Components: main
Enabled: no

Types: deb-src
URIs: http://d.invalid/src
Suites: bookworm
Components: main
"""


def test_one_line_sources_give_each_suites_inrelease() -> None:
    assert release_urls({"sources.list": ONE_LINE}) == [
        "http://mirror.invalid/debian/dists/bookworm-updates/InRelease",
        "http://mirror.invalid/debian/dists/bookworm/InRelease",
        "https://security.invalid/debian-security/dists/bookworm-security/InRelease",
    ]


def test_deb822_sources_skip_disabled_and_source_only_stanzas() -> None:
    assert release_urls({"debian.sources": DEB822}) == sorted(
        f"http://{host}.invalid/debian/dists/{suite}/InRelease"
        for host in "ab"
        for suite in ("bookworm", "bookworm-updates")
    )


@pytest.mark.parametrize(
    "sources",
    [
        {"sources.list": "deb http://mirror.invalid/flat ./\n"},
        {"sources.list": "deb file:///srv/repo bookworm main\n"},
        {"sources.list": ONE_LINE + "deb copy:///srv/repo bookworm main\n"},
        {"sources.list": "# nothing\n"},
        {},
        {"x.sources": "Types: deb\nURIs: http://a.invalid/debian\nComponents: main\n"},
    ],
    ids=["flat", "file", "copy", "commented", "none", "deb822-no-suite"],
)
def test_sources_an_inrelease_cannot_pin_are_never_reused(sources: dict[str, str]) -> None:
    assert release_urls(sources) is None


def _resolution(*releases: tuple[str, str]) -> Resolution:
    return Resolution((("bash", "5.2"), ("systemd", "252")), releases)


def test_a_resolution_holds_only_while_every_release_file_is_unchanged() -> None:
    a, b = "http://m.invalid/a/InRelease", "http://m.invalid/b/InRelease"
    kept = _resolution((a, "aa"), (b, "bb"))
    now = {a: "aa", b: "bb"}
    assert kept.still_holds(now.get)
    assert not kept.still_holds({**now, b: "cc"}.get)
    assert not kept.still_holds({a: "aa"}.get)  # b could not be fetched
    assert not _resolution().still_holds(now.get)  # sources that could not be pinned


@pytest.mark.parametrize(
    "text",
    ["", "{", "[]", '{"packages": [], "releases": {}}', '{"packages": [["a"]], "releases": {}}'],
)
def test_an_unreadable_stored_resolution_is_ignored(text: str) -> None:
    assert Resolution.from_json(text) is None


def test_stored_resolution_round_trips() -> None:
    kept = _resolution(("http://m.invalid/a/InRelease", "aa"))
    assert Resolution.from_json(kept.to_json()) == kept


@pytest.mark.slow
def test_second_resolution_reuses_the_first_until_an_inrelease_differs(tmp_path: Path) -> None:
    """Real mmdebstrap and the real archive: the first call resolves, the second finds every
    InRelease unchanged and reuses it, and a stored digest that no longer matches resolves again."""
    spec = parse_spec(example_spec_text("1.0.0"), path=EXAMPLE)
    first, reused = resolve_packages(spec, tmp_path)
    assert not reused
    assert ("systemd", dict(first)["systemd"]) in first and len(first) > 100
    (entry,) = (tmp_path / "resolve").glob("*.json")
    stored = json.loads(entry.read_text())
    assert len(stored["releases"]) >= 2  # the suite, its updates and security
    assert all(url.endswith("/InRelease") for url in stored["releases"])

    second, reused = resolve_packages(spec, tmp_path)
    assert reused and second == first

    url = sorted(stored["releases"])[0]
    entry.write_text(json.dumps({**stored, "releases": {**stored["releases"], url: "0" * 64}}))
    third, reused = resolve_packages(spec, tmp_path)
    assert not reused and third == first
    assert json.loads(entry.read_text())["releases"] == stored["releases"]  # rewritten


def test_the_simulation_pins_usrmerge_away_unless_the_spec_names_it() -> None:
    """The merged-/usr hook makes a real bootstrap skip usrmerge (and the Perl it needs); the
    simulation, which runs no hook, is told the same through apt preferences (ADR 0032)."""
    spec = parse_spec(example_spec_text("1.0.0"), path=EXAMPLE)
    text = simulation_preferences(spec)
    assert text is not None
    stanza = dict(line.split(": ", 1) for line in text.strip().splitlines())
    assert stanza == {"Package": "usrmerge", "Pin": "version *", "Pin-Priority": "-1"}
    asked = parse_spec(
        example_spec_text("1.0.0").replace('"systemd", ', '"systemd", "usrmerge", ', 1),
        path=EXAMPLE,
    )
    assert "usrmerge" in asked.packages
    assert simulation_preferences(asked) is None
