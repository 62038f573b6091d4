"""What a build adds to its staged copy of the cached root filesystem.

Everything here depends on the spec's cheap settings (version, units, files, update.conf), so
it runs on every build, on a hard-linked copy (files are replaced, never written into):

* Railcar's own units (agent, boot report) and the spec's units, enabled statically in
  ``/usr/lib/systemd/system/*.wants`` so /usr alone decides what runs;
* ``/usr/lib/os-release`` (spec §5.4 fields), ``/usr/lib/railcar/release`` (what the agent
  reports), ``/usr/share/railcar/update.conf``;
* an empty ``/etc/machine-id`` (first boot makes one), ``/etc/fstab``, the hostname;
* the factory copy of ``/etc`` in ``/usr/share/factory/etc`` plus a tmpfiles.d file that
  restores any missing top-level entry of ``/etc`` from it at boot;
* the D-Bus policy of the agent when the Railcar package ships one.
"""

from __future__ import annotations

import configparser
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from railcar.image.errors import RootfsError, SpecError
from railcar.image.rootfs import data_dir, project_root, replace_file
from railcar.image.spec import ImageSpec
from railcar.payload.signing import PayloadSigner
from railcar.runner import run

SYSTEMD_UNITS = "usr/lib/systemd/system"
FACTORY_ETC = "usr/share/factory/etc"
_OWN_UNITS = (
    "railcar-agent.service",
    "railcar-boot-report.service",
    "railcar-ssh-keygen.service",
    "railcar-first-boot.service",
)
# Files in /etc that belong to one machine, not to the image.
_NOT_FACTORY = {"machine-id", "fstab", "hostname", "resolv.conf", "mtab"}


def os_release(spec: ImageSpec) -> str:
    fields = {
        "NAME": "Railcar",
        "ID": spec.name,
        "ID_LIKE": "debian",
        "VERSION": spec.version,
        "VERSION_ID": spec.version,
        "BUILD_ID": str(spec.source_date_epoch),
        "PRETTY_NAME": f"Railcar {spec.version} ({spec.suite})",
        "SYSEXT_LEVEL": "1.0",
        "RAILCAR_BOARD": spec.board,
    }
    return "".join(f'{k}="{v}"\n' for k, v in fields.items())


def release_file(spec: ImageSpec) -> str:
    """Read by the agent (railcar.agent.config): version, board, application id."""
    return (
        f"RAILCAR_RELEASE_VERSION={spec.version}\n"
        f"RAILCAR_RELEASE_BOARD={spec.board}\n"
        f"RAILCAR_RELEASE_APPID={spec.app_id}\n"
    )


