"""The spec's path filters: dpkg's rules (``*`` matches ``/``, an include overrides the
excludes), the config file dpkg reads, and the removal of what mmdebstrap's unpacking left."""

from __future__ import annotations

from pathlib import Path

import pytest

from railcar.image.pathfilter import dpkg_config, drop_filtered, excluded, filter_roots
from railcar.image.spec import parse_spec

SPEC = parse_spec('[image]\nversion = "1"\n')
EXCLUDES, INCLUDES = SPEC.path_exclude, SPEC.path_include


@pytest.mark.parametrize(
    ("path", "out"),
    [
        ("/usr/share/doc/systemd/copyright", False),
        ("/usr/share/doc/systemd/changelog.Debian.gz", True),
        ("/usr/share/doc/adduser/examples/skel/.bashrc", True),  # '*' crosses directories
        ("/usr/share/doc/systemd", True),  # a link to another package's directory
        ("/usr/share/man/man1/ls.1.gz", True),
        ("/usr/share/locale/de/LC_MESSAGES/coreutils.mo", True),
        ("/usr/share/locale/locale.alias", False),
        ("/usr/share/info/dir", True),
        ("/usr/share/doc", False),  # the directory itself stays
        ("/usr/share/zoneinfo/UTC", False),
        ("/usr/bin/man", False),
    ],
)
def test_dpkgs_rules(path: str, out: bool) -> None:
    assert excluded(path, EXCLUDES, INCLUDES) is out


def test_config_has_the_excludes_then_the_includes() -> None:
    lines = dpkg_config(EXCLUDES, INCLUDES).splitlines()
    assert lines[: len(EXCLUDES)] == [f"path-exclude={g}" for g in EXCLUDES]
    assert lines[len(EXCLUDES) :] == [f"path-include={g}" for g in INCLUDES]
    assert dpkg_config((), ()) == ""


def test_roots_are_the_directories_before_the_first_wildcard() -> None:
    assert filter_roots(EXCLUDES) == [
        "/usr/share/doc", "/usr/share/info", "/usr/share/lintian", "/usr/share/locale",
        "/usr/share/man",
    ]  # fmt: skip
    assert filter_roots(["/usr/share/doc/*", "/usr/share/doc/x/*.gz", "/usr/lib/a?c"]) == [
        "/usr/lib",
        "/usr/share/doc",
    ]


def _tree(root: Path, files: list[str]) -> None:
    for name in files:
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def test_unpacked_leftovers_go_and_what_is_kept_stays(tmp_path: Path) -> None:
    _tree(tmp_path, [
        "/usr/share/doc/dpkg/copyright", "/usr/share/doc/dpkg/changelog.gz",
        "/usr/share/doc/adduser/examples/skel/x", "/usr/share/man/man8/dpkg.8.gz",
        "/usr/share/locale/de/LC_MESSAGES/dpkg.mo", "/usr/share/locale/locale.alias",
        "/usr/share/zoneinfo/UTC", "/usr/bin/dpkg",
    ])  # fmt: skip
    (tmp_path / "usr/share/doc/libdpkg").symlink_to("dpkg")  # a link to another package's
    assert drop_filtered(tmp_path, EXCLUDES, INCLUDES) == 11
    left = sorted("/" + str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if not p.is_dir())
    assert left == [
        "/usr/bin/dpkg", "/usr/share/doc/dpkg/copyright", "/usr/share/locale/locale.alias",
        "/usr/share/zoneinfo/UTC",
    ]  # fmt: skip
    # The filter roots stay, as the packages' directories; the excluded ones left empty go.
    assert sorted(p.name for p in (tmp_path / "usr/share").iterdir()) == [
        "doc", "locale", "man", "zoneinfo",
    ]  # fmt: skip
    assert not list((tmp_path / "usr/share/man").iterdir())
    assert drop_filtered(tmp_path, EXCLUDES, INCLUDES) == 0


def test_no_filters_remove_nothing(tmp_path: Path) -> None:
    _tree(tmp_path, ["/usr/share/doc/dpkg/changelog.gz"])
    assert drop_filtered(tmp_path, (), ()) == 0
    assert (tmp_path / "usr/share/doc/dpkg/changelog.gz").is_file()
