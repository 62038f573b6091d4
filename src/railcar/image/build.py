"""``railcar build``: from a spec to a directory of release artifacts.

Steps: resolve packages and get the cached root filesystem (:mod:`.rootfs`), stage a hard-linked
copy, install Railcar and the spec's content (:mod:`.content`), make /usr's erofs + verity
partition image (:mod:`.usr`), the slot's unified kernel and the ESP (:mod:`.esp`), ROOT and OEM
(ext4), and the disk (:mod:`.disk`).

Outputs (spec §5.1 names with the image's name as prefix)::

    railcar_production_image.bin          the raw disk
    railcar_production_update.bin         the USR partition image (what a payload writes)
    railcar_production_image.vmlinuz      the slot's kernel (UKI with the /usr root hash)
    railcar_production_image_packages.txt package and version, one a line
    railcar_production_image_contents.txt every path in /usr
    railcar_production_image_sbom.json    SPDX 2.3 JSON: every Debian package, with purls
    railcar_production_update.gz          signed CrAU payload (with --payload-key)
    railcar_production_image.qcow2        the disk as qcow2 (with --format qcow2)
    version.txt                           RAILCAR_VERSION=… and friends
    build.json                            what --json prints
    DIGESTS                               the spec's hashes (``image.digests``) of every file above

Everything is written into ``OUTPUT.partial`` and renamed to ``OUTPUT`` last, so a failed build
never leaves a directory that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from railcar.image.content import customize, os_release, root_tree, trust_payload_keys
from railcar.image.disk import copy_in, make_ext4, new_disk, sparse_digest
from railcar.image.esp import build_uki, kernel_cmdline, make_esp
from railcar.image.layout import MIB, DiskLayout, disk_layout, verity_geometry
from railcar.image.rootfs import (
    Rootfs,
    install_railcar,
    replace_file,
    rootfs_in_progress,
    stage_copy,
)
from railcar.image.sbom import spdx_document
from railcar.image.spec import ImageSpec
from railcar.image.usr import UsrImage, make_usr_image
from railcar.payload.generate import generate_payload
from railcar.payload.signing import PayloadSigner
from railcar.runner import run

T = TypeVar("T")


def default_cache() -> Path:
    """``$RAILCAR_CACHE``, else ``~/.cache/railcar``: kept between builds and CI runs."""
    env = os.environ.get("RAILCAR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "railcar"


@dataclass
class BuildResult:
    name: str
    version: str
    output: str
    root_hash: str
    rootfs_key: str
    rootfs_cached: bool
    kernel_version: str
    usr_filesystem_bytes: int
    verity_hash_offset: int
    files: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Report = Callable[[str], None]


class _Steps:
    def __init__(self, report: Report, total: int) -> None:
        self.report, self.total, self.n = report, total, 0
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, key: str, label: str) -> Iterator[None]:
        self.n += 1
        self.report(f"[{self.n}/{self.total}] {label}…")
        started = time.monotonic()
        yield
        self.seconds[key] = round(time.monotonic() - started, 2)
        self.report(f"[{self.n}/{self.total}] {label}: {self.seconds[key]:.1f} s")


# Worker threads doing what no later step waits for soon (hashes, reports, ROOT and OEM) yield
# the CPU to the chain of steps: in a cold build that chain is dracut's run beside /usr, and the
# machine has fewer cores than busy threads then (ADR 0033).
BACKGROUND_NICE = 10


def _background_thread() -> None:
    """Thread pool initializer: lower this thread's priority and that of the processes it starts
    (on Linux, nice is per thread, and a child process inherits its thread's)."""
    thread = threading.get_native_id()
    with suppress(OSError):
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, nice + BACKGROUND_NICE))


# Order in which a file's hashes are started: the slower one first (SHA-512 has no hardware
# instructions on x86; SHA-256 does, SHA-NI).
_SLOWEST_FIRST = ("sha512", "sha256")


