"""``image_bench.py build``: a cold and a warm ``railcar build`` next to Debian's mkosi, one run.

Per run, in an order that alternates between runs:

* **cold**: :func:`railcar.image.build_image` of the example spec with a new, empty cache
  directory, except for the download caches (the ``.deb`` pool and Railcar's wheelhouse, both
  copied in first): resolving, mmdebstrap, dracut, the Railcar venv layer, /usr, disk, reports;
* **warm**: the same spec with one line changed (``version``), into the cache the cold build
  left: the rebuild a developer or CI does after editing a spec;
* **mkosi**: Debian's mkosi 14 building the same suite and package list (read from the spec)
  from the same host apt source, into a ``gpt_ext4`` disk image, with the same ``.deb`` pool in
  its package cache, and an initrd made by the same dracut run Railcar's rootfs makes.

Both tools get every ``.deb`` from the pool (made once, untimed, by one build of each tool) and
download only the apt indexes; a ``.deb`` either still had to download during a timed build is
counted and reported. Nothing here asserts: the figures go to docs/PERFORMANCE.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from railcar.image import BuildResult, build_image, parse_spec
from railcar.image.pathfilter import dpkg_config
from railcar.image.rootfs import (
    _PLATFORM,
    _customize_script,
    data_dir,
    initrd_shell,
    wheelhouse,
)
from railcar.image.spec import ImageSpec

# mkosi 14 (Debian 12): the package cache is ``--cache`` plus this subdirectory
# (mkosi/__init__.py find_cache: f"{distribution}~{release}").
MKOSI_CACHE_SUBDIR = "{distribution}~{release}"
RAILCAR_IMAGE = "railcar_production_image.bin"


# --- pure: what mkosi is asked to do, and what the two builds installed ----------------------


def apt_source_uri(suite: str, sources_list: str = "", deb822: Iterable[str] = ()) -> str | None:
    """The first ``deb`` URI that serves ``suite`` in one-line and deb822 apt sources."""
    for line in sources_list.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        rest = words[1:]
        if rest and rest[0].startswith("["):
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2 and rest[1] == suite:
            return rest[0]
    for text in deb822:
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if (
                "deb" in fields.get("types", "").split()
                and suite in fields.get("suites", "").split()
            ):
                uris = fields.get("uris", "").split()
                if uris:
                    return uris[0]
    return None


def mirror_for(spec: ImageSpec, etc_apt: Path = Path("/etc/apt")) -> str:
    """The apt source mkosi gets: the spec's first mirror, else the host's source for the suite
    (what mmdebstrap uses when the spec names none)."""
    if spec.mirrors:
        words = spec.mirrors[0].split()
        found = apt_source_uri(spec.suite, spec.mirrors[0]) if words[0] == "deb" else words[0]
    else:
        one_line = etc_apt / "sources.list"
        parts = sorted((etc_apt / "sources.list.d").glob("*.list"))
        texts = [p.read_text() for p in ([one_line] if one_line.is_file() else []) + parts]
        deb822 = [p.read_text() for p in sorted((etc_apt / "sources.list.d").glob("*.sources"))]
        found = apt_source_uri(spec.suite, "\n".join(texts), deb822)
    if not found:
        raise SystemExit(f"no apt source for suite {spec.suite!r} in the spec or in {etc_apt}")
    return found


def mkosi_packages(spec: ImageSpec) -> list[str]:
    """The packages Railcar's mmdebstrap installs (``--include``): the spec's and its kernel."""
    return [*spec.packages, spec.kernel_package]


def mkosi_command(
    spec: ImageSpec, *, mirror: str, cache: Path, output: Path, finalize: Path, skeleton: Path
) -> list[str]:
    """mkosi 14's command line for the image compared with ``railcar build``.

    ``gpt_ext4`` without ``--bootable``: mkosi 14 mounts the ESP (vfat) through a loop device
    and runs ``bootctl``/``kernel-install`` in systemd-nspawn, neither of which works on this
    host (no vfat in its kernel, no systemd as PID 1); the initrd, the costly part of a bootable
    build, is made by the finalize script instead. ``--with-docs`` avoids mkosi's nspawn call
    that deletes documentation; the ``skeleton`` tree gives dpkg the spec's path filters
    instead, as Railcar's bootstrap does. mkosi 14 copies it in after debootstrap, so the
    essential packages' documentation stays in its tree."""
    return [
        "mkosi",
        "--distribution=debian",
        f"--release={spec.suite}",
        f"--architecture={_PLATFORM[spec.architecture.value]}",
        f"--mirror={mirror}",
        "--format=gpt_ext4",
        "--with-docs",
        f"--skeleton-tree={skeleton}",
        f"--package={','.join(mkosi_packages(spec))}",
        f"--cache={cache}",
        f"--output={output}",
        f"--finalize-script={finalize}",
        "--manifest-format=json",
        "--force",
        "build",
    ]


