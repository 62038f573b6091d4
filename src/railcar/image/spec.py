"""The image spec: one TOML file that says what OS ``railcar build`` makes.

One table of :class:`Setting` rows drives parsing, defaults and the documentation
(``railcar build --help-spec``), in the manner of mkosi's settings table. Every value is checked
when the file is read; an error names the key, what was found and what was expected. The result
is a frozen :class:`ImageSpec`.

Example (``examples/railcar.toml`` is the full default)::

    [image]
    name = "railcar"
    version = "1.0.0"

    [distribution]
    suite = "bookworm"
    architecture = "amd64"

    [packages]
    include = ["systemd", "containerd"]
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from railcar.image.errors import SpecError


class Architecture(StrEnum):
    """Debian architectures the builder knows how to boot (UEFI, systemd-boot)."""

    AMD64 = "amd64"
    ARM64 = "arm64"

    @property
    def efi_suffix(self) -> str:
        """The UEFI removable-media name suffix: ``BOOTX64.EFI``, ``BOOTAA64.EFI``."""
        return {"amd64": "x64", "arm64": "aa64"}[self.value]

    @property
    def board(self) -> str:
        """Flatcar's board name for this architecture (spec §5.4: ``amd64-usr``)."""
        return f"{self.value}-usr"


class DigestAlgorithm(StrEnum):
    """Hashes the build's DIGESTS file can list. SHA-256 is what the P0 build goal names
    (``../shared/spec/anchors.md``); Flatcar's ``X.DIGESTS`` files carry SHA-512 (spec §5.1)."""

    SHA256 = "sha256"
    SHA512 = "sha512"


class Compression(StrEnum):
    """Compressors Debian 12's mkfs.erofs offers for /usr."""

    NONE = "none"
    LZ4 = "lz4"
    LZ4HC = "lz4hc"


@dataclass(frozen=True)
class ExtraFile:
    """A file put into the image: ``source`` on the build host, ``target`` in the image."""

    target: PurePosixPath
    source: Path
    mode: int = 0o644


@dataclass(frozen=True)
class PartitionSizes:
    """Partition sizes in MiB (spec §1.1 layout; Flatcar's old layout sizes by default)."""

    esp: int = 128
    bios_boot: int = 2
    usr: int = 1024
    oem: int = 128
    oem_config: int = 64
    root: int = 1024


@dataclass(frozen=True)
class ImageSpec:
    name: str
    version: str
    suite: str
    architecture: Architecture
    mirrors: tuple[str, ...]
    packages: tuple[str, ...]
    kernel_package: str
    enable_units: tuple[str, ...]
    files: tuple[ExtraFile, ...]
    cmdline: tuple[str, ...]
    oem_id: str
    update_server: str
    update_group: str
    app_id: str
    compression: Compression
    boot_tries: int
    source_date_epoch: int
    payload_min_saving: int = 0
    disable_units: tuple[str, ...] = ()
    digests: tuple[DigestAlgorithm, ...] = (DigestAlgorithm.SHA256,)
    cluster_kib: int = 4
    path_exclude: tuple[str, ...] = ()
    path_include: tuple[str, ...] = ()
    partitions: PartitionSizes = field(default_factory=PartitionSizes)
    path: Path = Path()

    @property
    def board(self) -> str:
        return self.architecture.board

    def rootfs_fields(self) -> dict[str, Any]:
        """What the Debian root filesystem depends on (part of its cache key)."""
        return {
            "suite": self.suite,
            "architecture": self.architecture.value,
            "mirrors": list(self.mirrors),
            "packages": list(self.packages),
            "kernel": self.kernel_package,
            "source_date_epoch": self.source_date_epoch,
        }


# --- the settings table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    kind: str  # "str", "int", "list[str]", "table"
    default: Any
    help: str
    check: Callable[[str, Any], Any] | None = None

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}"


_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+~-]{0,63}")
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_UNIT = re.compile(r"[A-Za-z0-9:_.@\\-]+\.(service|socket|timer|target|path|mount)")
_GUID = re.compile(r"\{?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\}?")


