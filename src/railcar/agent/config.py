"""What a node tells the update server about itself, read from update.conf and the release file.

Layering (``shared/spec/omaha-delivery.md`` §5.1, update_engine ``omaha_request_params.cc``
``GetConfValue``): each *key* is looked up separately and the first file that sets it wins, in
this order::

    /etc/railcar/update.conf       the node's own Railcar settings
    /etc/flatcar/update.conf       settings a node migrating from Flatcar still carries
    /usr/share/railcar/update.conf the image's defaults (SERVER, GROUP)
    the release file               RAILCAR_RELEASE_* / FLATCAR_RELEASE_* (last, as in update_engine)

update_engine puts ``/etc`` before ``/usr`` and the release file last, so an admin can override
even ``*_RELEASE_VERSION`` from ``/etc``; we keep that. Railcar's own ``/etc/railcar`` outranks
the migrated ``/etc/flatcar`` so a file written for Railcar is never silently overridden by a
leftover one.

Railcar's own keys: ``REBOOT_STRATEGY`` (``reboot``/``off``, as locksmith reads it from the
same files), ``HEALTH_CHECK_UNITS`` (units that must not have failed before a boot is committed,
space or comma separated) and ``HEALTH_CHECK_TIMEOUT`` (seconds to wait for
``boot-complete.target``); see :mod:`railcar.agent.health`.

``SERVER``: Railcar has no public update service, so there is no compiled-in default. Absent,
empty or ``disabled`` (the value Flatcar's docs use, §5.1) means *checks disabled*; anything
else must be an ``http(s)://`` URL or the file is rejected naming the line.

Functions here take file contents or a :class:`Files` reader, never paths on disk; see
:mod:`railcar.agent.disk` for the real one.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from railcar.agent.errors import ConfigError, IdentityError
from railcar.omaha.model import FLATCAR_APP_ID

# Highest precedence first (module docstring; update_engine GetConfValue, spec §5.1).
UPDATE_CONF_PATHS: tuple[Path, ...] = (
    Path("/etc/railcar/update.conf"),
    Path("/etc/flatcar/update.conf"),
    Path("/usr/share/railcar/update.conf"),
)
# Railcar's release file first; Flatcar's (update_engine omaha_request_params.cc reads
# /usr/share/flatcar/release) for images that still ship it.
RELEASE_PATHS: tuple[Path, ...] = (
    Path("/usr/lib/railcar/release"),
    Path("/usr/share/flatcar/release"),
)
# update_engine utils.cc GetMachineId / GetBootId.
MACHINE_ID_PATH = Path("/etc/machine-id")
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
# update_engine omaha_request_params.cc: /etc/oem-release, then /usr/share/oem/oem-release.
OEM_RELEASE_PATHS: tuple[Path, ...] = (
    Path("/etc/oem-release"),
    Path("/usr/share/oem/oem-release"),
)

# update_engine omaha_request_params.cc: GROUP falls back to "stable" when no file sets it.
DEFAULT_GROUP = "stable"
# The value Flatcar documents for switching checks off (flatcar-website releases/update-conf.md).
SERVER_DISABLED = "disabled"

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MACHINE_ID = re.compile(r"[0-9a-f]{32}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Files(Protocol):
    """Reads small text files; ``None`` when the file does not exist."""

    def read_text(self, path: Path) -> str | None: ...


class RebootStrategy(StrEnum):
    """What Railcar does once an update is installed (``REBOOT_STRATEGY=``)."""

    REBOOT = "reboot"
    OFF = "off"


@dataclass(frozen=True)
class Setting:
    """One ``KEY=value`` with where it came from, so later checks can point at the line."""

    value: str
    source: str
    line: int


def parse_key_values(text: str, source: str) -> dict[str, Setting]:
    """Shell-like ``KEY=value`` lines: blank lines and ``#`` comments skipped, an optional
    ``export`` prefix, values quoted with ``'`` or ``"`` or a single bare word; a later line for
    the same key wins (as ``source``-ing the file would)."""
    settings: dict[str, Setting] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, rest = line.partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise ConfigError(source, number, f"expected KEY=value, found {raw.strip()!r}")
        try:
            words = shlex.split(rest, comments=True, posix=True)
        except ValueError as exc:
            raise ConfigError(source, number, f"{key}: {exc} (unbalanced quotes?)") from None
        if len(words) > 1:
            raise ConfigError(
                source,
                number,
                f"{key}: expected one word or a quoted value, found {len(words)} words",
                hint="quote values that contain spaces",
            )
        settings[key] = Setting(words[0] if words else "", source, number)
    return settings


def layer(layers: Sequence[Mapping[str, Setting]]) -> dict[str, Setting]:
    """Merge layers given highest precedence first: per key, the first layer that sets it."""
    merged: dict[str, Setting] = {}
    for settings in layers:
        for key, setting in settings.items():
            merged.setdefault(key, setting)
    return merged


@dataclass(frozen=True)
class UpdateConf:
    """The keys of update.conf the agent uses (spec §5.1)."""

    server: str | None  # None: checks disabled (no SERVER, empty, or "disabled")
    group: str = DEFAULT_GROUP
    machine_alias: str = ""
    download_user: str | None = None
    download_password: str | None = None
    reboot_strategy: RebootStrategy = RebootStrategy.REBOOT
    health_units: tuple[str, ...] = ()  # HEALTH_CHECK_UNITS: must not be failed to commit
    health_timeout: int | None = None  # HEALTH_CHECK_TIMEOUT seconds; None: the default

    @property
    def checks_enabled(self) -> bool:
        return self.server is not None


def _server(setting: Setting | None) -> str | None:
    if setting is None or setting.value in ("", SERVER_DISABLED):
        return None
    url = urlsplit(setting.value)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigError(
            setting.source,
            setting.line,
            f"SERVER: expected an http(s):// URL or {SERVER_DISABLED!r}, found {setting.value!r}",
        )
    return setting.value


def update_conf(settings: Mapping[str, Setting]) -> UpdateConf:
    """The agent's settings from merged update.conf layers."""
    strategy = settings.get("REBOOT_STRATEGY")
    reboot = RebootStrategy.REBOOT
    if strategy is not None and strategy.value:
        try:
            reboot = RebootStrategy(strategy.value)
        except ValueError:
            expected = ", ".join(repr(s.value) for s in RebootStrategy)
            raise ConfigError(
                strategy.source,
                strategy.line,
                f"REBOOT_STRATEGY: expected one of {expected}, found {strategy.value!r}",
                hint="locksmith's etcd-lock and best-effort are not Railcar strategies",
            ) from None
    timeout = settings.get("HEALTH_CHECK_TIMEOUT")
    health_timeout = None
    if timeout is not None and timeout.value:
        if not timeout.value.isdigit() or int(timeout.value) == 0:
            raise ConfigError(
                timeout.source,
                timeout.line,
                f"HEALTH_CHECK_TIMEOUT: expected a positive number of seconds,"
                f" found {timeout.value!r}",
            )
        health_timeout = int(timeout.value)
    units = settings.get("HEALTH_CHECK_UNITS")
    group = settings.get("GROUP")
    user = settings.get("DOWNLOAD_USER")
    password = settings.get("DOWNLOAD_PASSWORD")
    alias = settings.get("MACHINE_ALIAS")
    return UpdateConf(
        server=_server(settings.get("SERVER")),
        group=group.value if group is not None and group.value else DEFAULT_GROUP,
        machine_alias=alias.value if alias is not None else "",
        download_user=user.value if user is not None else None,
        download_password=password.value if password is not None else None,
        reboot_strategy=reboot,
        health_units=tuple(units.value.replace(",", " ").split()) if units is not None else (),
        health_timeout=health_timeout,
    )