class _Digests:
    """DIGESTS' hashes, computed in the background as each output file is finished.

    hashlib releases the GIL while it hashes, so the hashes (gigabytes, most of them the disk
    image's holes) run on all cores at once, and the large files' start while later steps run:
    the /usr image's during the kernel, ESP and disk steps, the disk's during payload, qcow2 and
    reports. Files are handed over only when final; :meth:`text` adds whatever was not.

    The disk's hashes are the build's last step, so they are ``urgent``: they start at once on
    threads of their own at the build's priority, instead of queueing behind the /usr image's
    at the background's (ADR 0035).
    """

    def __init__(self, algorithms: Sequence[str]) -> None:
        self.algorithms = tuple(algorithms)
        workers = os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(workers, initializer=_background_thread)
        self._urgent = ThreadPoolExecutor(len(self.algorithms), "railcar-digest")
        self._sums: dict[tuple[str, str], Future[str]] = {}

    def add(self, path: Path, *, urgent: bool = False) -> None:
        pool = self._urgent if urgent else self._pool
        for algo in sorted(self.algorithms, key=_SLOWEST_FIRST.index):
            self._sums[algo, path.name] = pool.submit(sparse_digest, path, algo)

    def text(self, directory: Path) -> str:
        files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != "DIGESTS")
        for path in sorted(files, key=lambda p: p.stat().st_size, reverse=True):
            if (self.algorithms[0], path.name) not in self._sums:
                self.add(path)
        lines = []
        for algo in self.algorithms:
            lines.append(f"# {algo.upper()} HASH")
            lines += [f"{self._sums[algo, path.name].result()}  {path.name}" for path in files]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        for pool in (self._urgent, self._pool):
            pool.shutdown(wait=True, cancel_futures=True)


def _contents(usr: Path) -> str:
    """Every path under ``usr``, in path order (by component), a directory with a trailing
    slash (a symlink to one without). One ``os.walk``: a tenth of pathlib's CPU for 12,800
    entries, in a phase of the build that is CPU-bound."""
    entries: list[tuple[tuple[str, ...], bool]] = []
    for directory, dirs, files in os.walk(usr):  # symlinks to directories are not followed
        rel = os.path.relpath(directory, usr)
        parts = () if rel == "." else tuple(rel.split(os.sep))
        entries += [((*parts, d), not os.path.islink(os.path.join(directory, d))) for d in dirs]
        entries += [((*parts, f), False) for f in files]
    entries.sort()
    return "".join(f"/usr/{'/'.join(p)}{'/' if real_dir else ''}\n" for p, real_dir in entries)


def _package_reports(spec: ImageSpec, rootfs: Rootfs, usr_tree: Path, out: Path) -> list[Path]:
    """The reports that need only the staged tree: made while /usr's image is (ADR 0028)."""
    prefix = f"{spec.name}_production"
    files = {
        f"{prefix}_image_packages.txt": "".join(
            f"{name} {version}\n" for name, version in rootfs.packages
        ),
        f"{prefix}_image_contents.txt": _contents(usr_tree),
        f"{prefix}_image_sbom.json": json.dumps(
            spdx_document(spec, rootfs.packages), indent=1, sort_keys=True
        )
        + "\n",
    }
    for name, text in files.items():
        (out / name).write_text(text)
    return [out / name for name in files]


def _version_txt(spec: ImageSpec, rootfs: Rootfs, usr: UsrImage, out: Path) -> None:
    (out / "version.txt").write_text(
        f"RAILCAR_NAME={spec.name}\nRAILCAR_VERSION={spec.version}\n"
        f"RAILCAR_VERSION_ID={spec.version}\nRAILCAR_BUILD_ID={spec.source_date_epoch}\n"
        f"RAILCAR_BOARD={spec.board}\nRAILCAR_SUITE={spec.suite}\n"
        f"RAILCAR_KERNEL={rootfs.kernel_version}\nRAILCAR_USR_ROOT_HASH={usr.root_hash}\n"
    )


