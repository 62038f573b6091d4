"""Assembling a :class:`~railcar.agent.driver.Driver` from real parts: a disk image or the
node's block devices, the node's files under a root, HTTP, systemctl.

Two ways to find the slots:

* **image** (``--disk IMAGE --booted-slot A|B``): the GPT of the image file, slots written
  within their partitions' byte ranges; no root, no loop device. The kernel goes under
  ``--boot-dir`` and post-install hooks can only be configured commands.
* **node**: slots are ``/dev/disk/by-partuuid/<fixed USR GUID>`` (else by label); the GPT is
  that partition's parent disk (``/sys/class/block``); the booted slot is the partition behind
  ``/usr`` (through a dm-verity device to its single slave), as ``rootdev -s /usr`` finds it.

Trusted keys default to the image's own: ``/usr/share/railcar/payload-key.pub.pem``, else
Flatcar's ``/usr/share/update_engine/update-payload-key.pub.pem`` (spec §4.6), under the config
root.
"""

from __future__ import annotations

import logging
import os
import shlex
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from railcar.agent.config import AgentConfig
from railcar.agent.disk import load_node_config
from railcar.agent.download import Downloader
from railcar.agent.driver import Driver, DriverIO, DriverSettings
from railcar.agent.errors import AgentError
from railcar.agent.health import DEFAULT_TIMEOUT, HealthPolicy, SystemctlProbe
from railcar.agent.install import (
    BootEntries,
    CommandHook,
    DeviceSlots,
    ImageSlots,
    Installer,
    NewUsrHook,
    PostinstallHook,
    SlotLocator,
)
from railcar.agent.reboot import CommandRebooter
from railcar.agent.schedule import CheckSchedule
from railcar.agent.slots import BootControl, GptBootControl, Slot
from railcar.agent.transport import OmahaClient
from railcar.gpt import GptDisk
from railcar.omaha.model import Request, Response
from railcar.payload.signing import TrustedKeys
from railcar.progress import NO_PROGRESS

log = logging.getLogger(__name__)

# Where images carry the payload verification key (railcar.release.keys PUBLIC_KEY_NAME), and
# where Flatcar's update_engine reads its own (spec §4.6).
DEFAULT_KEY_PATHS = (
    Path("/usr/share/railcar/payload-key.pub.pem"),
    Path("/usr/share/update_engine/update-payload-key.pub.pem"),
)
# update_engine utils.cc IsOfficialBuild: a developer image has this file (spec §3.2).
DEV_MODE_MARKER = Path("/root/.dev_mode")


class NodeError(AgentError):
    """The node's disks or keys cannot be used as asked."""


@dataclass(frozen=True)
class NodeOptions:
    """What ``railcar agent run|commit`` were told (see their ``--help``)."""

    state_dir: Path
    config_root: Path = Path("/")
    disk: Path | None = None
    booted_slot: Slot | None = None
    boot_dir: Path = Path("/boot")
    trusted_keys: tuple[Path, ...] = ()
    reboot_required: Path = Path("/run/reboot-required")
    health_gate: bool = True
    health_timeout: int | None = None
    postinstall_hook: tuple[str, ...] = ()
    reboot_command: tuple[str, ...] = ("systemctl", "reboot")
    systemctl: str = "systemctl"
    interval: int | None = None
    initial_delay: float | None = None


def trusted_keys(options: NodeOptions) -> TrustedKeys:
    if options.trusted_keys:
        return TrustedKeys.from_files(options.trusted_keys)
    for path in DEFAULT_KEY_PATHS:
        candidate = options.config_root / path.relative_to("/")
        if candidate.exists():
            return TrustedKeys.from_files([candidate])
    names = " or ".join(str(options.config_root / k.relative_to("/")) for k in DEFAULT_KEY_PATHS)
    raise NodeError(f"no trusted payload key: expected {names}", hint="pass --trusted-key PEM")


def _block_name(path: Path) -> str:
    return path.resolve().name


def _parent_disk(partition: Path) -> Path:
    sys_entry = Path("/sys/class/block") / _block_name(partition)
    if not (sys_entry / "partition").exists():
        raise NodeError(f"{partition} is not a partition")
    return Path("/dev") / sys_entry.resolve().parent.name


def booted_slot_of_usr(slots: DeviceSlots, usr: Path = Path("/usr")) -> Slot:
    """The slot whose partition holds ``usr`` (through one dm-verity level)."""
    dev = os.stat(usr).st_dev
    sys_dev = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    names = {sys_dev.resolve().name}
    slaves = sys_dev / "slaves"
    if slaves.is_dir():
        names |= {s.name for s in slaves.iterdir()}
    for slot in Slot:
        if _block_name(slots.target(slot).path) in names:
            return slot
    raise NodeError(f"{usr} is on {', '.join(sorted(names))}, which is neither USR-A nor USR-B")


def _schedule(options: NodeOptions) -> CheckSchedule:
    if options.interval is None:
        return CheckSchedule()
    # An explicit interval is taken as it is: no fuzz, and backoff may double it up to 4 × .
    return CheckSchedule(
        initial=options.interval,
        periodic=options.interval,
        regular_fuzz=0,
        max_backoff=options.interval * 4,
    )


def _exchange(url: str, request: Request) -> Response:
    with OmahaClient(url) as client:
        return client.exchange(request)


