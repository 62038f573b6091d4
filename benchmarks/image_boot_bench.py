"""``image_bench.py boot``: the example image's boot to multi-user against the same kernel and
root filesystem booted plainly, in one run.

**Railcar**: the built disk as ``railcar vm`` boots it: OVMF, systemd-boot, the slot's unified
kernel image, /usr from erofs through dm-verity (USR-A), ROOT ext4, the OEM partition.

**Plain**: the *same staged tree* (the same cached rootfs, Railcar venv and per-build content,
/usr included) in one ext4 filesystem labelled ROOT on a one-partition GPT disk (the partition
has ROOT's type, so the image's own grow-ROOT config treats both alike), booted by the same
OVMF straight into the same kernel and initrd (QEMU ``-kernel``/``-initrd``: no boot loader,
no UKI), with Railcar's command line minus /usr, verity and Ignition. The initrd is the very
same file; its verity unit is masked (``rd.systemd.mask=``) since there is no slot to open.

Both trust the same payload key (the VM suite's, ``railcar.vm.images.suite_key``): a shipped
image is built with one, and without it the update agent would not start (ADR 0037), so the
agent starts in both kinds as it does on a node.

Both print the same ``RAILCAR-BOOTED`` line (``railcar-boot-report.service``, after
multi-user.target); the time is from QEMU's start to that line on the serial console. Same
QEMU machine, vCPUs, memory, NIC and accelerator for both.

Each disk's first boot (Railcar: Ignition with an empty config, a random disk GUID; both: ROOT
grown into 1 GiB of extra disk, SSH host keys, machine id) is timed once and then powered off
cleanly (ACPI). The measured boots are *second* boots of those disks, each on a fresh overlay,
alternated between the two. Nothing here asserts: the figures go to docs/PERFORMANCE.md.

**Variant** (``--variant SPEC``, optional): a second Railcar image, built from another spec (a
setting to try), booted in the same run as a third kind. A change worth a few seconds is
smaller than the drift of the emulated machine's speed between runs; in one run, each round
boots every kind once, so the variant is compared with the first image boot by boot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.image_build_bench import median
from railcar.gpt import PartitionType
from railcar.image import build_image, parse_spec
from railcar.image.content import customize, trust_payload_keys
from railcar.image.disk import assemble, make_ext4
from railcar.image.layout import (
    ALIGN_SECTORS,
    GPT_SECTORS,
    MIB,
    SECTOR,
    DiskLayout,
    Partition,
    derived_uuid,
)
from railcar.image.rootfs import build_rootfs, install_railcar, stage_copy
from railcar.image.spec import ImageSpec
from railcar.image.uki import pe_section
from railcar.payload.signing import FileKeySigner
from railcar.vm import Vm, VmConfig
from railcar.vm.images import suite_key
from railcar.vm.nodes import BOOTED, IGNITION_VERSION, boots
from railcar.vm.qmp import qmp

BOOT_TIMEOUT = 900.0  # s: one boot under TCG on two shared cores takes 1-3 min
POWERDOWN_TIMEOUT = 300.0
KINDS = ("railcar", "plain")
VARIANT = "variant"  # the optional third kind: another spec's Railcar image
# In the initrd: the unit that opens the booted USR slot with dm-verity (data/dracut).
VERITY_UNIT = "railcar-usr-verity.service"


# --- pure ---------------------------------------------------------------------------------------


def plain_cmdline(spec: ImageSpec) -> str:
    """The plain boot's command line: Railcar's (:func:`railcar.image.esp.kernel_cmdline`) without
    /usr, verity and Ignition, and with the initrd's verity unit masked."""
    return " ".join(
        [
            "root=LABEL=ROOT",
            "rootfstype=ext4",
            "rw",
            f"rd.systemd.mask={VERITY_UNIT}",
            "panic=10",
            "rd.emergency=reboot",
            "rd.shell=0",
            *spec.cmdline,
        ]
    )