@dataclass(frozen=True)
class Release:
    """The running image, as the release file (or an override in update.conf) states it."""

    version: str
    board: str
    appid: str  # braced, lower-case, as update_engine sends it


def braced_app_id(value: str) -> str:
    """``{guid}`` in lower case; update_engine sends the appid braced (spec §2.2, §2.6)."""
    return "{" + value.strip().strip("{}").lower() + "}"


def release(settings: Mapping[str, Setting], source: str) -> Release:
    """``RAILCAR_RELEASE_*`` keys, else Flatcar's ``FLATCAR_RELEASE_*`` (spec §5.1)."""

    def get(suffix: str) -> Setting | None:
        for prefix in ("RAILCAR_RELEASE_", "FLATCAR_RELEASE_"):
            found = settings.get(prefix + suffix)
            if found is not None and found.value:
                return found
        return None

    version, board, appid = get("VERSION"), get("BOARD"), get("APPID")
    for name, found in (("VERSION", version), ("BOARD", board)):
        if found is None:
            raise ConfigError(
                source, None, f"expected RAILCAR_RELEASE_{name}= (or FLATCAR_RELEASE_{name}=)"
            )
    assert version is not None and board is not None
    # update_engine omaha_request_params.cc kAppId when the release file names none; the Railcar
    # server's default application is the same id (railcar.server.admin).
    return Release(
        version=version.value,
        board=board.value,
        appid=braced_app_id(appid.value if appid is not None else FLATCAR_APP_ID),
    )