def _match(pattern: re.Pattern[str], expected: str) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not pattern.fullmatch(item):
                raise SpecError(f"{key}: {item!r} is not valid, expected {expected}")
        return value

    return check


def _one_of(enum: type[StrEnum]) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        try:
            return enum(value)
        except ValueError:
            choices = ", ".join(repr(e.value) for e in enum)
            raise SpecError(f"{key}: {value!r} is not valid, expected one of {choices}") from None

    return check


def _power_of_two(low: int, high: int) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if not low <= value <= high or value & (value - 1):
            raise SpecError(
                f"{key}: {value} is not valid, expected a power of two, {low} to {high}"
            )
        return value

    return check


def _range(low: int, high: int) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if not low <= value <= high:
            raise SpecError(f"{key}: {value} is out of range, expected {low} to {high}")
        return value

    return check


def _digests(key: str, value: Any) -> Any:
    algorithms = [_one_of(DigestAlgorithm)(key, v) for v in value]
    if not algorithms or len(set(algorithms)) != len(algorithms):
        choices = ", ".join(repr(e.value) for e in DigestAlgorithm)
        raise SpecError(f"{key}: {value!r} is not valid, expected each of {choices} at most once,"
                        " at least one")  # fmt: skip
    return algorithms


def _server(key: str, value: Any) -> Any:
    if value not in ("", "disabled") and not re.fullmatch(r"https?://\S+", value):
        raise SpecError(f"{key}: {value!r} is not valid, expected an http(s):// URL or 'disabled'")
    return value


_USR_GLOB = re.compile(r"/usr/[^\s\\]+")


def _usr_globs(key: str, value: Any) -> Any:
    for item in value:
        if not _USR_GLOB.fullmatch(item) or "/../" in f"{item}/":
            raise SpecError(
                f"{key}: {item!r} is not valid, expected a path or glob under /usr/ without"
                " spaces or '..', e.g. /usr/share/man/*"
            )
    return value


# What a node never reads: manuals (no man reader is installed), Info pages, translations of
# programs' messages (nodes run in C.UTF-8) and package documentation, as mkosi leaves them
# out unless WithDocs=yes. Debian's copyright files stay: they carry the licences of what
# the image distributes. locale.alias is data glibc reads.
_DEFAULT_PATH_EXCLUDE = [
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
]
_DEFAULT_PATH_INCLUDE = ["/usr/share/doc/*/copyright", "/usr/share/locale/locale.alias"]

_DEFAULT_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "systemd-boot",
    "udev",
    "dbus",
    "kmod",
    "dmsetup",
    "cryptsetup-bin",
    "dracut",
    # Ignition in the initrd (its dracut module needs dracut-network and curl); sgdisk gives the
    # disk a random GUID on first boot.
    "ignition",
    "dracut-network",
    "curl",
    "gdisk",
    "zstd",
    "e2fsprogs",
    "iproute2",
    "python3",
    "python3-venv",
    "openssh-server",
    "containerd",
    "runc",
    "docker.io",
    # The kernel enforces AppArmor; docker needs apparmor_parser to load docker-default.
    "apparmor",
]