def _wanted_by(unit_file: Path) -> list[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(unit_file.read_text())
    except configparser.Error as exc:
        raise RootfsError(f"cannot read [Install] of {unit_file.name}: {exc}") from None
    if not parser.has_section("Install"):
        return []
    return [t for key in ("WantedBy", "RequiredBy") for t in parser["Install"].get(key, "").split()]


def enable_unit(stage: Path, unit: str) -> None:
    """Enable ``unit`` with ``.wants`` links under /usr/lib/systemd/system."""
    units = stage / SYSTEMD_UNITS
    path = units / unit
    if not path.exists():
        raise SpecError(
            f"content.enable_units: {unit} is not in the image",
            hint="is the package that ships it in packages.include?",
        )
    targets = _wanted_by(path.resolve() if not path.is_symlink() else units / path.readlink())
    if not targets:
        raise SpecError(f"content.enable_units: {unit} has no WantedBy= to enable it by")
    for target in targets:
        link = units / f"{target}.wants" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(f"../{unit}")


def disable_unit(stage: Path, unit: str) -> None:
    """Remove every ``.wants``/``.requires`` link to ``unit``, in /etc (where packages'
    maintainer scripts enable their units) and in /usr."""
    if unit in _OWN_UNITS:
        raise SpecError(
            f"content.disable_units: {unit} is Railcar's own; expected a unit of a package"
        )
    places = [p for p in (stage / "etc/systemd/system", stage / SYSTEMD_UNITS) if p.is_dir()]
    # lexists: maintainer scripts link to absolute paths, which dangle outside the image.
    if not any(os.path.lexists(place / unit) for place in places):
        raise SpecError(
            f"content.disable_units: {unit} is not in the image",
            hint="is the package that ships it in packages.include?",
        )
    for place in places:
        for wants in place.iterdir():
            link = wants / unit
            if wants.name.endswith((".wants", ".requires")) and os.path.lexists(link):
                link.unlink()


def _install_own_units(stage: Path) -> None:
    units = data_dir() / "units"
    for unit in _OWN_UNITS:
        replace_file(stage / SYSTEMD_UNITS / unit, (units / unit).read_bytes())
    replace_file(stage / "usr/lib/railcar/boot-report", (units / "boot-report").read_bytes(), 0o755)
    replace_file(
        stage / "usr/lib/systemd/network/80-railcar-dhcp.network",
        (units / "80-railcar-dhcp.network").read_bytes(),
    )
    policy = project_root() / "src/railcar/agent/data/com.coreos.update1.conf"
    if policy.is_file():
        replace_file(
            stage / "usr/share/dbus-1/system.d/com.coreos.update1.conf", policy.read_bytes()
        )


def factory_line(entry: str, path: Path) -> str:
    """The tmpfiles.d(5) line that restores ``/etc/entry`` (``path`` in the stage) when missing.

    A directory or file is copied from the factory copy (``C``). A symlink is made again with
    its own target (``L``): copying it would resolve a relative target such as Debian's
    ``os-release -> ../usr/lib/os-release`` from the factory directory, where it leads nowhere
    (tmpfiles then logged "Failed to stat" on every boot and restored nothing)."""
    if path.is_symlink():
        return f"L /etc/{entry} - - - - {os.readlink(path).replace('%', '%%')}"
    return f"C /etc/{entry} - - - -"


def _factory_etc(stage: Path) -> None:
    factory = stage / FACTORY_ETC
    shutil.rmtree(factory, ignore_errors=True)
    factory.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", "--link", stage / "etc", factory])
    lines = ["# Railcar: restore /etc entries missing on ROOT from the factory copy in /usr."]
    for entry in sorted(p.name for p in (stage / "etc").iterdir()):
        if entry in _NOT_FACTORY:
            (factory / entry).unlink(missing_ok=True)
            continue
        lines.append(factory_line(entry, stage / "etc" / entry))
    replace_file(stage / "usr/lib/tmpfiles.d/railcar-etc.conf", ("\n".join(lines) + "\n").encode())


def _boot_assessment(stage: Path) -> None:
    """The agent, not systemd-bless-boot, decides whether a trial boot was good (ADR 0011).

    systemd-boot's counted entries make systemd-bless-boot-generator pull in
    systemd-bless-boot.service, which would rename the entry to "good" as soon as
    boot-complete.target is reached — even when the agent's health gate then fails, leaving a
    bad slot that boots forever. It is masked; boot-complete.target is still reached on every
    boot (wanted by multi-user.target) because the agent's gate waits for it.
    """
    mask = stage / "etc/systemd/system/systemd-bless-boot.service"
    mask.parent.mkdir(parents=True, exist_ok=True)
    mask.unlink(missing_ok=True)
    mask.symlink_to("/dev/null")
    wants = stage / SYSTEMD_UNITS / "multi-user.target.wants" / "boot-complete.target"
    wants.parent.mkdir(parents=True, exist_ok=True)
    wants.unlink(missing_ok=True)
    wants.symlink_to("../boot-complete.target")


def customize(spec: ImageSpec, stage: Path) -> None:
    """Apply the spec's per-build content to ``stage`` (a hard-linked copy of the rootfs)."""
    _install_own_units(stage)
    # The spec's files first: they may add the units enable_units names.
    for extra in spec.files:
        replace_file(stage / str(extra.target).lstrip("/"), extra.source.read_bytes(), extra.mode)
    for unit in (*_OWN_UNITS, "systemd-networkd.service", *spec.enable_units):
        enable_unit(stage, unit)
    for unit in spec.disable_units:
        disable_unit(stage, unit)
    replace_file(stage / "usr/lib/os-release", os_release(spec).encode())
    replace_file(stage / "usr/lib/railcar/release", release_file(spec).encode())
    replace_file(
        stage / "usr/share/railcar/update.conf",
        f"SERVER={spec.update_server}\nGROUP={spec.update_group}\n".encode(),
    )
    _boot_assessment(stage)
    oem = stage / "usr/share/oem"
    if not oem.is_symlink():
        shutil.rmtree(oem, ignore_errors=True)
        oem.symlink_to("../../oem")  # Flatcar's compat link: /usr/share/oem -> /oem
    replace_file(stage / "etc/machine-id", b"")
    for key in (stage / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # one machine's keys, made at first boot (railcar-ssh-keygen.service)
    replace_file(stage / "etc/hostname", f"{spec.name}\n".encode())
    if not (stage / "etc/selinux/config").exists():
        # Debian's Ignition reads SELINUXTYPE here before relabeling what it wrote (a no-op in
        # Railcar's initrd: ADR 0016); the OS has no SELinux, and says so.
        replace_file(stage / "etc/selinux/config", b"SELINUX=disabled\nSELINUXTYPE=default\n")
    if (stage / "etc/ssh/sshd_config.d").is_dir():
        # Ignition 2.14 writes users' keys to ~/.ssh/authorized_keys.d/ignition (its
        # authorized-keys fragment), which Debian's sshd does not read by default.
        replace_file(
            stage / "etc/ssh/sshd_config.d/railcar-ignition.conf",
            b"AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys.d/ignition\n",
        )
    replace_file(
        stage / "etc/fstab",
        b"# / and /usr come from the kernel command line (root=, mount.usr=); the ESP is\n"
        b"# mounted at /boot by systemd-gpt-auto-generator. / grows with its partition.\n"
        b"LABEL=ROOT / ext4 defaults,x-systemd.growfs 0 1\n",
    )
    replace_file(
        stage / "usr/lib/repart.d/50-root.conf",
        (data_dir() / "repart" / "50-root.conf").read_bytes(),
    )
    _factory_etc(stage)


PAYLOAD_KEY = "usr/share/railcar/payload-key.pub.pem"


def trust_payload_keys(stage: Path, signers: Sequence[PayloadSigner]) -> None:
    """Install the signers' public keys where the agent looks for trusted payload keys."""
    pems = []
    for signer in signers:
        key = signer.public_key()
        if key is None:
            raise SpecError(f"cannot trust {signer.description}: its public key is unknown")
        pems.append(
            key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    if pems:
        replace_file(stage / PAYLOAD_KEY, b"".join(pems))


def root_tree(stage: Path, dest: Path) -> Path:
    """The ROOT filesystem's tree: ``stage`` without /usr and /boot contents (hard links)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for entry in stage.iterdir():
        if entry.name in ("usr", "boot"):
            continue
        run(["cp", "-a", "--link", entry, dest / entry.name])
    for mountpoint in ("usr", "boot", "oem"):
        (dest / mountpoint).mkdir(exist_ok=True)
    return dest
