"""The Debian root filesystem, built by mmdebstrap and kept in a content-addressed cache.

The cache key (:func:`rootfs_key`) covers what the tree is made of: the spec's distribution and
package settings, the *resolved* package versions (:mod:`.resolve`: ``mmdebstrap --simulate``,
reused while the archive's ``InRelease`` files are unchanged),
the Railcar wheel and its locked dependencies, and the dracut module shipped with the builder.
A rebuild after a change elsewhere in the spec (version, extra files, units, cmdline, sizes)
reuses the tree; a new package version on the mirror makes a new tree.

The cached tree is never changed after it is complete: builds take a hard-linked copy
(:func:`stage_copy`) and must replace files (unlink, then write), never write into them.

What the cached tree holds beyond the packages: the dracut module that opens /usr with dm-verity,
and an initrd rebuilt with it. Railcar itself goes into ``/usr/lib/railcar/venv`` as a separate
cached layer (:func:`install_railcar`: the image's own python3, wheels fetched on the build host
once), so a change to Railcar's code does not rebuild the tree. Downloaded ``.deb`` files are kept
under ``debs/`` so a new package version downloads only that package.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from shlex import quote as q

from railcar.image.errors import RootfsError
from railcar.image.pathfilter import dpkg_config, drop_filtered
from railcar.image.resolve import fresh_resolution, kept_resolution, mmdebstrap_base
from railcar.image.spec import ImageSpec
from railcar.runner import run

RAILCAR_VENV = "/usr/lib/railcar/venv"
DRACUT_MODULE = "/usr/lib/dracut/modules.d/90railcar-usr"
PATH_FILTERS = "50railcar-paths"  # in /etc/dpkg/dpkg.cfg.d: the spec's path filters
_PLATFORM = {"amd64": "x86_64", "arm64": "aarch64"}
# Debian 12's glibc is 2.36: any manylinux wheel up to that runs in the image.
_MANYLINUX = [
    *(f"manylinux_2_{minor}" for minor in range(36, 16, -1)),
    "manylinux2014",
    "manylinux2010",
    "manylinux1",
]
# pip of the build host's Debian python3 (the same 3.11 the image runs), not a venv's.
_HOST_PYTHON = "/usr/bin/python3"


# Cache entries kept per kind (rootfs trees, venv layers, wheelhouses): the newest few, so a
# long-lived CI cache does not grow with every package or code change.
KEEP_CACHED = 3  # the example's tree, the update tests' trimmed one (railcar.vm.images), one spare


def prune_cache(directory: Path, keep: int = KEEP_CACHED) -> None:
    """Remove all but the ``keep`` most recently made complete entries of ``directory``."""
    entries = [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")]
    entries = [p for p in entries if not p.name.endswith(".partial")]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def data_dir() -> Path:
    """The builder's own files (dracut module, units), shipped as package data."""
    return Path(str(resources.files("railcar.image") / "data"))


