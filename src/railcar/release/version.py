"""OS versions: semantic versions as Flatcar and Nebraska compare them (``MAJOR.MINOR.PATCH``
with optional pre-release and build, per semver.org 2.0; Nebraska uses blang/semver)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from railcar.errors import RailcarError

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


class VersionError(RailcarError):
    """A version string is not a semantic version."""


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _SEMVER.match(text.strip())
        if match is None:
            raise VersionError(
                f"{text!r} is not a semantic version",
                hint="expected MAJOR.MINOR.PATCH, e.g. 4152.2.3",
            )
        pre = tuple(match.group(4).split(".")) if match.group(4) else ()
        return cls(
            int(match.group(1)), int(match.group(2)), int(match.group(3)), pre, match.group(5) or ""
        )

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # A version without pre-release ranks above any with one (semver §11).
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        return text + (f"+{self.build}" if self.build else "")


def is_valid(text: str) -> bool:
    return _SEMVER.match(text.strip()) is not None