def plain_layout(spec: ImageSpec) -> DiskLayout:
    """One partition, ROOT's type and label, as large as ROOT and one USR slot together."""
    size = (spec.partitions.root + spec.partitions.usr) * MIB // SECTOR
    root = Partition(
        number=1,
        label="ROOT",
        type=PartitionType.FLATCAR_RESIZE,
        uuid=derived_uuid(spec, "plain-partition-ROOT"),
        start=ALIGN_SECTORS,
        size=size,
    )
    end = root.start + root.size
    total = -(-(end + GPT_SECTORS) * SECTOR // MIB) * MIB // SECTOR
    return DiskLayout(derived_uuid(spec, "plain-disk"), (root,), total)


def boot_order(runs: int, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """One round per run, each round every kind once, rotated by one each round: ABBA… for two
    kinds, ABC BCA CAB… for three, so no kind always follows the same other one."""
    order: list[str] = []
    for run in range(runs):
        shift = run % len(kinds)
        order += [*kinds[shift:], *kinds[:shift]]
    return order


def expected_report(kind: str, report: dict[str, str]) -> str | None:
    """Why ``report`` is not a boot of ``kind`` (None when it is): guards against timing the
    wrong thing, e.g. a plain boot that still opened /usr with verity."""
    if report.get("multi-user") != "active":
        return f"multi-user is {report.get('multi-user')!r}"
    if kind != "plain":
        if report.get("verity") != "yes" or report.get("usr") != "/dev/mapper/usr":
            return f"/usr is {report.get('usr')!r} with verity={report.get('verity')!r}"
    elif report.get("verity") != "no" or report.get("usr") != "none":
        return f"/usr is {report.get('usr')!r} (verity={report.get('verity')!r}), not on /"
    return None


_UPTIME = re.compile(r"^\[\s*(\d+\.\d+)\] (.*)$")
SYSTEM_MODE = "running in system mode"  # systemd's banner: once in the initrd, once after
KERNEL_DONE = "Run /init as init process"  # the kernel's init done, the initramfs unpacked
RCU_STALL = "detected stall"  # "rcu: INFO: rcu_preempt self-detected stall on CPU"


def boot_phases(console: str, seconds: float) -> dict[str, float | int] | None:
    """Where one boot's ``seconds`` (QEMU start to the report) went, from the kernel's printk
    timestamps (guest uptime) on its console: ``firmware`` (everything before the kernel: OVMF,
    for Railcar also systemd-boot and the UKI stub; includes up to 0.5 s of console polling),
    ``initrd`` (kernel start to the real root's systemd), ``userspace`` (from there to the
    report's journal line). ``rcu_stalls`` counts RCU stall warnings. ``kernel`` (part of
    ``initrd``) is a control: up to the kernel starting /init both kinds run the same kernel on
    the same initrd, so a boot whose ``kernel`` is off ran on a slower emulated machine. None
    when a mark is missing (e.g. a console without timestamps)."""
    banners: list[float] = []
    report = kernel = None
    stalls = 0
    for line in console.splitlines():
        m = _UPTIME.match(line)
        if not m:
            continue
        uptime, text = float(m[1]), m[2]
        if KERNEL_DONE in text and kernel is None:
            kernel = uptime
        elif SYSTEM_MODE in text:
            banners.append(uptime)
        elif BOOTED in text and report is None:
            report = uptime
        stalls += RCU_STALL in text
    if report is None or kernel is None or len(banners) < 2:
        return None
    return {
        "firmware": round(seconds - report, 1),
        "kernel": round(kernel, 1),
        "initrd": round(banners[1], 1),
        "userspace": round(report - banners[1], 1),
        "rcu_stalls": stalls,
    }


# --- IO -----------------------------------------------------------------------------------------


class BootBench:
    def __init__(
        self, spec_path: Path, work: Path, cache: Path, variant: Path | None = None
    ) -> None:
        self.spec_path = spec_path.resolve()
        self.spec = parse_spec(self.spec_path.read_text(), path=self.spec_path)
        self.variant = variant.resolve() if variant else None
        self.kinds = (*KINDS, VARIANT) if variant else KINDS
        self.work = work.resolve() / "boot"
        self.cache = cache.resolve()
        self.disks: dict[str, Path] = {}
        self.args: dict[str, tuple[str, ...]] = {}
        self.first: dict[str, float] = {}
        self.accel = ""

    def prepare(self) -> dict[str, Any]:
        """Build the Railcar image and the plain disk (untimed) from the same staged tree."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        print("boot: building the Railcar image (warm when the cache has the rootfs)…",
              file=sys.stderr)  # fmt: skip
        signers = [FileKeySigner(suite_key(self.cache))]
        result = build_image(self.spec, self.work / "railcar-image", cache=self.cache,
                             payload_signers=signers)  # fmt: skip
        out = Path(result.output)
        print("boot: staging the same tree for the plain disk…", file=sys.stderr)
        rootfs = build_rootfs(self.spec, self.cache)
        stage = stage_copy(rootfs.tree, self.work / "plain-stage")
        install_railcar(self.spec, stage, self.cache)
        customize(self.spec, stage)
        trust_payload_keys(stage, signers)
        kernel = stage / "boot" / f"vmlinuz-{rootfs.kernel_version}"
        initrd = stage / "boot" / f"initrd.img-{rootfs.kernel_version}"
        uki = (out / "railcar_production_image.vmlinuz").read_bytes()
        same = {
            "kernel": pe_section(uki, ".linux") == kernel.read_bytes(),
            "initrd": pe_section(uki, ".initrd") == initrd.read_bytes(),
        }
        if not all(same.values()):
            raise SystemExit(f"the plain boot would not use the UKI's kernel and initrd: {same}")
        layout = plain_layout(self.spec)
        ext4 = make_ext4(self.spec, stage, self.work / "plain-root.ext4", label="ROOT",
                         size_bytes=layout.by_label("ROOT").size_bytes)  # fmt: skip
        plain = assemble(layout, {"ROOT": ext4}, self.work / "plain.bin")
        ext4.unlink()
        # the plain disk boots from these copies, so removing the stage cannot change them
        for f in (kernel, initrd):
            shutil.copyfile(f, self.work / f.name)
        shutil.rmtree(stage)
        self.disks = {"railcar": out / "railcar_production_image.bin", "plain": plain}
        self.args = {
            "railcar": (), VARIANT: (),
            "plain": ("-kernel", str(self.work / kernel.name), "-initrd",
                      str(self.work / initrd.name), "-append", plain_cmdline(self.spec)),
        }  # fmt: skip
        if self.variant:
            print(f"boot: building the variant image ({self.variant})…", file=sys.stderr)
            spec = parse_spec(self.variant.read_text(), path=self.variant)
            variant = build_image(spec, self.work / "variant-image", cache=self.cache,
                                  payload_signers=signers)  # fmt: skip
            self.disks[VARIANT] = Path(variant.output) / "railcar_production_image.bin"
        return {
            "kernel": rootfs.kernel_version,
            "rootfs_key": rootfs.key,
            "same_kernel_and_initrd_as_uki": True,
            "plain_cmdline": plain_cmdline(self.spec),
            "railcar_disk_bytes": self.disks["railcar"].stat().st_size,
            "plain_disk_bytes": plain.stat().st_size,
            "variant_spec": str(self.variant) if self.variant else None,
        }

    def _vm(self, kind: str, image: Path, run_dir: Path, *, first: bool) -> Vm:
        ignition = None
        if kind != "plain" and first:
            ignition = run_dir.parent / "empty.ign"
            ignition.write_text(json.dumps({"ignition": {"version": IGNITION_VERSION}}))
        return Vm(
            VmConfig(
                image=image,
                run_dir=run_dir,
                ignition=ignition,
                # a cloud volume 1 GiB larger than the image: ROOT grows on the first boot
                disk_size=image.stat().st_size + (1 << 30) if first else None,
                extra_args=self.args[kind],
            )
        )

    def _boot(
        self, kind: str, image: Path, run_dir: Path, *, first: bool
    ) -> tuple[float, Vm, dict[str, float | int] | None]:
        vm = self._vm(kind, image, run_dir, first=first)
        self.accel = vm.config.accel.value
        with vm:
            seconds = vm.wait_for(BOOTED, BOOT_TIMEOUT)
            time.sleep(1)  # the report's other copy (through the journal) may still be coming
            report = boots(vm)[0]
            phases = boot_phases(vm.console_text(), seconds)
            wrong = expected_report(kind, report)
            if wrong:
                raise SystemExit(f"{kind} boot: {wrong}; console: {vm.console}")
            if first:
                qmp(vm.qmp_socket, {"execute": "system_powerdown"})
                assert vm.proc is not None
                vm.proc.wait(timeout=POWERDOWN_TIMEOUT)
        return seconds, vm, phases

    def first_boots(self) -> dict[str, float]:
        """Each disk's first boot, timed once; its disk afterwards is what later boots start
        from (the overlay, backed by the built image)."""
        for kind in self.kinds:
            print(f"boot: first boot of {kind}…", file=sys.stderr)
            run_dir = self.work / f"{kind}-first"
            seconds, vm, _ = self._boot(kind, self.disks[kind], run_dir, first=True)
            booted = self.work / f"{kind}-booted-once.qcow2"
            vm.overlay.rename(booted)
            self.disks[kind] = booted
            self.first[kind] = round(seconds, 1)
            print(f"boot: first boot of {kind}: {seconds:.1f} s", file=sys.stderr)
        return self.first

    def measure(self, runs: int) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
        """Second boots: seconds per kind, and each boot's :func:`boot_phases`."""
        samples: dict[str, list[float]] = {k: [] for k in self.kinds}
        phases: dict[str, list[Any]] = {k: [] for k in self.kinds}
        order = boot_order(runs, self.kinds)
        for i, kind in enumerate(order):
            run_dir = self.work / f"{kind}-{i}"
            seconds, _, parts = self._boot(kind, self.disks[kind], run_dir, first=False)
            samples[kind].append(round(seconds, 1))
            phases[kind].append(parts)
            print(f"boot {i + 1}/{len(order)}: {kind} {seconds:.1f} s {parts}", file=sys.stderr)
            # the console stays for reading the boot afterwards; the overlay (GBs) goes
            shutil.copyfile(run_dir / "console.log", self.work / f"{kind}-{i}.console.log")
            shutil.rmtree(run_dir)
        return samples, phases


def _pair_ratios(samples: dict[str, list[float]], kind: str, base: str) -> list[float]:
    return [round(a / b, 3) for a, b in zip(samples[kind], samples[base], strict=True)]


def summarize(samples: dict[str, list[float]]) -> dict[str, Any]:
    """The goal's figure (ratio of the medians), and the same ratio per round of boots.

    The n-th boots of each kind are one round of :func:`boot_order`, booted one after the
    other. The emulated machine's speed drifts over a run by more than the goal's margin; a
    round's ratio sees less of that drift than the medians, taken minutes apart, do. With a
    variant, its ratio to the Railcar image is given by medians and per round too.
    """
    med = {k: median(v) for k, v in samples.items()}
    pairs = _pair_ratios(samples, "railcar", "plain")
    out = {
        "second_boot_seconds": samples,
        "median_seconds": {k: round(v, 1) for k, v in med.items()},
        "ratio railcar/plain": round(med["railcar"] / med["plain"], 3),
        "pair_ratios": pairs,
        "median_pair_ratio": round(median(pairs), 3),
        "goal": 1.1,
        "cores": os.cpu_count(),
    }
    if VARIANT in samples:
        against = _pair_ratios(samples, VARIANT, "railcar")
        out |= {
            "ratio variant/railcar": round(med[VARIANT] / med["railcar"], 3),
            "variant_pair_ratios": against,
            "median_variant_pair_ratio": round(median(against), 3),
        }
    return out


def phase_medians(phases: dict[str, list[Any]]) -> dict[str, dict[str, float]]:
    """Per kind, the median of each :func:`boot_phases` figure over the boots that have them."""
    out: dict[str, dict[str, float]] = {}
    for kind, boots_ in phases.items():
        split = [p for p in boots_ if p]
        names = split[0].keys() if split else ()
        out[kind] = {n: round(median(p[n] for p in split), 2) for n in names}
    return out