def project_root() -> Path:
    """The source tree Railcar is installed from (has pyproject.toml and uv.lock)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "uv.lock").is_file():
            return parent
    raise RootfsError(
        "cannot find Railcar's source tree (pyproject.toml, uv.lock) to install into the image",
        hint="run railcar build from a checkout of the repository",
    )


def _tree_digest(root: Path, *, suffixes: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts or (suffixes and path.suffix not in suffixes):
            continue
        if path.relative_to(root).parts[0] in skip:
            continue
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def railcar_digest(*, skip: tuple[str, ...] = ()) -> str:
    """What the installed Railcar is made of: its sources and its lock file (without the
    top-level subpackages in ``skip``)."""
    root = project_root()
    h = hashlib.sha256()
    for name in ("pyproject.toml", "uv.lock"):
        h.update(hashlib.sha256((root / name).read_bytes()).digest())
    h.update(_tree_digest(root / "src" / "railcar", skip=skip).encode())
    return h.hexdigest()


def rootfs_key(spec: ImageSpec, packages: list[tuple[str, str]]) -> str:
    material = {
        "spec": spec.rootfs_fields(),
        "packages": packages,
        "paths": {"exclude": list(spec.path_exclude), "include": list(spec.path_include)},
        "dracut": _tree_digest(data_dir() / "dracut"),
        "dracut.conf": hashlib.sha256((data_dir() / "dracut.conf").read_bytes()).hexdigest(),
        # 2: the customize script adds Ignition's dracut module; 3: dracut runs once (INITRD=No
        # for the kernel hook), dpkg unpacks with force-unsafe-io; 4: merged /usr by mmdebstrap's
        # hooks instead of usrmerge; 5: dracut after mmdebstrap, in a mount namespace of its own
        "format": 5,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Rootfs:
    """A complete, cached tree and what was installed into it."""

    key: str
    tree: Path
    packages: tuple[tuple[str, str], ...]
    kernel_version: str
    cached: bool
    resolution_reused: bool = False  # the package versions came from an earlier resolution


def uv_command() -> str:
    """uv, which builds Railcar's wheel: the one running us (``uv run`` sets ``$UV``), else the
    one on PATH, else where scripts/setup installs it (``$RAILCAR_TOOLS/bin/uv``)."""
    tools = Path(os.environ.get("RAILCAR_TOOLS", "/opt/railcar-tools"))
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(tools / "bin" / "uv")):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return candidate
    raise RootfsError(
        "uv is not installed: it builds the Railcar wheel that goes into the image",
        hint="run scripts/setup, or put uv on PATH or in $UV",
    )


def wheelhouse(spec: ImageSpec, cache: Path) -> Path:
    """Railcar's wheel and its locked dependencies, built and downloaded once per lock."""
    root = project_root()
    house = cache / "wheels" / f"{railcar_digest()[:24]}-{spec.architecture.value}"
    if (house / ".complete").is_file():
        return house
    shutil.rmtree(house, ignore_errors=True)
    house.mkdir(parents=True)
    uv = uv_command()
    run([uv, "build", "--wheel", "--out-dir", house, root], cwd=root)
    requirements = house / "requirements.txt"
    requirements.write_text(
        run(
            [
                uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes",
                "--project", root,
            ]
        )
    )  # fmt: skip
    machine = _PLATFORM[spec.architecture.value]
    platforms = [arg for tag in _MANYLINUX for arg in ("--platform", f"{tag}_{machine}")]
    run(
        [
            _HOST_PYTHON, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11",
            "--abi", "cp311", "--abi", "abi3", "--abi", "none", *platforms,
            "--dest", house, "--requirement", requirements,
        ]
    )  # fmt: skip
    (house / ".complete").write_text("")
    prune_cache(house.parent)
    return house


def _customize_script() -> str:
    """Shell run by mmdebstrap's customize hook: the tree's last edits before it is cleaned up.

    The initrd is not made here but once mmdebstrap has ended (:func:`_start_initrd`), so that
    the build can stage the finished tree and make /usr while dracut runs (ADR 0033)."""
    return """set -eu
root="$1"
kver=$(ls "$root/lib/modules" | head -1)
# Ignition in the initrd whenever the package set has it: named, so a missing dependency
# (dracut-network, curl) fails the build instead of leaving Ignition out silently.
if [ -d "$root/usr/lib/dracut/modules.d/30ignition" ]; then
    echo 'add_dracutmodules+=" ignition "' > "$root/etc/dracut.conf.d/10-railcar-ignition.conf"
fi
# The links the kernel's postinst makes when an initrd exists (INITRD=No skipped that initrd).
ln -sfn "boot/initrd.img-$kver" "$root/initrd.img"
ln -sfn "boot/initrd.img-$kver" "$root/initrd.img.old"
# --dpkgopt=force-unsafe-io is for the bootstrap only; mmdebstrap leaves it in dpkg's config.
rm -f "$root/etc/dpkg/dpkg.cfg.d/99mmdebstrap"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
"""


