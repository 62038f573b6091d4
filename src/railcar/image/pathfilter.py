"""The spec's path filters (``packages.path_exclude`` / ``path_include``): what of the packages'
files stays out of the tree.

dpkg applies them while it installs (dpkg(1) ``--path-exclude``, ``--path-include``): a glob's
``*`` matches any characters, ``/`` included, and the last filter that matches a path decides,
the includes coming after the excludes. mmdebstrap unpacks the essential packages before dpkg
runs, and filtering that unpacking makes it slower than the files saved (it pipes every
package through a Python tar filter); so the bootstrap gives dpkg the filters in its own
config file, and :func:`drop_filtered` then removes what the unpacking left, and the
directories that end up empty, with the same rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

_WILDCARD = re.compile(r"[*?\[]")


def dpkg_config(excludes: Sequence[str], includes: Sequence[str]) -> str:
    """dpkg.cfg lines for the filters: the excludes, then the includes that override them."""
    lines = [f"path-exclude={glob}" for glob in excludes]
    lines += [f"path-include={glob}" for glob in includes]
    return "".join(f"{line}\n" for line in lines)


def excluded(path: str, excludes: Sequence[str], includes: Sequence[str]) -> bool:
    """Whether dpkg would leave ``path`` (absolute, in the image) out."""
    if any(fnmatchcase(path, glob) for glob in includes):
        return False
    return any(fnmatchcase(path, glob) for glob in excludes)


def filter_roots(excludes: Iterable[str]) -> list[str]:
    """The directories the exclude globs can match below: each glob's part before its first
    wildcard, cut back to a directory; nested ones dropped."""
    roots = set()
    for glob in excludes:
        wildcard = _WILDCARD.search(glob)
        fixed = glob[: wildcard.start()] if wildcard else glob
        roots.add(fixed.rsplit("/", 1)[0] or "/")
    return sorted(r for r in roots if not any(r.startswith(o.rstrip("/") + "/") for o in roots))


def drop_filtered(tree: Path, excludes: Sequence[str], includes: Sequence[str]) -> int:
    """Remove from ``tree`` every file and link the filters exclude, then every directory they
    exclude that is left empty; the number of entries removed."""
    removed = 0
    for root in filter_roots(excludes):
        top = tree / root.lstrip("/")
        if not top.is_dir() or top.is_symlink():
            continue
        for current, dirs, files in os.walk(top, topdown=False):
            inside = "/" + os.path.relpath(current, tree)
            for name in files:
                if excluded(f"{inside}/{name}", excludes, includes):
                    os.unlink(os.path.join(current, name))
                    removed += 1
            for name in dirs:  # links to directories are listed here, and not walked into
                full = os.path.join(current, name)
                if not excluded(f"{inside}/{name}", excludes, includes):
                    continue
                if os.path.islink(full):
                    os.unlink(full)
                    removed += 1
                elif not os.listdir(full):
                    os.rmdir(full)
                    removed += 1
    return removed