def _extras(
    steps: _Steps,
    digests: _Digests,
    out: Path,
    prefix: str,
    usr: Path,
    kernel: Path,
    signers: Sequence[PayloadSigner],
    *,
    min_saving: int,
    qcow2: bool,
) -> None:
    if signers:
        with steps.step("payload", "signed update payload"):
            generate_payload(usr, kernel, out / f"{prefix}_update.gz", signers,
                             min_saving=min_saving)  # fmt: skip
        digests.add(out / f"{prefix}_update.gz")
    if qcow2:
        with steps.step("qcow2", "qcow2 disk image"):
            run([
                "qemu-img", "convert", "-O", "qcow2", "-c",
                out / f"{prefix}_image.bin", out / f"{prefix}_image.qcow2",
            ])  # fmt: skip
        digests.add(out / f"{prefix}_image.qcow2")


def build_image(
    spec: ImageSpec,
    output: Path,
    *,
    cache: Path | None = None,
    report: Report = lambda _: None,
    payload_signers: Sequence[PayloadSigner] = (),
    qcow2: bool = False,
) -> BuildResult:
    """Build ``spec`` into ``output``; with signers also the signed update payload.

    The image trusts the public keys of ``payload_signers`` for updates
    (``/usr/share/railcar/payload-key.pub.pem``), so its own payloads verify on it.
    """
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    work = partial / ".work"
    work.mkdir(parents=True)
    steps = _Steps(report, 8 + bool(payload_signers) + qcow2)
    digests = _Digests(spec.digests)
    cleanup = threading.Thread(target=shutil.rmtree, args=(work,), name="railcar-cleanup")
    try:
        # a new rootfs's dracut run and its entry in the cache, until the build is done with it
        with ExitStack() as hold:
            result = _build(spec, output, partial, cache or default_cache(), steps, digests,
                            payload_signers, hold, qcow2=qcow2)  # fmt: skip
        result.seconds = steps.seconds
        # The stage's hard links and the partition images go while the last hashes run.
        cleanup.start()
        (partial / "build.json").write_text(json.dumps(result.to_json(), indent=2, sort_keys=True))
        started = time.monotonic()
        (partial / "DIGESTS").write_text(digests.text(partial))
    finally:
        digests.close()
        if cleanup.is_alive():
            cleanup.join()
    tail = time.monotonic() - started
    report(f"DIGESTS ({', '.join(spec.digests)}): {tail:.1f} s after the last step")
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)
    return result