# The initrd: the tree's own dracut run in the tree ($root) for its kernel ($kver), writing
# $initrd, with /proc and /sys mounted in the tree (dracut reads both; /dev/fd is /proc/self/fd).
_DRACUT = 'chroot "$root" dracut --force --quiet --kver "$kver" "$initrd"\n'


def initrd_shell() -> str:
    """Shell for a hook that has the tree at ``$1`` with /proc, /sys and /dev mounted (as
    mmdebstrap's customize hooks do): the dracut run Railcar's bootstrap makes."""
    kver = 'kver=$(ls "$root/lib/modules" | head -1)\n'
    return 'root="$1"\n' + kver + 'initrd="/boot/initrd.img-$kver"\n' + _DRACUT


# Railcar's own run, in a mount namespace of its own, while the build copies the tree (ADR 0033):
# dracut's scratch directory and output are on a tmpfs over the tree's /var/tmp, which leaves
# the tree's /var/tmp untouched, and the initrd enters /boot by a rename, whole.
_INITRD_BESIDE = (
    'set -eu\nroot="$1"\nkver="$2"\ninitrd=/var/tmp/initrd.img\n'
    'mount -t proc proc "$root/proc"\nmount -t sysfs sysfs "$root/sys"\n'
    'mount -t tmpfs -o mode=1777 tmpfs "$root/var/tmp"\n'
    + _DRACUT
    + 'cp "$root$initrd" "$root/boot/.initrd.img-$kver.new"\n'
    'mv "$root/boot/.initrd.img-$kver.new" "$root/boot/initrd.img-$kver"\n'
)


def _start_initrd(
    tree: Path, kernel: str, spec: ImageSpec, log: Path | None
) -> subprocess.Popen[bytes]:
    """dracut in ``tree``, started in a mount namespace of its own: its mounts in the tree exist
    only for it, and go with the namespace when dracut ends, however it ends."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SOURCE_DATE_EPOCH": str(spec.source_date_epoch),
    }
    with open(log or os.devnull, "ab") as out:
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _INITRD_BESIDE,
             "sh", str(tree), kernel],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip


def _link_or_copy(source: str, dest: str) -> str:
    """Shell: hard-link the files of ``source`` into ``dest`` (existing ones kept), or copy them
    when the two are on different filesystems."""
    return f"cp -a -l -n {source} {dest}/ 2>/dev/null || cp -a -n {source} {dest}/"


@contextmanager
def cache_lock(cache: Path, name: str) -> Iterator[None]:
    """Serialise builders sharing ``cache`` (parallel test workers, concurrent CI jobs)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_rootfs(spec: ImageSpec, cache: Path, *, log: Path | None = None) -> Rootfs:
    """The cached tree for ``spec``, complete with its initrd (built when the cache has none)."""
    with rootfs_in_progress(spec, cache, log=log) as unfinished:
        return unfinished.finished()


@contextmanager
def rootfs_in_progress(
    spec: ImageSpec, cache: Path, *, log: Path | None = None
) -> Iterator[UnfinishedRootfs]:
    """The cached tree for ``spec``, or a new one from mmdebstrap, handed out as soon as its
    files are in: a new tree's initrd is then still being made in it (ADR 0033), and
    :meth:`UnfinishedRootfs.finished` waits for that and for the cache entry. The block may
    stage the tree meanwhile (hard links; the initrd is the one file still to come). Leaving the
    block finishes the tree; leaving it by an exception stops dracut and drops the new tree.

    A cache without any tree (a new machine or CI cache) cannot hold this one, so there the
    bootstrap starts at once and the resolution that names the tree runs beside it (ADR 0028).
    """
    packages = kept_resolution(spec, cache)
    reused = packages is not None
    with ExitStack() as locked:
        unfinished = None
        if packages is None:
            locked.enter_context(cache_lock(cache, "rootfs"))
            if _has_a_tree(cache / "rootfs"):
                locked.close()  # resolving needs no lock
                packages = fresh_resolution(spec, cache)
            else:
                unfinished = _build_beside_resolution(spec, cache, log)
        if unfinished is None:
            assert packages is not None
            locked.enter_context(cache_lock(cache, "rootfs"))
            unfinished = _cached_rootfs(spec, cache, rootfs_key(spec, packages), log)
            unfinished.rootfs = dataclasses.replace(unfinished.rootfs, resolution_reused=reused)
        if not unfinished.initrd_pending:
            locked.close()  # a complete tree is never changed: others may use it meanwhile
        with _handed_out(unfinished):
            yield unfinished