SETTINGS: tuple[Setting, ...] = (
    Setting("image", "name", "str", "railcar", "OS name: ID in os-release, file name prefix.",
            _match(_NAME, "lower-case letters, digits and '-'")),
    Setting("image", "version", "str", None, "OS version, e.g. 4081.2.0 (required).",
            _match(_VERSION, "a version such as 1.2.3")),
    Setting("image", "source_date_epoch", "int", 1700000000,
            "Timestamp every file and filesystem gets (SOURCE_DATE_EPOCH).", _range(0, 2**32 - 1)),
    Setting("image", "oem_id", "str", "qemu", "OEM id written to /usr/share/oem/oem-release.",
            _match(_NAME, "lower-case letters, digits and '-'")),
    Setting("image", "app_id", "str", "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}",
            "Omaha application id in the release file (Flatcar's by default).",
            _match(_GUID, "a GUID")),
    Setting("image", "digests", "list[str]", ["sha256"],
            "Hashes listed in DIGESTS, in this order: 'sha256' and/or 'sha512' (Flatcar's).",
            _digests),
    Setting("distribution", "suite", "str", "bookworm", "Debian suite.",
            _match(_NAME, "a Debian suite name such as bookworm")),
    Setting("distribution", "architecture", "str", "amd64", "Debian architecture.",
            _one_of(Architecture)),
    Setting("distribution", "mirrors", "list[str]", [],
            "apt source lines for mmdebstrap; empty: the build host's apt sources."),
    Setting("packages", "include", "list[str]", _DEFAULT_PACKAGES, "Debian packages in /usr.",
            _match(_PACKAGE, "a Debian package name")),
    Setting("packages", "kernel", "str", "auto",
            "The kernel package; 'auto': linux-image-cloud-ARCHITECTURE.",
            _match(_PACKAGE, "a Debian package name")),
    Setting("packages", "path_exclude", "list[str]", _DEFAULT_PATH_EXCLUDE,
            "Paths under /usr the packages' files are left out of (dpkg's path-exclude globs).",
            _usr_globs),
    Setting("packages", "path_include", "list[str]", _DEFAULT_PATH_INCLUDE,
            "Paths kept although path_exclude matches them (dpkg's path-include globs).",
            _usr_globs),
    # Container Linux's defaults: containerd from boot, dockerd socket-activated (ADR 0039).
    Setting("content", "enable_units", "list[str]", ["containerd.service", "docker.socket"],
            "systemd units enabled statically in /usr.", _match(_UNIT, "a systemd unit name")),
    Setting("content", "disable_units", "list[str]", ["docker.service"],
            "Units the packages enable that the image does not start (their links removed).",
            _match(_UNIT, "a systemd unit name")),
    Setting("content", "files", "table", {},
            "Extra files: '/path/in/image' = 'path/on/host' (relative to the spec)."),
    Setting("boot", "cmdline", "list[str]", ["console=ttyS0,115200"],
            "Extra kernel command line arguments."),
    Setting("boot", "tries", "int", 1, "Boot attempts a freshly installed slot gets (gptprio).",
            _range(1, 15)),
    Setting("usr", "compression", "str", "lz4", "erofs compressor for /usr.",
            _one_of(Compression)),
    Setting("usr", "cluster_kib", "int", 4,
            "erofs physical cluster in KiB (mkfs.erofs -C), a power of two: larger clusters"
            " compress better and faster; a read decompresses its whole cluster.",
            _power_of_two(4, 1024)),
    Setting("update", "server", "str", "disabled", "SERVER= in /usr/share/railcar/update.conf.",
            _server),
    Setting("update", "group", "str", "stable", "GROUP= in /usr/share/railcar/update.conf.",
            _match(_NAME, "lower-case letters, digits and '-'")),
    Setting("update", "payload_min_saving", "int", 0,
            "Percent bzip2 must save for a payload chunk to be stored compressed (0: any saving,"
            " as delta_generator); higher: bigger downloads, less CPU per install.",
            _range(0, 100)),
    *(
        Setting("partitions", name, "int", getattr(PartitionSizes(), name),
                f"Size of the {name} partition in MiB.", _range(1, 1 << 20))
        for name in ("esp", "bios_boot", "usr", "oem", "oem_config", "root")
    ),
)  # fmt: skip

_TYPES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "table": dict}
_EXPECTED = {"str": "a string", "int": "an integer", "list[str]": "a list of strings",
             "table": "a table"}  # fmt: skip


def _typed(setting: Setting, value: Any) -> Any:
    ok: bool
    if setting.kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif setting.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, _TYPES[setting.kind])
    if not ok:
        raise SpecError(
            f"{setting.dotted}: found {type(value).__name__} {value!r},"
            f" expected {_EXPECTED[setting.kind]}"
        )
    return setting.check(setting.dotted, value) if setting.check else value