def _build(
    spec: ImageSpec,
    output: Path,
    partial: Path,
    cache: Path,
    steps: _Steps,
    digests: _Digests,
    payload_signers: Sequence[PayloadSigner],
    hold: ExitStack,
    *,
    qcow2: bool,
) -> BuildResult:
    work, report = partial / ".work", steps.report
    prefix = f"{spec.name}_production"
    with steps.step("rootfs", "root filesystem (mmdebstrap, cached)"):
        (cache / "logs").mkdir(parents=True, exist_ok=True)
        log = cache / "logs" / "mmdebstrap.log"
        # A new tree comes before its initrd: dracut runs while the tree is staged and /usr is
        # made; the kernel step waits for it (ADR 0033).
        unfinished = hold.enter_context(rootfs_in_progress(spec, cache, log=log))
    rootfs = unfinished.rootfs
    resolved = "unchanged archive, earlier resolution" if rootfs.resolution_reused else "resolved"
    built = "built, initrd being made" if unfinished.initrd_pending else "built"
    report(f"    rootfs {rootfs.key} {'from cache' if rootfs.cached else built} ({resolved})")
    with steps.step("stage", "staging Railcar and the spec's content"):
        stage = stage_copy(rootfs.tree, work / "stage")
        install_railcar(spec, stage, cache)
        customize(spec, stage)
        trust_payload_keys(stage, payload_signers)
    geometry = verity_geometry(spec.partitions.usr * MIB)
    layout = disk_layout(spec)
    disk = partial / f"{prefix}_image.bin"
    # Work that needs only the stage runs beside mkfs.erofs (the main thread only waits for it),
    # at a lower priority (in a cold build, dracut runs too): the package, contents and SBOM
    # reports, the disk with its partition table, ROOT and OEM in it. The USR-A copy runs beside
    # the kernel step at the build's own priority. The disk is complete, and its hashes start,
    # right after the ESP (ADRs 0028, 0033, 0035).
    side_pool = ThreadPoolExecutor(1, "railcar-side", initializer=_background_thread)
    with side_pool as side, ThreadPoolExecutor(1, "railcar-usr-a") as urgent:
        listed = side.submit(_package_reports, spec, rootfs, stage / "usr", partial)
        rest = side.submit(_disk_with_root_and_oem, spec, stage, work, layout, disk)
        with steps.step("usr", "/usr: erofs + dm-verity"):
            usr = make_usr_image(spec, stage / "usr", partial / f"{prefix}_update.bin", geometry)
        digests.add(usr.path)
        report(f"    root hash {usr.root_hash}")
        # The disk step waits for this copy, so it runs at the build's priority (ADR 0035).
        usr_in = urgent.submit(copy_in, layout, "USR-A", usr.path, disk)
        with steps.step("initrd", "initrd (dracut)"):
            rootfs = unfinished.initrd_ready()  # a new tree enters the cache after the build
            initrd = Path("boot") / f"initrd.img-{rootfs.kernel_version}"
            if not (stage / initrd).exists():  # made after the stage was
                run(["cp", "-a", "--link", rootfs.tree / initrd, stage / initrd])
        with steps.step("kernel", "unified kernel image"):
            cmdline = kernel_cmdline(spec, usr.root_hash, geometry)
            uki = build_uki(
                stage, rootfs.kernel_version, cmdline, os_release(spec),
                partial / f"{prefix}_image.vmlinuz", timestamp=spec.source_date_epoch,
            )  # fmt: skip
        with steps.step("esp", "EFI system partition (systemd-boot)"):
            esp = make_esp(
                spec, stage, uki, work / "esp.img",
                size_bytes=layout.by_label("EFI-SYSTEM").size_bytes,
                partition_a=layout.by_label("USR-A").number,
            )  # fmt: skip
        with steps.step("disk", "disk image (GPT: ESP, USR-A, OEM, ROOT)"):
            rest.result()
            usr_in.result()
            copy_in(layout, "EFI-SYSTEM", esp, disk)
        digests.add(disk, urgent=True)
        _extras(steps, digests, partial, prefix, usr.path, uki, payload_signers,
                min_saving=spec.payload_min_saving, qcow2=qcow2)  # fmt: skip
        with steps.step("reports", "version, packages, contents"):
            for path in listed.result():
                digests.add(path)
            _version_txt(spec, rootfs, usr, partial)
    result = BuildResult(
        name=spec.name,
        version=spec.version,
        output=str(output),
        root_hash=usr.root_hash,
        rootfs_key=rootfs.key,
        rootfs_cached=rootfs.cached,
        kernel_version=rootfs.kernel_version,
        usr_filesystem_bytes=usr.filesystem_bytes,
        verity_hash_offset=geometry.hash_offset,
        files={p.name: str(output / p.name) for p in sorted(partial.iterdir()) if p.is_file()},
    )
    result.files["build.json"] = str(output / "build.json")
    result.files["DIGESTS"] = str(output / "DIGESTS")
    return result


def _disk_with_root_and_oem(
    spec: ImageSpec, stage: Path, work: Path, layout: DiskLayout, disk: Path
) -> None:
    """The disk with its partition table, and ROOT and OEM (ext4) copied in."""
    new_disk(layout, disk)
    root = make_ext4(
        spec, root_tree(stage, work / "root"), work / "root.img", label="ROOT",
        size_bytes=layout.by_label("ROOT").size_bytes,
    )  # fmt: skip
    copy_in(layout, "ROOT", root, disk)
    oem_dir = work / "oem"
    oem_dir.mkdir()
    replace_file(oem_dir / "oem-release", f"ID={spec.oem_id}\nNAME={spec.oem_id}\n".encode())
    oem = make_ext4(
        spec, oem_dir, work / "oem.img", label="OEM",
        size_bytes=layout.by_label("OEM").size_bytes,
    )  # fmt: skip
    copy_in(layout, "OEM", oem, disk)