class UnfinishedRootfs:
    """A tree with every file in but, when it is new, its initrd, which dracut is making in it.

    :attr:`rootfs` names the tree where it is now (a new tree moves into its cache entry when
    finished)."""

    def __init__(self, rootfs: Rootfs, bootstrapped: _Bootstrapped | None = None) -> None:
        self.rootfs = rootfs
        self._bootstrapped = bootstrapped
        self._initrd_ready = False

    @property
    def initrd_pending(self) -> bool:
        return self._bootstrapped is not None

    def initrd_ready(self) -> Rootfs:
        """The tree once its initrd is in, where it is now: a new tree is made durable and
        enters the cache only when the block of :func:`rootfs_in_progress` ends, so that its
        ``sync`` runs beside the build's last steps, not before them (ADR 0035)."""
        if self._bootstrapped is not None and not self._initrd_ready:
            self._bootstrapped.wait_initrd()
            self._initrd_ready = True
        return self.rootfs

    def finished(self) -> Rootfs:
        """The tree with its initrd, in the cache (waits for dracut when it is running)."""
        if self._bootstrapped is not None:
            done = self._bootstrapped.finish(self.rootfs.key)
            self._bootstrapped = None
            self.rootfs = dataclasses.replace(done, resolution_reused=self.rootfs.resolution_reused)
        return self.rootfs

    def abort(self) -> None:
        """Stop dracut and drop the new tree (nothing of it enters the cache). A tree whose
        initrd is already in is complete: it is published instead, for the next build."""
        if self._bootstrapped is not None:
            if self._initrd_ready:
                self.finished()
                return
            self._bootstrapped.abort()
            self._bootstrapped = None


@contextmanager
def _handed_out(unfinished: UnfinishedRootfs) -> Iterator[UnfinishedRootfs]:
    try:
        yield unfinished
    except BaseException:
        unfinished.abort()
        raise
    unfinished.finished()


def _has_a_tree(directory: Path) -> bool:
    return directory.is_dir() and any((p / "manifest.json").is_file() for p in directory.iterdir())


def consistent_with_resolution(
    installed: list[tuple[str, str]], resolved: list[tuple[str, str]]
) -> bool:
    """Whether a tree bootstrapped beside a resolution is the tree that resolution names: every
    installed (package, version) was resolved. (The resolution may list more: apt's simulation
    includes packages that a later step replaces, such as ``lsb-base``.)"""
    return set(installed) <= set(resolved)


def _build_beside_resolution(spec: ImageSpec, cache: Path, log: Path | None) -> UnfinishedRootfs:
    """Bootstrap and resolve at the same time; the resolution's key names the new tree."""
    work = cache / "rootfs" / f".beside-resolution-{os.getpid()}.partial"
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="railcar-resolve") as pool:
        resolving = pool.submit(fresh_resolution, spec, cache)
        boot = _bootstrap(spec, cache, work, log)
        try:
            packages = resolving.result()
        except BaseException:
            boot.abort()
            raise
    key = rootfs_key(spec, packages)
    if not consistent_with_resolution(boot.installed, packages):
        # The archive changed between the two apt updates: build the tree the key names.
        boot.abort()
        return _cached_rootfs(spec, cache, key, log)
    return boot.unfinished(key)