def health_policy(options: NodeOptions, config: AgentConfig) -> HealthPolicy | None:
    if not options.health_gate:
        return None
    timeout = options.health_timeout or config.conf.health_timeout or DEFAULT_TIMEOUT
    return HealthPolicy(units=config.conf.health_units, timeout=timeout)


def boot_control_for(
    disk: GptDisk, booted: Slot, boot_dir: Path
) -> tuple[BootControl, BootEntries | None]:
    """The node's boot control: on a Railcar image (systemd-boot entries on the ESP mounted at
    ``boot_dir``, ADR 0011) the GPT plus the entries projected from it — which is also the
    install's :class:`BootEntries` step — with the loader's counted attempts copied into the
    GPT first; otherwise gptprio alone (a GRUB with gptprio, as on Flatcar)."""
    from railcar.image.bootentries import ENTRIES_DIR, DirectoryEsp, SystemdBootEntries

    if not (boot_dir / ENTRIES_DIR).is_dir():
        return GptBootControl(disk, booted), None
    from railcar.image.bootcontrol import SystemdBootControl

    control = SystemdBootControl(disk, SystemdBootEntries(DirectoryEsp(boot_dir)), booted)
    control.sync_from_loader()
    return control, control


@dataclass(frozen=True)
class NodeSlots:
    boot: BootControl
    entries: BootEntries | None
    locator: SlotLocator


def open_slots(options: NodeOptions, stack: ExitStack) -> NodeSlots:
    """The disk's slots and boot control: a disk image (``--disk``) or the running node's."""
    if options.disk is not None:
        if options.booted_slot is None:
            raise NodeError("--disk needs --booted-slot A|B (an image has no running /usr)")
        disk = stack.enter_context(GptDisk.open(options.disk, writable=True))
        boot, entries = boot_control_for(disk, options.booted_slot, options.boot_dir)
        return NodeSlots(boot, entries, ImageSlots(options.disk))
    devices = DeviceSlots()
    booted = options.booted_slot or booted_slot_of_usr(devices)
    disk = stack.enter_context(
        GptDisk.open(_parent_disk(devices.target(Slot.A).path), writable=True)
    )
    boot, entries = boot_control_for(disk, booted, options.boot_dir)
    return NodeSlots(boot, entries, devices)


def finish_first_boot(options: NodeOptions) -> bool:
    """Take Ignition's first-boot options off the loader entries (ADR 0011); False when there
    was nothing to do (already done, or not a systemd-boot Railcar disk)."""
    from railcar.image.bootcontrol import SystemdBootControl

    with ExitStack() as stack:
        boot = open_slots(options, stack).boot
        return isinstance(boot, SystemdBootControl) and boot.finish_first_boot()


def _finish_interrupted_first_boot(
    boot: BootControl, cmdline: Path = Path("/proc/cmdline")
) -> None:
    """The running node's side of ADR 0016: a first-boot flag that outlived its provisioning boot
    is removed here (railcar-first-boot.service runs only while the command line says
    ``ignition.firstboot``)."""
    from railcar.image.bootcontrol import SystemdBootControl

    if not isinstance(boot, SystemdBootControl):
        return
    try:
        if boot.finish_interrupted_first_boot(cmdline.read_text()):
            log.info("finished an interrupted first boot: first-boot flag removed from the ESP")
    except OSError as exc:  # the ESP or /proc: updates still work, so go on without it
        log.warning("could not finish an interrupted first boot: %s", exc)


def build_driver(options: NodeOptions, stack: ExitStack) -> Driver:
    """A driver over the real node (or image); resources close with ``stack``."""
    config_root = options.config_root

    def load_config() -> AgentConfig:
        return load_node_config(config_root)

    config = load_config()
    keys = trusted_keys(options)
    slots = open_slots(options, stack)
    boot, entries = slots.boot, slots.entries
    if options.disk is None:
        _finish_interrupted_first_boot(boot)
    hook: PostinstallHook | None = None
    if options.postinstall_hook:
        hook = CommandHook(options.postinstall_hook)
    elif options.disk is None:
        hook = NewUsrHook()
    installer = Installer(
        slots.locator,
        boot,
        keys,
        boot_dir=options.boot_dir,
        entries=entries,
        hook=hook,
        progress=NO_PROGRESS,
    )
    conf = config.conf
    auth = None
    if conf.download_user is not None:
        auth = (conf.download_user, conf.download_password or "")
    downloader = stack.enter_context(Downloader(auth=auth))
    io = DriverIO(
        load_config=load_config,
        exchange=_exchange,
        fetcher=downloader,
        installer=installer,
        boot=boot,
        rebooter=CommandRebooter(options.reboot_command),
        probe=SystemctlProbe(options.systemctl),
    )
    settings = DriverSettings(
        state_dir=options.state_dir,
        schedule=_schedule(options),
        initial_delay=options.initial_delay,
        reboot_required=options.reboot_required,
        health=health_policy(options, config),
        # update_engine utils.cc: a non-official image marks its error codes (flag bit 29).
        test_image=(config_root / DEV_MODE_MARKER.relative_to("/")).exists(),
    )
    return Driver(io, settings)


def split_words(value: str | None) -> tuple[str, ...]:
    return tuple(shlex.split(value)) if value else ()
