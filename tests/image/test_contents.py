"""The contents report (``…_image_contents.txt``): every path under /usr, in path order."""

from __future__ import annotations

import os
from pathlib import Path

from railcar.image.build import _contents


def test_every_path_in_component_order_with_directories_marked(tmp_path: Path) -> None:
    usr = tmp_path / "usr"
    for d in ("a/b", "a-b", "lib/.hidden", "share/empty"):
        (usr / d).mkdir(parents=True)
    for f in ("a/b/file", "a-b/x", "lib/.hidden/.dotfile", "bin"):
        (usr / f).write_text("")
    os.symlink("lib", usr / "lib64")  # a symlink to a directory: listed, not followed
    os.symlink("missing", usr / "dangling")
    assert _contents(usr).splitlines() == [
        # by component, as pathlib orders paths: "a" < "a-b", so a/b comes before a-b
        "/usr/a/", "/usr/a/b/", "/usr/a/b/file", "/usr/a-b/", "/usr/a-b/x", "/usr/bin",
        "/usr/dangling", "/usr/lib/", "/usr/lib/.hidden/", "/usr/lib/.hidden/.dotfile",
        "/usr/lib64", "/usr/share/", "/usr/share/empty/",
    ]  # fmt: skip
