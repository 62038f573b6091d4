"""The images the update tests boot and offer: the example OS at several versions.

Every variant is the example spec (``examples/railcar.toml``) at another version, trimmed for
speed under TCG (:func:`variant_spec`: no container runtime — the boot tests run containers on
the full example — and a 512 MiB USR partition), so all share one cached root filesystem and
a build costs the /usr image, the disk and the payload:

===========  =====================================================================
``1.0.0``    the example as it is: what nodes boot
``2.0.0``    a visible change: new os-release VERSION and a new file in /usr
``3.0.0``    a /usr that fails the health gate: ``railcar-canary.service`` fails
``3.0.1``    a /usr that cannot boot: one byte of its erofs data flipped after the
             verity tree was made, so the kernel refuses the slot
===========  =====================================================================

Each variant's payload is signed with the suite's key, which every variant trusts. Builds are
cached under ``<cache>/vm-images/<key>`` (key: the variant's spec and files, and Railcar's
sources but ``railcar.vm``, which nodes never run — so editing a VM test does not rebuild
the images), so a second run of the suite builds nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from railcar.image import BuildResult, build_image, parse_spec
from railcar.image.build import default_cache
from railcar.image.rootfs import cache_lock, project_root, railcar_digest
from railcar.image.spec import ExtraFile, ImageSpec
from railcar.payload.generate import generate_payload
from railcar.payload.signing import FileKeySigner
from railcar.release.keys import generate_key

CANARY_UNIT = "railcar-canary.service"
# Where erofs keeps its superblock (EROFS_SUPER_OFFSET, linux fs/erofs/erofs_fs.h): a byte
# there is read when /usr is mounted, so flipping it is found on every boot.
EROFS_SUPERBLOCK = 1024
UPDATE_GZ = "railcar_production_update.gz"
# What the update tests leave out of the example: the container runtime is over a third of
# the installed packages (250 of 641 MB) and two daemons started on every boot, and the update
# path never touches it (the boot tests in tests/vm/test_boot.py run containers on the full
# example image). A smaller /usr is a smaller payload to download, decompress and hash in the
# guest (ADR 0017).
CONTAINER_PACKAGES = ("containerd", "runc", "docker.io", "apparmor")
CONTAINER_UNITS = ("containerd.service", "docker.service", "docker.socket")
USR_MIB = 512
# Payload chunks are bzip2'd only where that halves them (zeros, metadata): the lz4 data travels
# raw. bzip2 was about 40 of an apply's 70 s under TCG emulation; the payload grows by about a
# third (ADR 0021).
PAYLOAD_MIN_SAVING = 50

_V2_FILE = "/usr/share/railcar/update-test"
_CANARY = """[Unit]
Description=Railcar test: a unit the health gate requires, failing in this /usr
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/false
[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class Variant:
    version: str
    files: tuple[tuple[str, str], ...] = ()  # (target in the image, content)
    units: tuple[str, ...] = ()
    corrupt_usr: bool = False


VARIANTS = {
    v.version: v
    for v in (
        Variant("1.0.0"),
        Variant("2.0.0", files=((_V2_FILE, "version 2 was here\n"),)),
        Variant(
            "3.0.0",
            files=((f"/usr/lib/systemd/system/{CANARY_UNIT}", _CANARY),),
            units=(CANARY_UNIT,),
        ),
        Variant("3.0.1", corrupt_usr=True),
    )
}


@dataclass(frozen=True)
class SuiteImage:
    version: str
    build: BuildResult
    payload: Path  # signed with the suite key

    @property
    def disk(self) -> Path:
        return Path(self.build.output) / "railcar_production_image.bin"


def example_spec() -> Path:
    return project_root() / "examples" / "railcar.toml"


def variant_spec(variant: Variant, spec_dir: Path) -> ImageSpec:
    """The example spec as ``variant``: its version, files and units, trimmed as the module
    docstring says. The variant's files are written under ``spec_dir``."""
    example = example_spec()
    spec = parse_spec(example.read_text(), path=example)
    files = list(spec.files)
    for i, (target, content) in enumerate(variant.files):
        source = spec_dir / f"extra-{i}"
        source.write_text(content)
        files.append(ExtraFile(PurePosixPath(target), source))
    return replace(
        spec,
        version=variant.version,
        packages=tuple(p for p in spec.packages if p not in CONTAINER_PACKAGES),
        enable_units=variant.units
        + tuple(u for u in spec.enable_units if u not in CONTAINER_UNITS),
        disable_units=tuple(u for u in spec.disable_units if u not in CONTAINER_UNITS),
        files=tuple(files),
        partitions=replace(spec.partitions, usr=USR_MIB),
        payload_min_saving=PAYLOAD_MIN_SAVING,
    )


def suite_key(cache: Path) -> Path:
    """The private key the suite signs payloads with (made once per cache)."""
    keys = cache / "vm-images" / "keys"
    with cache_lock(cache, "vm-suite-key"):
        if not (keys / "payload-key.pem").is_file():
            generate_key(keys)
    return keys / "payload-key.pem"


def suite_image(version: str, cache: Path | None = None) -> SuiteImage:
    """The variant ``version`` built (or taken from the cache) with its signed payload."""
    cache = cache or default_cache()
    variant = VARIANTS[version]
    key = suite_key(cache)
    material = json.dumps(
        {"variant": [variant.version, variant.files, variant.units, variant.corrupt_usr],
         "example": example_spec().read_text(), "railcar": railcar_digest(skip=("vm",)),
         "trim": [CONTAINER_PACKAGES, CONTAINER_UNITS, USR_MIB],
         "key": hashlib.sha256(key.read_bytes()).hexdigest()},
        sort_keys=True,
    )  # fmt: skip
    digest = hashlib.sha256(material.encode()).hexdigest()[:16]
    home = cache / "vm-images" / f"{version}-{digest}"
    with cache_lock(cache, f"vm-image-{version}"):
        if not (home / "done").is_file():
            _build(variant, home, cache, key)
        build = BuildResult(**json.loads((home / "image" / "build.json").read_text()))
    return SuiteImage(version, build, home / UPDATE_GZ)


def _build(variant: Variant, home: Path, cache: Path, key: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)
    spec_dir = home / "spec"
    spec_dir.mkdir(parents=True)
    spec = variant_spec(variant, spec_dir)
    signer = FileKeySigner(key)
    result = build_image(spec, home / "image", cache=cache, payload_signers=[signer])
    out = Path(result.output)
    if variant.corrupt_usr:
        usr = out / "railcar_production_update.bin"
        with open(usr, "r+b") as f:
            f.seek(EROFS_SUPERBLOCK + 8)
            byte = f.read(1)
            f.seek(EROFS_SUPERBLOCK + 8)
            f.write(bytes([byte[0] ^ 0xFF]))
        generate_payload(usr, out / "railcar_production_image.vmlinuz", home / UPDATE_GZ,
                         [signer], min_saving=spec.payload_min_saving)  # fmt: skip
    else:
        shutil.copyfile(out / UPDATE_GZ, home / UPDATE_GZ)
    (home / "done").write_text("")
    with cache_lock(cache, "vm-images-prune"):  # one pruner at a time across workers
        _prune(home.parent)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _prune(directory: Path, keep: int = 2) -> None:
    """Keep the newest builds per version (a run still using the previous one keeps it).

    Builders of other versions run meanwhile (each holds only its version's lock), so an entry
    listed here may be gone by the time it is looked at: it is skipped, not an error."""
    by_version: dict[str, list[tuple[float, Path]]] = {}
    for entry in directory.iterdir():
        if entry.is_dir() and entry.name != "keys" and "-" in entry.name:
            mtime = _mtime(entry)
            if mtime is not None:
                by_version.setdefault(entry.name.split("-", 1)[0], []).append((mtime, entry))
    for entries in by_version.values():
        entries.sort(reverse=True)
        for _, old in entries[keep:]:
            shutil.rmtree(old, ignore_errors=True)