def finalize_script(customize: Path) -> str:
    """mkosi's finalize script: Railcar's dracut module and config into the tree, then
    Railcar's own rootfs customize script and dracut run with /proc, /sys and /dev bound in,
    as mmdebstrap's customize hook has them."""
    data = data_dir()
    module = data / "dracut" / "90railcar-usr"
    return f"""#!/bin/sh
set -eu
[ "$1" = final ] || exit 0
root="$BUILDROOT"
mkdir -p "$root/usr/lib/dracut/modules.d/90railcar-usr" "$root/etc/dracut.conf.d"
cp -a "{module}/." "$root/usr/lib/dracut/modules.d/90railcar-usr/"
cp "{data / "dracut.conf"}" "$root/etc/dracut.conf.d/00-railcar.conf"
for d in proc sys dev; do mount --bind "/$d" "$root/$d"; done
trap 'for d in dev sys proc; do umount -l "$root/$d"; done' EXIT
sh "{customize}" "$root"
"""


@dataclass(frozen=True)
class PackageDiff:
    only_mkosi: tuple[str, ...]
    only_railcar: tuple[str, ...]
    other_version: tuple[tuple[str, str, str], ...]  # (package, mkosi's, Railcar's)
    common: int


def package_diff(mkosi_manifest: dict[str, Any], railcar_packages: str) -> PackageDiff:
    """Compare mkosi's JSON manifest with Railcar's ``…_image_packages.txt``."""
    mkosi = {p["name"]: p["version"] for p in mkosi_manifest["packages"]}
    railcar = {}
    for line in railcar_packages.splitlines():
        if line.strip():
            name, version = line.split()[:2]
            railcar[name.split(":", 1)[0]] = version
    both = sorted(set(mkosi) & set(railcar))
    return PackageDiff(
        only_mkosi=tuple(sorted(set(mkosi) - set(railcar))),
        only_railcar=tuple(sorted(set(railcar) - set(mkosi))),
        other_version=tuple((n, mkosi[n], railcar[n]) for n in both if mkosi[n] != railcar[n]),
        common=len(both),
    )


def changed_spec_text(text: str) -> str:
    """The spec with one line changed: the image version, which every output depends on."""
    old = 'version = "1.0.0"'
    if old not in text:
        raise SystemExit(f"the spec has no line {old!r} to change")
    return text.replace(old, 'version = "1.0.1"', 1)


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of no values")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def run_order(run: int) -> list[str]:
    """Which build goes first: alternate, so neither tool always runs on a warmer page cache.
    The warm build follows the cold one (it uses its cache)."""
    return ["cold", "warm", "mkosi"] if run % 2 == 0 else ["mkosi", "cold", "warm"]


# --- IO -----------------------------------------------------------------------------------------


def _debs(directory: Path) -> set[str]:
    return {p.name for p in directory.glob("*.deb")} if directory.is_dir() else set()