def _cached_rootfs(spec: ImageSpec, cache: Path, key: str, log: Path | None) -> UnfinishedRootfs:
    entry = cache / "rootfs" / key
    manifest = entry / "manifest.json"
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        packages = tuple(map(tuple, info["packages"]))
        return UnfinishedRootfs(Rootfs(key, entry / "tree", packages, info["kernel"], cached=True))
    work = cache / "rootfs" / f".{key}.partial"
    return _bootstrap(spec, cache, work, log).unfinished(key)


@dataclass
class _Bootstrapped:
    """mmdebstrap's finished tree in ``work/tree``, and the dracut run making its initrd. Its
    cache entry, named by the resolution's key, is a sibling of ``work``."""

    work: Path
    installed: list[tuple[str, str]]
    kernel: str
    dracut: subprocess.Popen[bytes]
    log: Path | None

    def unfinished(self, key: str) -> UnfinishedRootfs:
        tree = self.work / "tree"
        return UnfinishedRootfs(
            Rootfs(key, tree, tuple(self.installed), self.kernel, cached=False), self
        )

    def wait_initrd(self) -> None:
        """Wait for dracut; on its failure drop the tree and raise :class:`RootfsError`."""
        status = self.dracut.wait()
        initrd = f"/boot/initrd.img-{self.kernel}"
        if status != 0 or not (self.work / "tree" / initrd.lstrip("/")).is_file():
            shutil.rmtree(self.work, ignore_errors=True)
            what = f"exited with status {status}" if status else f"wrote no {initrd}"
            where = f"; see {self.log}" if self.log else ""
            raise RootfsError(f"dracut {what} making the tree's initrd{where}")

    def finish(self, key: str) -> Rootfs:
        """Wait for the initrd; make the tree durable and publish it as the entry ``key``."""
        self.wait_initrd()
        # The whole tree on disk before the rename publishes it (dpkg did not fsync; see above).
        run(["sync", "--file-system", self.work / "tree"])
        manifest = {"packages": self.installed, "kernel": self.kernel}
        (self.work / "manifest.json").write_text(json.dumps(manifest, indent=1))
        return _publish(self.work, self.work.parent / key, self.installed, self.kernel)

    def abort(self) -> None:
        if self.dracut.poll() is None:
            os.killpg(self.dracut.pid, signal.SIGTERM)  # its own session: unshare, sh, dracut
        self.dracut.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def _publish(work: Path, entry: Path, installed: list[tuple[str, str]], kernel: str) -> Rootfs:
    """Make the bootstrapped ``work`` the cache entry ``entry`` (named by its key)."""
    shutil.rmtree(entry, ignore_errors=True)
    work.rename(entry)
    prune_cache(entry.parent)
    return Rootfs(entry.name, entry / "tree", tuple(installed), kernel, cached=False)


