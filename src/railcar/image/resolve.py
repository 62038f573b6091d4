"""Package resolution, and when an earlier one still holds (ADR 0023).

The rootfs cache key needs the package versions mmdebstrap would install today. Asking it
(``mmdebstrap --simulate``) downloads the suite's indexes (~9 MB) and runs apt's solver three
times: 4–6 s on every build, a fifth of a warm rebuild. Its answer is a function of the spec's
package settings, the host's mmdebstrap and apt, and the archive's indexes — and each suite's
indexes are pinned by its ``InRelease`` file, which lists the hash of every index file. So a
resolution is kept with the sources mmdebstrap used and the SHA-256 of each suite's
``InRelease`` then; a later build fetches those few small files again and reuses the resolution
when every one is byte-identical. Any difference, a failed download, or a source this cannot
pin (a flat repository, ``file:`` or ``copy:`` URIs, no sources found) means a full resolution.

The comparison needs no trust in the fetched files: a matching SHA-256 means the files that an
earlier, apt-verified resolution read; a forged one cannot match and only causes a full run.

:class:`Resolution` and :func:`release_urls` are pure; :func:`resolve_packages` does the IO.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from railcar.image.errors import RootfsError
from railcar.image.spec import ImageSpec

_INST = re.compile(r"^Inst (\S+) \((\S+) ")
# One-line sources (sources.list(5)): "deb [options] URI SUITE [COMPONENT…]".
_ONE_LINE = re.compile(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")
_PINNABLE = ("http://", "https://")
_APT_HELPER = "/usr/lib/apt/apt-helper"

Packages = list[tuple[str, str]]
FetchDigest = Callable[[str], "str | None"]


def release_urls(sources: Mapping[str, str]) -> list[str] | None:
    """The ``InRelease`` URL of every suite in apt sources (file name → text), sorted.

    ``None`` when a source cannot be pinned by an ``InRelease`` file: a flat repository (suite
    ending in ``/``), a URI that is not http(s), or no source at all.
    """
    pairs: set[tuple[str, str]] = set()
    for name, text in sources.items():
        if name.endswith(".sources"):
            found = _deb822_pairs(text)
        else:
            found = [(m[1], m[2]) for line in text.splitlines() if (m := _ONE_LINE.match(line))]
        if found is None:
            return None
        pairs.update((uri, suite) for uri, suite in found)
    if not pairs or any(not u.startswith(_PINNABLE) or s.endswith("/") for u, s in pairs):
        return None
    return sorted(f"{uri.rstrip('/')}/dists/{suite}/InRelease" for uri, suite in pairs)


def _deb822_pairs(text: str) -> list[tuple[str, str]] | None:
    pairs: list[tuple[str, str]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if ":" in line and not line[:1].isspace() and not line.startswith("#"):
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        if not fields:
            continue
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
            continue
        uris, suites = fields.get("uris", "").split(), fields.get("suites", "").split()
        if not uris or not suites:
            return None
        pairs += [(uri, suite) for uri in uris for suite in suites]
    return pairs


@dataclass(frozen=True)
class Resolution:
    """A resolved package set and the ``InRelease`` files (URL → SHA-256) it was made from."""

    packages: tuple[tuple[str, str], ...]
    releases: tuple[tuple[str, str], ...]  # sorted (url, sha256); empty: cannot be reused

    def still_holds(self, fetch_digest: FetchDigest) -> bool:
        """Whether every ``InRelease`` file is unchanged (``fetch_digest`` returns a file's
        SHA-256 now, or ``None`` when it cannot be fetched)."""
        if not self.releases:
            return False
        urls = [url for url, _ in self.releases]
        with ThreadPoolExecutor(max_workers=len(urls)) as pool:
            now = list(pool.map(fetch_digest, urls))
        return now == [then for _, then in self.releases]

    def to_json(self) -> str:
        return json.dumps(
            {"packages": self.packages, "releases": dict(self.releases)}, indent=1, sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str) -> Resolution | None:
        """The stored resolution, or ``None`` for anything unreadable (then resolve again)."""
        try:
            data = json.loads(text)
            packages = tuple((str(p), str(v)) for p, v in data["packages"])
            releases = tuple(sorted((str(u), str(d)) for u, d in data["releases"].items()))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return cls(packages, releases) if packages else None


def fetch_release_digest(url: str) -> str | None:
    """SHA-256 of the file at ``url``, fetched with apt's own downloader (so apt's proxy and
    TLS settings apply), or ``None`` when it cannot be fetched."""
    with tempfile.TemporaryDirectory(prefix="railcar-release-") as tmp:
        dest = Path(tmp) / "InRelease"
        proc = subprocess.run(
            # The sandbox user could not write into a root-only temporary directory.
            [_APT_HELPER, "-o", "APT::Sandbox::User=root", "download-file", url, str(dest)],
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0 or not dest.is_file():
            return None
        return hashlib.sha256(dest.read_bytes()).hexdigest()


def _tool_versions() -> str:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}=${Version}\n", "mmdebstrap", "apt"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout


def _entry(spec: ImageSpec, cache: Path) -> Path:
    # format 2: the simulation names usr-is-merged (merged-/usr hooks, ADR 0028);
    # 3: and pins usrmerge away (ADR 0032)
    material = json.dumps(
        {"spec": spec.rootfs_fields(), "tools": _tool_versions(), "format": 3}, sort_keys=True
    )
    return cache / "resolve" / f"{hashlib.sha256(material.encode()).hexdigest()[:32]}.json"


# mmdebstrap(1), HOOKS: the hook directory shipped with mmdebstrap that sets up merged /usr as
# debootstrap does (directory symlinks, then Debian's real usr-is-merged package). Without it
# apt satisfies init-system-helpers' "usrmerge | usr-is-merged" with usrmerge, which converts
# the tree afterwards and pulls Perl into /usr (ADR 0028). The hook uses debootstrap's
# setup_merged_usr when debootstrap is installed (scripts/setup installs it), and its own links
# otherwise; the two differ (lib32, libx32), so every build host should have debootstrap.
MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/merged-usr"


# What the merged-/usr hooks make a real bootstrap skip: init-system-helpers depends on
# "usrmerge | usr-is-merged", and the hook has installed usr-is-merged before apt chooses.
_HOOK_SKIPS = "usrmerge"


def simulation_preferences(spec: ImageSpec) -> str | None:
    """apt_preferences(5) for the simulation only: :data:`_HOOK_SKIPS` pinned below zero (never
    installed), unless the spec asks for it by name; ``None`` when there is nothing to pin."""
    if _HOOK_SKIPS in spec.packages:
        return None
    return f"Package: {_HOOK_SKIPS}\nPin: version *\nPin-Priority: -1\n"


def mmdebstrap_base(spec: ImageSpec) -> list[str]:
    if not Path(MERGED_USR_HOOKS, "setup00.sh").is_file():
        raise RootfsError(
            f"mmdebstrap's merged-/usr hooks are missing ({MERGED_USR_HOOKS})",
            hint="install Debian 12's mmdebstrap (scripts/setup)",
        )
    return [
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root",
        f"--hook-dir={MERGED_USR_HOOKS}",
        f"--architectures={spec.architecture.value}",
        f"--include={','.join([*spec.packages, spec.kernel_package])}",
    ]


def simulate(spec: ImageSpec, fetch_digest: FetchDigest = fetch_release_digest) -> Resolution:
    """Ask mmdebstrap (``--simulate``) which packages it would install, and note the
    ``InRelease`` files of the sources it used."""
    with tempfile.TemporaryDirectory(prefix="railcar-resolve-") as tmp:
        # A directory as the target keeps the apt sources mmdebstrap chose (mmdebstrap(1)).
        target = Path(tmp) / "root"
        # A simulation runs no hook, so apt would not know that the merged-/usr setup hook
        # installs usr-is-merged before the essential set. Named here, usr-is-merged is in the
        # answer; pinned away (apt_preferences(5): a negative priority never installs),
        # usrmerge and the Perl it pulls in are not, as in a real bootstrap (ADR 0032).
        pins = []
        if (text := simulation_preferences(spec)) is not None:
            preferences = Path(tmp) / "preferences"
            preferences.write_text(text)
            pins = [f'--aptopt=Dir::Etc::Preferences "{preferences}"']
        cmd = [
            *mmdebstrap_base(spec), "--include=usr-is-merged", *pins, "--simulate", "--verbose",
            spec.suite, str(target),
        ]  # fmt: skip
        # mmdebstrap prints apt's simulation on stderr.
        proc = subprocess.run([*cmd, *spec.mirrors], capture_output=True, text=True, check=False)
        apt = target / "etc" / "apt"
        sources = {
            p.name: p.read_text(errors="replace")
            for p in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]
            if p.is_file()
        }
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])
        raise RootfsError(f"mmdebstrap could not resolve the package set: {tail}")
    out = proc.stdout + proc.stderr
    found = sorted({(m[1], m[2]) for line in out.splitlines() if (m := _INST.match(line))})
    if not found:
        raise RootfsError(f"mmdebstrap resolved no packages for suite {spec.suite!r}")
    releases: list[tuple[str, str]] = []
    for url in release_urls(sources) or []:
        digest = fetch_digest(url)
        if digest is None:
            releases = []
            break
        releases.append((url, digest))
    return Resolution(tuple(found), tuple(releases))


def kept_resolution(
    spec: ImageSpec, cache: Path, *, fetch_digest: FetchDigest = fetch_release_digest
) -> Packages | None:
    """The packages of the resolution stored in ``cache`` for ``spec`` when every one of its
    ``InRelease`` files is unchanged, else ``None``."""
    entry = _entry(spec, cache)
    if entry.is_file():
        kept = Resolution.from_json(entry.read_text())
        if kept is not None and kept.still_holds(fetch_digest):
            return list(kept.packages)
    return None


def fresh_resolution(
    spec: ImageSpec, cache: Path | None = None, *, fetch_digest: FetchDigest = fetch_release_digest
) -> Packages:
    """Resolve now (:func:`simulate`) and store the answer in ``cache`` for later builds."""
    resolution = simulate(spec, fetch_digest)
    if cache is not None:
        entry = _entry(spec, cache)
        entry.parent.mkdir(parents=True, exist_ok=True)
        partial = entry.with_name(f".{entry.name}.{os.getpid()}")
        partial.write_text(resolution.to_json())
        partial.replace(entry)
        _prune(entry.parent)
    return list(resolution.packages)


def resolve_packages(
    spec: ImageSpec, cache: Path | None = None, *, fetch_digest: FetchDigest = fetch_release_digest
) -> tuple[Packages, bool]:
    """The (package, version) pairs mmdebstrap would install today, sorted, and whether they
    came from ``cache`` (an earlier resolution whose ``InRelease`` files are unchanged)."""
    if cache is not None:
        kept = kept_resolution(spec, cache, fetch_digest=fetch_digest)
        if kept is not None:
            return kept, True
    return fresh_resolution(spec, cache, fetch_digest=fetch_digest), False


def _prune(directory: Path, keep: int = 8) -> None:
    entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)


__all__ = [
    "Resolution",
    "fresh_resolution",
    "kept_resolution",
    "mmdebstrap_base",
    "release_urls",
    "resolve_packages",
    "simulate",
    "simulation_preferences",
]