def _fill(pool: Path, source: Path) -> int:
    """Copy ``source``'s .debs missing from ``pool``; how many were new."""
    new = 0
    for deb in source.glob("*.deb"):
        if not (pool / deb.name).exists():
            shutil.copy2(deb, pool / deb.name)
            new += 1
    return new


def _seed(pool: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", f"{pool}/.", str(dest)], check=True)


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


class BuildBench:
    """The work directory of one or more runs; ``prime()`` once, then ``run(n)``."""

    def __init__(self, spec_path: Path, work: Path) -> None:
        self.spec_path = spec_path.resolve()
        self.spec = parse_spec(self.spec_path.read_text(), path=self.spec_path)
        self.work = work.resolve()
        self.pool = self.work / "debs-pool"
        self.prime_cache = self.work / "prime" / "railcar-cache"
        self.mirror = mirror_for(self.spec)
        subdir = MKOSI_CACHE_SUBDIR.format(distribution="debian", release=self.spec.suite)
        self.mkosi_subdir = subdir

    @property
    def railcar_debs_dir(self) -> str:
        return f"{self.spec.suite}-{self.spec.architecture.value}"

    def prime(self) -> None:
        """Untimed: one build of each tool fills the .deb pool and Railcar's wheelhouse."""
        self.pool.mkdir(parents=True, exist_ok=True)
        if not (self.work / "prime" / "railcar.done").is_file():
            print("prime: one Railcar build (fills the .deb pool, wheels)…", file=sys.stderr)
            build_image(self.spec, self.work / "prime" / "railcar-out", cache=self.prime_cache)
            shutil.rmtree(self.work / "prime" / "railcar-out")
            (self.work / "prime" / "railcar.done").write_text("")
        # the wheelhouse is keyed by Railcar's sources: a work directory primed before a code
        # change would otherwise leave the cold build to build and download it, timed
        wheelhouse(self.spec, self.prime_cache)
        _fill(self.pool, self.prime_cache / "debs" / self.railcar_debs_dir)
        mkosi_cache = self.work / "prime" / "mkosi-cache"
        if not (self.work / "prime" / "mkosi.done").is_file():
            print("prime: one mkosi build (fills the .deb pool)…", file=sys.stderr)
            run_dir = self.work / "prime" / "mkosi-run"
            self._mkosi(run_dir, mkosi_cache)
            shutil.rmtree(run_dir)
            (self.work / "prime" / "mkosi.done").write_text("")
        _fill(self.pool, mkosi_cache / self.mkosi_subdir)

    def _mkosi(self, run_dir: Path, cache: Path) -> tuple[float, Path]:
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        customize = run_dir / "customize.sh"
        # Railcar's tree edits, then its dracut run (Railcar runs it once mmdebstrap is done)
        customize.write_text(_customize_script() + initrd_shell())
        finalize = run_dir / "finalize.sh"
        finalize.write_text(finalize_script(customize))
        finalize.chmod(0o755)
        skeleton = run_dir / "skeleton"
        filters = skeleton / "etc" / "dpkg" / "dpkg.cfg.d" / "01-railcar-paths"
        filters.parent.mkdir(parents=True)
        filters.write_text(dpkg_config(self.spec.path_exclude, self.spec.path_include))
        output = run_dir / "image.raw"
        cmd = mkosi_command(
            self.spec, mirror=self.mirror, cache=cache, output=output, finalize=finalize,
            skeleton=skeleton,
        )  # fmt: skip
        cwd = run_dir / "cwd"  # empty: mkosi reads mkosi.default and friends from its cwd
        cwd.mkdir()
        os.sync()
        started = time.monotonic()
        with open(run_dir / "mkosi.log", "wb") as log:
            proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, check=False)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"mkosi failed (exit {proc.returncode}); see {run_dir / 'mkosi.log'}")
        return seconds, output

    def _railcar(self, spec: ImageSpec, out: Path, cache: Path) -> tuple[float, BuildResult]:
        os.sync()
        started = time.monotonic()
        result = build_image(spec, out, cache=cache)
        return time.monotonic() - started, result

    def run(self, number: int) -> dict[str, Any]:
        """One cold build, one warm rebuild and one mkosi build; their figures."""
        home = self.work / "runs" / str(number)
        shutil.rmtree(home, ignore_errors=True)
        cache = home / "railcar-cache"
        _seed(self.pool, cache / "debs" / self.railcar_debs_dir)
        subprocess.run(
            ["cp", "-a", str(self.prime_cache / "wheels"), str(cache / "wheels")], check=True
        )
        mkosi_cache = home / "mkosi-cache"
        _seed(self.pool, mkosi_cache / self.mkosi_subdir)
        pool_before = _debs(self.pool)
        warm_text = changed_spec_text(self.spec_path.read_text())
        warm_spec = parse_spec(warm_text, path=self.spec_path)
        figures: dict[str, Any] = {"order": run_order(number), "load_before": os.getloadavg()}
        results: dict[str, BuildResult] = {}
        for step in run_order(number):
            print(f"run {number + 1}: {step}…", file=sys.stderr)
            if step == "mkosi":
                seconds, image = self._mkosi(home / "mkosi", mkosi_cache)
                figures["mkosi_image_allocated_bytes"] = _allocated(image)
                manifest = json.loads(image.with_name(image.name + ".manifest").read_text())
            else:
                spec = self.spec if step == "cold" else warm_spec
                seconds, results[step] = self._railcar(spec, home / step, cache)
                figures[f"{step}_steps"] = results[step].seconds
                figures[f"{step}_rootfs_cached"] = results[step].rootfs_cached
            figures[f"{step}_seconds"] = round(seconds, 2)
            print(f"run {number + 1}: {step} {seconds:.1f} s", file=sys.stderr)
        figures["load_after"] = os.getloadavg()
        cold_out = Path(results["cold"].output)
        figures["railcar_image_allocated_bytes"] = _allocated(cold_out / RAILCAR_IMAGE)
        packages = (cold_out / "railcar_production_image_packages.txt").read_text()
        diff = package_diff(manifest, packages)
        figures["packages"] = {
            "common": diff.common,
            "only_mkosi": list(diff.only_mkosi),
            "only_railcar": list(diff.only_railcar),
            "other_version": [list(v) for v in diff.other_version],
        }
        railcar_debs = cache / "debs" / self.railcar_debs_dir
        figures["downloaded_debs"] = {
            "railcar": sorted(_debs(railcar_debs) - pool_before),
            "mkosi": sorted(_debs(mkosi_cache / self.mkosi_subdir) - pool_before),
        }
        _fill(self.pool, railcar_debs)
        _fill(self.pool, mkosi_cache / self.mkosi_subdir)
        shutil.rmtree(home)  # two sparse multi-GB disks per run
        return figures


# issue 5's two build ratios: name -> (numerator, denominator, goal)
_RATIOS = {"warm/cold": ("warm", "cold", 0.25), "railcar cold/mkosi": ("cold", "mkosi", 1.0)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs and the two ratios of issue 5 (warm/cold, cold/mkosi), by medians (the
    goals' figures) and per run.

    A run's three builds follow each other within ~2 minutes, so its own ratios see less of the
    machine's drift in speed than the medians, taken over the whole benchmark, do.
    """
    med = {k: median(r[f"{k}_seconds"] for r in runs) for k in ("cold", "warm", "mkosi")}
    per_run = {
        name: [round(r[f"{a}_seconds"] / r[f"{b}_seconds"], 3) for r in runs]
        for name, (a, b, _) in _RATIOS.items()
    }
    return {
        "median_seconds": {k: round(v, 2) for k, v in med.items()},
        "ratios": {name: round(med[a] / med[b], 3) for name, (a, b, _) in _RATIOS.items()},
        "run_ratios": per_run,
        "median_run_ratios": {k: round(median(v), 3) for k, v in per_run.items()},
        "goals": {name: goal for name, (_, _, goal) in _RATIOS.items()},
    }