def _bootstrap(spec: ImageSpec, cache: Path, work: Path, log: Path | None) -> _Bootstrapped:
    """mmdebstrap into ``work/tree``, then dracut started in it (:meth:`_Bootstrapped.finish`
    waits for it and writes ``work/manifest.json``, the list of what was installed). When the
    cache has no venv layer for this Railcar, it is made during the bootstrap."""
    if os.geteuid() != 0:
        raise RootfsError(
            "building the root filesystem needs root (mmdebstrap --mode=root)",
            hint="run railcar build as root, or with a cache that already holds this rootfs",
        )
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    hooks = _hook_files(spec, work)
    tree = work / "tree"
    env = {
        **os.environ,
        "SOURCE_DATE_EPOCH": str(spec.source_date_epoch),
        # Debian's kernel hook /etc/kernel/postinst.d/dracut (run by the kernel's postinst and by
        # dracut's update-initramfs trigger) exits early when INITRD is "No": without it each
        # bootstrap made two throwaway initrds before the real one.
        "INITRD": "No",
    }
    debs = cache / "debs" / f"{spec.suite}-{spec.architecture.value}"
    debs.mkdir(parents=True, exist_ok=True)
    archives = '"$1/var/cache/apt/archives"'
    venv = None
    if not (venv_layer(spec, cache) / ".complete").is_file():
        venv = _VenvBeside(spec, cache, work)
    cmd = [
        *mmdebstrap_base(spec),
        # Keep downloaded .debs between builds (mmdebstrap(1) "cache" example): a new package
        # version costs one download, not all of them. Hard links both ways where the cache is
        # one filesystem (apt and dpkg never write into a .deb; the customize script unlinks
        # the tree's), a copy otherwise.
        "--skip=essential/unlink",
        # No fsync per unpacked file (dpkg(1) --force-unsafe-io): the tree is used only after
        # mmdebstrap has finished, and one syncfs makes it durable before it enters the cache
        # (_Bootstrapped.finish).
        "--dpkgopt=force-unsafe-io",
        # The spec's path filters, for dpkg only: mmdebstrap's unpacking of the essential
        # packages ignores this file, and drop_filtered removes what it left (.pathfilter).
        '--setup-hook=mkdir -p "$1/etc/dpkg/dpkg.cfg.d"',
        f"--setup-hook=copy-in {hooks / 'conf' / PATH_FILTERS} /etc/dpkg/dpkg.cfg.d",
        '--setup-hook=mkdir -p "$1/var/cache/apt/archives/"',
        f"--setup-hook={_link_or_copy(f'{q(str(debs))}/.', archives)}",
        *(venv.start_hooks() if venv else []),
        f"--customize-hook={_link_or_copy(f'{archives}/.', q(str(debs)))}",
        '--customize-hook=mkdir -p "$1/usr/lib/dracut/modules.d/90railcar-usr"'
        ' "$1/etc/dracut.conf.d"',
        f"--customize-hook=sync-in {hooks / '90railcar-usr'} {DRACUT_MODULE}",
        f"--customize-hook=copy-in {hooks / 'conf' / '00-railcar.conf'} /etc/dracut.conf.d",
        f'--customize-hook=sh {hooks / "customize.sh"} "$1"',
        *(venv.end_hooks() if venv else []),
        spec.suite,
        str(tree),
        *spec.mirrors,
    ]
    over = threading.Event()
    beside = None
    if venv:
        beside = threading.Thread(target=venv.run, args=(tree, over), name="railcar-venv")
        beside.start()
    try:
        with open(log or os.devnull, "ab") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    finally:
        over.set()
        if beside:
            beside.join()
    if proc.returncode != 0:
        where = f"; see {log}" if log else ""
        raise RootfsError(f"mmdebstrap failed with exit status {proc.returncode}{where}")
    if venv and venv.error:
        raise venv.error
    drop_filtered(tree, spec.path_exclude, spec.path_include)
    kernels = sorted((tree / "usr/lib/modules").iterdir())
    if len(kernels) != 1:
        raise RootfsError(f"expected one kernel in the rootfs, found {[k.name for k in kernels]}")
    kernel = kernels[0].name
    try:
        dracut = _start_initrd(tree, kernel, spec, log)
    except OSError as e:  # no unshare(1): util-linux is part of every Debian
        shutil.rmtree(work, ignore_errors=True)
        raise RootfsError(f"cannot start dracut in the new tree: {e}") from e
    try:
        installed = _installed(tree)
        shutil.rmtree(hooks)
        _prune_debs(debs, installed)
    except BaseException:
        _Bootstrapped(work, [], kernel, dracut, log).abort()
        raise
    return _Bootstrapped(work, installed, kernel, dracut, log)


def _hook_files(spec: ImageSpec, work: Path) -> Path:
    """``work/hooks``: what mmdebstrap's hooks copy into the tree, and the customize script."""
    hooks = work / "hooks"
    shutil.copytree(data_dir() / "dracut" / "90railcar-usr", hooks / "90railcar-usr")
    (hooks / "conf").mkdir()
    shutil.copy(data_dir() / "dracut.conf", hooks / "conf" / "00-railcar.conf")
    filters = dpkg_config(spec.path_exclude, spec.path_include)
    (hooks / "conf" / PATH_FILTERS).write_text(filters)
    (hooks / "customize.sh").write_text(_customize_script())
    return hooks