def _values(document: Mapping[str, Any]) -> dict[str, Any]:
    known = {s.section: {t.key for t in SETTINGS if t.section == s.section} for s in SETTINGS}
    for section, table in document.items():
        if section not in known:
            raise SpecError(
                f"unknown section [{section}], expected one of: {', '.join(sorted(known))}"
            )
        if not isinstance(table, dict):
            raise SpecError(f"{section}: expected a table [{section}]")
        for key in table:
            if key not in known[section]:
                raise SpecError(
                    f"unknown setting {section}.{key},"
                    f" expected one of: {', '.join(sorted(known[section]))}"
                )
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        table = document.get(setting.section, {})
        if setting.key in table:
            values[setting.dotted] = _typed(setting, table[setting.key])
        elif setting.default is None:
            raise SpecError(f"{setting.dotted} is required")
        else:
            values[setting.dotted] = _typed(setting, setting.default)
    return values


def _files(table: Mapping[str, Any], base: Path) -> tuple[ExtraFile, ...]:
    files = []
    for target, source in sorted(table.items()):
        where = f"content.files.{target!r}"
        path = PurePosixPath(target)
        if not path.is_absolute() or ".." in path.parts:
            raise SpecError(f"{where}: expected an absolute path in the image without '..'")
        if not isinstance(source, str):
            raise SpecError(f"{where}: found {source!r}, expected a path on the build host")
        host = (base / source).resolve()
        if not host.is_file():
            raise SpecError(f"{where}: {host} is not a file")
        mode = host.stat().st_mode & 0o777
        files.append(ExtraFile(path, host, 0o755 if mode & 0o100 else 0o644))
    return tuple(files)


def parse_spec(text: str, *, path: Path = Path("railcar.toml")) -> ImageSpec:
    """An :class:`ImageSpec` from TOML text; relative file paths resolve beside ``path``."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    v = _values(document)
    architecture = v["distribution.architecture"]
    kernel = v["packages.kernel"]
    both = set(v["content.enable_units"]) & set(v["content.disable_units"])
    if both:
        raise SpecError(
            f"{path}: content.disable_units: {', '.join(sorted(both))} also in"
            " content.enable_units; expected each unit in one of them"
        )
    if kernel == "auto":
        kernel = f"linux-image-cloud-{architecture.value}"
    return ImageSpec(
        name=v["image.name"],
        version=v["image.version"],
        suite=v["distribution.suite"],
        architecture=architecture,
        mirrors=tuple(v["distribution.mirrors"]),
        packages=tuple(dict.fromkeys(v["packages.include"])),
        kernel_package=kernel,
        enable_units=tuple(v["content.enable_units"]),
        files=_files(v["content.files"], path.parent),
        cmdline=tuple(v["boot.cmdline"]),
        oem_id=v["image.oem_id"],
        update_server=v["update.server"],
        update_group=v["update.group"],
        app_id="{" + v["image.app_id"].strip("{}").lower() + "}",
        compression=v["usr.compression"],
        cluster_kib=v["usr.cluster_kib"],
        path_exclude=tuple(v["packages.path_exclude"]),
        path_include=tuple(v["packages.path_include"]),
        boot_tries=v["boot.tries"],
        source_date_epoch=v["image.source_date_epoch"],
        payload_min_saving=v["update.payload_min_saving"],
        disable_units=tuple(v["content.disable_units"]),
        digests=tuple(v["image.digests"]),
        partitions=PartitionSizes(
            **{name: v[f"partitions.{name}"] for name in PartitionSizes.__dataclass_fields__}
        ),
        path=path,
    )


def load_spec(path: Path) -> ImageSpec:
    """Read and check the spec at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"spec {path} is not UTF-8 text") from None
    return parse_spec(text, path=path.resolve())


def settings_help() -> str:
    """The settings table as text, for ``--help-spec`` and docs."""
    lines = []
    for s in SETTINGS:
        default = "(required)" if s.default is None else repr(s.default)
        if isinstance(s.default, list) and len(default) > 60:
            default = f"[{len(s.default)} items]"
        lines.append(f"{s.dotted:<28} {s.kind:<10} {s.help} Default: {default}")
    return "\n".join(lines)