def machine_id(text: str, source: str = str(MACHINE_ID_PATH)) -> str:
    """32 lower-case hex digits, sent without braces (update_engine utils.cc GetMachineId)."""
    value = text.strip()
    if not _MACHINE_ID.fullmatch(value):
        raise IdentityError(f"{source}: expected 32 lower-case hex digits, found {value!r}")
    return value


def boot_id(text: str, source: str = str(BOOT_ID_PATH)) -> str:
    """The kernel's boot id wrapped in braces (update_engine utils.cc GetBootId)."""
    value = text.strip().lower()
    if not _UUID.fullmatch(value):
        raise IdentityError(f"{source}: expected a dashed UUID, found {value!r}")
    return "{" + value + "}"


@dataclass(frozen=True)
class OemRelease:
    id: str = ""
    version_id: str = ""


def oem_release(text: str, source: str) -> OemRelease:
    """``ID=`` and ``VERSION_ID=`` of an oem-release file (os-release syntax)."""
    try:
        settings = parse_key_values(text, source)
    except ConfigError as exc:
        raise IdentityError(exc.message) from None
    oem_id = settings.get("ID")
    version = settings.get("VERSION_ID")
    return OemRelease(
        oem_id.value if oem_id is not None else "",
        version.value if version is not None else "",
    )


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs from the node's files for one check (re-read per check,
    as update_engine does, spec §5.1)."""

    conf: UpdateConf
    release: Release
    machine_id: str
    boot_id: str
    oem: OemRelease
    arch: str  # ``uname -m``, for ``<os sp=>``


def _first(files: Files, paths: Sequence[Path]) -> tuple[Path, str] | None:
    for path in paths:
        text = files.read_text(path)
        if text is not None:
            return path, text
    return None


def load_agent_config(files: Files, *, arch: str) -> AgentConfig:
    """Read and check every file the agent depends on, through ``files``."""
    conf_layers = []
    for path in UPDATE_CONF_PATHS:
        text = files.read_text(path)
        if text is not None:
            conf_layers.append(parse_key_values(text, str(path)))
    found = _first(files, RELEASE_PATHS)
    if found is None:
        names = " or ".join(str(p) for p in RELEASE_PATHS)
        raise ConfigError(names, None, "no release file; expected one of these to exist")
    release_path, release_text = found
    merged = layer([*conf_layers, parse_key_values(release_text, str(release_path))])
    mid = files.read_text(MACHINE_ID_PATH)
    bid = files.read_text(BOOT_ID_PATH)
    if mid is None:
        raise IdentityError(f"{MACHINE_ID_PATH}: missing; expected 32 hex digits")
    if bid is None:
        raise IdentityError(f"{BOOT_ID_PATH}: missing; expected a dashed UUID")
    oem = _first(files, OEM_RELEASE_PATHS)
    return AgentConfig(
        conf=update_conf(merged),
        release=release(merged, str(release_path)),
        machine_id=machine_id(mid),
        boot_id=boot_id(bid),
        oem=OemRelease() if oem is None else oem_release(oem[1], str(oem[0])),
        arch=arch,
    )