def _prune_debs(debs: Path, installed: list[tuple[str, str]]) -> None:
    """Drop the ``.deb`` files of versions the tree no longer uses."""
    wanted = {f"{name}_{version.replace(':', '%3a')}_" for name, version in installed}
    for deb in debs.glob("*.deb"):
        if not any(deb.name.startswith(prefix) for prefix in wanted):
            deb.unlink()


def _installed(tree: Path) -> list[tuple[str, str]]:
    """(package, version) of every package dpkg has installed in ``tree``."""
    query: list[str | Path] = ["chroot", tree, "dpkg-query", "-W", "-f=${Package}\t${Version}\n"]
    pairs = (line.split("\t") for line in run(query).splitlines())
    return [(name, version) for name, version in pairs]


def python_unpacked(tree: Path) -> bool:
    """Whether dpkg has put in ``tree`` what making the venv layer needs: ``python3`` and the
    interpreter it names, that version's ``venv`` module, and pip's wheel. dpkg renames a
    package's files into place only once the whole package is unpacked."""
    python3 = tree / "usr/bin/python3"
    if not python3.is_symlink():
        return False
    version = os.readlink(python3)  # "python3.11"
    return (
        "/" not in version
        and (tree / "usr/bin" / version).is_file()
        and (tree / "usr/lib" / version / "venv" / "__init__.py").is_file()
        and any((tree / "usr/share/python-wheels").glob("pip-*.whl"))
    )


class _VenvBeside:
    """Railcar's venv layer, made by the image's python3 in the bootstrap's tree (ADR 0028) and
    moved out of it before the tree is cached.

    It starts as soon as dpkg has unpacked Python and pip's wheel (:func:`python_unpacked`),
    while the other packages are still being installed: dpkg keeps one core busy, and the venv
    (pip and byte-compiling, ~8 s) takes the other (ADR 0031). Making it needs only the
    interpreter, its standard library and the wheels, and its files are the same whenever it is
    made. Should that early attempt fail (a library not unpacked yet), the venv is made again
    once every package is in, at the first customize hook, as before; only that attempt's
    failure fails the build."""

    def __init__(self, spec: ImageSpec, cache: Path, work: Path) -> None:
        self.spec, self.cache = spec, cache
        self.ready, self.done = work / "venv-ready", work / "venv-done"
        self.error: Exception | None = None
        self.early_failure: Exception | None = None  # the early attempt's, when it was retried
        self.made_early = False

    def start_hooks(self) -> list[str]:
        return [f"--customize-hook=touch {q(str(self.ready))}"]

    def end_hooks(self) -> list[str]:
        # mmdebstrap's cleanup (and the cache) must not see the venv half made
        return [f"--customize-hook=until [ -e {q(str(self.done))} ]; do sleep 0.1; done"]

    def run(self, tree: Path, over: threading.Event) -> None:
        """Thread body: wait until Python is unpacked, make the layer, say done. A failure is
        kept in :attr:`error`; ``over`` is set when mmdebstrap has ended (maybe early)."""
        try:
            with cache_lock(self.cache, "venv"):
                layer = venv_layer(self.spec, self.cache)
                if (layer / ".complete").is_file():
                    return
                house = wheelhouse(self.spec, self.cache)
                while not self.ready.exists():
                    if self.early_failure is None and python_unpacked(tree):
                        try:
                            _make_venv_layer(self.spec, tree, layer, house, keep=False)
                            self.made_early = True
                            return
                        except Exception as e:  # retried once every package is in
                            self.early_failure = e
                            _remove_venv(tree)
                    elif over.wait(0.1):
                        return
                _make_venv_layer(self.spec, tree, layer, house, keep=False)
        except Exception as e:  # raised by the builder once mmdebstrap has ended
            self.error = e
        finally:
            self.done.touch()


def _remove_venv(root: Path) -> None:
    """What a failed :func:`_make_venv_layer` may have left in ``root``."""
    target = root / RAILCAR_VENV.lstrip("/")
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(root / "tmp" / "railcar-wheels", ignore_errors=True)
    if target.parent.is_dir() and not any(target.parent.iterdir()):
        target.parent.rmdir()


def venv_layer(spec: ImageSpec, cache: Path) -> Path:
    """The cached venv layer for the current Railcar sources and ``spec``'s architecture."""
    return cache / "venv" / f"{railcar_digest()[:24]}-{spec.architecture.value}"


def install_railcar(spec: ImageSpec, stage: Path, cache: Path) -> None:
    """Railcar in a venv at ``/usr/lib/railcar/venv`` of ``stage``, from a cached layer.

    The layer is keyed by Railcar's sources and lock file, so a code change reinstalls only
    Railcar, not the whole root filesystem. The venv is made by the image's own python3.
    """
    with cache_lock(cache, "venv"):
        _install_railcar(spec, stage, cache)


def _install_railcar(spec: ImageSpec, stage: Path, cache: Path) -> None:
    layer = venv_layer(spec, cache)
    target = stage / RAILCAR_VENV.lstrip("/")
    if not (layer / ".complete").is_file():
        _make_venv_layer(spec, stage, layer, wheelhouse(spec, cache), keep=True)
        return
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", "--link", layer / "venv", target])


def _make_venv_layer(spec: ImageSpec, root: Path, layer: Path, house: Path, *, keep: bool) -> None:
    """Make Railcar's venv in ``root`` with its python3 and store it as ``layer``: copied when
    ``keep`` (a stage that becomes the image), else moved out (a tree that must not have it)."""
    target = root / RAILCAR_VENV.lstrip("/")
    wheels = root / "tmp" / "railcar-wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    shutil.copytree(house, wheels)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SOURCE_DATE_EPOCH": str(spec.source_date_epoch),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # A venv without pip and setuptools (25 MB that nothing on a read-only /usr could use,
    # and ~2.7 s of ensurepip per layer): the image's own pip wheel installs into it.
    pips = sorted((root / "usr/share/python-wheels").glob("pip-*.whl"))
    if not pips:
        raise RootfsError(
            "the image has no pip wheel (/usr/share/python-wheels) to install Railcar with",
            hint="keep python3-venv in the spec's packages",
        )
    pip = f"/{pips[-1].relative_to(root)}/pip"
    for cmd in (
        ["chroot", str(root), "python3", "-m", "venv", "--without-pip", RAILCAR_VENV],
        [
            "chroot", str(root), "python3", pip, "--python", f"{RAILCAR_VENV}/bin/python",
            "install", "--quiet", "--no-index", "--disable-pip-version-check",
            "--find-links", "/tmp/railcar-wheels", "railcar",
        ],
    ):  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-3:])
            raise RootfsError(f"installing Railcar into the image failed: {tail}")
    shutil.rmtree(wheels)
    partial = layer.with_name(layer.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if keep:
        run(["cp", "-a", target, partial / "venv"])
    else:
        target.rename(partial / "venv")
        if not any(target.parent.iterdir()):  # /usr/lib/railcar, made for the venv
            target.parent.rmdir()
    (partial / ".complete").write_text("")
    shutil.rmtree(layer, ignore_errors=True)
    partial.rename(layer)
    prune_cache(layer.parent)


def stage_copy(tree: Path, dest: Path) -> Path:
    """A hard-linked copy of ``tree`` at ``dest`` (replace files in it; never write into them)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", "--link", tree, dest])
    return dest


def replace_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` as a new inode, so a hard-linked cache copy is never changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_bytes(data)
    path.chmod(mode)
