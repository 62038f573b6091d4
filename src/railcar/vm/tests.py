"""The update tests: real nodes updating from a real server, as Flatcar's kola
``cl.update.payload`` does (issue 6). Registered with :mod:`railcar.vm.suite`; run them with
``railcar test`` (or through pytest, ``tests/vm/test_update.py``).

Each test starts a host-side server in its output directory, publishes payloads of the suite's
images (:mod:`railcar.vm.images`) and boots nodes whose Ignition config points their agent at
it (:mod:`railcar.vm.nodes`). The console's boot reports and the server's records are the
evidence; ``cgpt`` reads the disk after shutdown.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from railcar.omaha.model import ErrorCode, EventResult, EventType, mask_error_code
from railcar.server.vocab import InstanceStatus
from railcar.vm.hostserver import HostServer, UnknownInstanceError
from railcar.vm.images import CANARY_UNIT, PAYLOAD_MIN_SAVING, SuiteImage, suite_image
from railcar.vm.nodes import boots, expect, node, node_config, poll, wait_boot
from railcar.vm.qemu import Vm
from railcar.vm.suite import VmContext, vm_test

# One boot under TCG on two shared cores takes 1.5-4 min; an install of the 1 GiB /usr a few.
BOOT = 900.0
UPDATE = 1500.0
USR_A, USR_B = 3, 4  # partition numbers (spec §1)


def _cgpt(disk: Path, number: int) -> dict[str, int]:
    def field(flag: str) -> int:
        done = subprocess.run(["cgpt", "show", "-i", str(number), flag, str(disk)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        return int(done.stdout.strip())

    return {"priority": field("-P"), "tries": field("-T"), "successful": field("-S")}


def _events(server: HostServer, machine: str) -> list[tuple[int, int, int | None]]:
    """The node's events so far; none while its first check has not reached the server (a
    quick boot reports before the agent's first check)."""
    try:
        events = server.events(machine)
    except UnknownInstanceError:
        return []
    return [
        (e["event_type"], e["event_result"],
         None if e["error_code"] is None else mask_error_code(e["error_code"]))
        for e in events
    ]  # fmt: skip


def _instance_is(server: HostServer, machine: str, status: int, version: str) -> Any:
    def probe() -> dict[str, Any] | None:
        try:
            found = server.instance(machine)
        except UnknownInstanceError:
            return None
        return found if found["status"] == status and found["version"] == version else None

    return probe


def _booted(vm: Vm, number: int, slot: str, version: str, ctx: VmContext) -> dict[str, str]:
    report = wait_boot(vm, number, min(BOOT, ctx.remaining()))
    ctx.log(f"boot {number}: {' '.join(f'{k}={v}' for k, v in report.items())}")
    expect(report.get("slot") == slot and report.get("version") == version,
           f"boot {number}: expected slot {slot} version {version}, got slot "
           f"{report.get('slot')} version {report.get('version')}")  # fmt: skip
    expect(report.get("verity") == "yes" and report.get("readonly") == "yes",
           f"boot {number}: /usr is not a read-only verity device: {report}")  # fmt: skip
    return report


@vm_test("update.ab", timeout=2400)
def update_ab(ctx: VmContext) -> None:
    """v1 updates itself to v2 in USR-B, reboots into it, commits it; the server shows Complete."""
    v1, v2 = suite_image("1.0.0"), suite_image("2.0.0")
    with HostServer(ctx.output) as server:
        server.publish(v2.payload, "2.0.0")
        ctx.log(f"server {server.base} offers 2.0.0 on stable")
        with node(ctx.output / "node", v1.disk, node_config(server)) as vm:
            machine = _booted(vm, 1, "A", "1.0.0", ctx)["machine"]
            _booted(vm, 2, "B", "2.0.0", ctx)
            instance = poll(
                "the instance to be Complete on 2.0.0",
                min(UPDATE, ctx.remaining()),
                _instance_is(server, machine, InstanceStatus.COMPLETE, "2.0.0"),
            )
            ctx.log(f"instance {instance}")
            events = server.events(machine)
            kinds = [(e["event_type"], e["event_result"]) for e in events]
            expect(kinds == [(EventType.UPDATE_DOWNLOAD_STARTED, EventResult.SUCCESS),
                             (EventType.UPDATE_DOWNLOAD_FINISHED, EventResult.SUCCESS),
                             (EventType.UPDATE_COMPLETE, EventResult.SUCCESS),
                             (EventType.UPDATE_COMPLETE, EventResult.SUCCESS_REBOOT)],
                   f"events {kinds}, expected 13/1, 14/1, 3/1, 3/2")  # fmt: skip
            expect(
                events[-1]["previous_version"] == "1.0.0",
                f"3/2 previousversion {events[-1]['previous_version']!r}, expected 1.0.0",
            )
        after = vm.export_disk(ctx.output / "after.bin")
        a, b = _cgpt(after, USR_A), _cgpt(after, USR_B)
        ctx.log(f"cgpt USR-A {a} USR-B {b}")
        expect(
            b["priority"] == 2 and b["successful"] == 1 and a["priority"] == 1,
            f"after the update cgpt shows USR-A {a}, USR-B {b}; expected B P2 S1, A P1",
        )
        after.unlink()


def _has_event(server: HostServer, machine: str, event: tuple[int, int, int | None]) -> Any:
    return lambda: event in _events(server, machine)


@vm_test("update.rollback", timeout=3600)
def update_rollback(ctx: VmContext) -> None:
    """Bad v3 (health gate) and v3b (verity): back on v1 alone, failures recorded, no loop.

    v3's /usr boots but a unit the health gate requires fails; v3b's /usr fails verity and the
    kernel panics. Each time the node returns to v1 without human action, the server records
    the failure, and the node does not install the version again."""
    v1, v3, v3b = suite_image("1.0.0"), suite_image("3.0.0"), suite_image("3.0.1")
    rollback = (EventType.UPDATE_COMPLETE, EventResult.ERROR, ErrorCode.ROLLBACK)
    with HostServer(ctx.output) as server:
        server.publish(v3.payload, "3.0.0")
        # Checks every 10 s: the test waits twice for three checks after a rollback.
        config = node_config(server, interval=10, health_units=(CANARY_UNIT,))
        with node(ctx.output / "node", v1.disk, config) as vm:
            machine = _booted(vm, 1, "A", "1.0.0", ctx)["machine"]
            # v3's trial boot: /usr is fine, the canary unit fails, the gate refuses to commit.
            _tried_and_back(ctx, vm, v3)
            poll("3.0.0's rollback report", 300, _has_event(server, machine, rollback))
            _not_reinstalled(ctx, server, machine, "3.0.0")

            # v3b: its /usr fails verity, the kernel panics, the loader falls back by itself.
            panics = vm.console_text().count("Kernel panic")
            server.publish(v3b.payload, "3.0.1")
            _tried_and_back(ctx, vm, v3b)
            expect(vm.console_text().count("Kernel panic") > panics,
                   "the node came back on A without 3.0.1's boot having failed")  # fmt: skip
            poll("the rollback from 3.0.1 in the node's requests", 300,
                 lambda: "3.0.1" in server.instance(machine)["rolled_back_from"])  # fmt: skip
            _not_reinstalled(ctx, server, machine, "3.0.1")
        expect(
            len(_events_of(server, machine, rollback)) == 2,
            f"expected two rollback reports, got events {_events(server, machine)}",
        )


def _tried_and_back(ctx: VmContext, vm: Vm, bad: SuiteImage) -> None:
    """The node booted ``bad``'s kernel (its root hash on the console's command line), then came
    back to v1 in slot A with no help."""
    before = len(boots(vm))
    marker = f"verity.usrhash={bad.build.root_hash}"
    poll(f"{bad.version}'s kernel to start", min(UPDATE, ctx.remaining()),
         lambda: marker in vm.console_text(), every=5)  # fmt: skip
    ctx.log(f"{bad.version}: its kernel started (trial boot)")

    def back_on_a() -> bool:
        reports = boots(vm)[before:]
        return bool(reports) and reports[-1].get("slot") == "A"

    poll(f"the node back on A after {bad.version}", min(BOOT * 2, ctx.remaining()), back_on_a,
         every=5)  # fmt: skip
    for report in boots(vm)[before:]:
        ctx.log(f"boot: {' '.join(f'{k}={v}' for k, v in report.items())}")
    last = boots(vm)[-1]
    expect(last.get("version") == "1.0.0" and last.get("verity") == "yes",
           f"after {bad.version} the node is on {last}")  # fmt: skip


def _events_of(server: HostServer, machine: str, event: tuple[int, int, int | None]) -> list[Any]:
    return [e for e in _events(server, machine) if e == event]


def _not_reinstalled(ctx: VmContext, server: HostServer, machine: str, version: str) -> None:
    """The node says it rolled back from ``version`` and, over several more checks while the
    server still offers it, does not download it again."""
    poll(f"{version} in the node's rolled-back list", 300,
         lambda: version in server.instance(machine)["rolled_back_from"])  # fmt: skip
    started = EventType.UPDATE_DOWNLOAD_STARTED, EventResult.SUCCESS, None
    before = len(_events_of(server, machine, started))
    # Three more checks (20 s apart) answered with the same offer.
    checks = server.update_checks()
    poll("three more update checks", 300, lambda: server.update_checks() >= checks + 3)
    after = len(_events_of(server, machine, started))
    ctx.log(f"{version}: rolled back, {after - before} downloads over three more checks")
    expect(after == before, f"{version} was downloaded again after the rollback")


@vm_test("update.tampered", timeout=2400)
def update_tampered(ctx: VmContext) -> None:
    """Payloads altered after signing or signed by an untrusted key are refused before install.

    The node reports each refusal, stays on v1, and its slots are untouched."""
    from railcar.payload.generate import generate_payload
    from railcar.payload.signing import FileKeySigner
    from railcar.release.keys import generate_key

    v1, v2 = suite_image("1.0.0"), suite_image("2.0.0")
    tampered = ctx.output / "tampered.gz"
    data = bytearray(v2.payload.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit inside the /usr data blobs
    tampered.write_bytes(bytes(data))
    del data
    untrusted_key = generate_key(ctx.output / "untrusted-key", overwrite=True).private_path
    untrusted = ctx.output / "untrusted.gz"
    build = Path(v2.build.output)
    generate_payload(build / "railcar_production_update.bin",
                     build / "railcar_production_image.vmlinuz", untrusted,
                     [FileKeySigner(untrusted_key)], min_saving=PAYLOAD_MIN_SAVING)  # fmt: skip

    refused = {ErrorCode.DOWNLOAD_PAYLOAD_VERIFICATION_ERROR, 18}  # 18: pub key verification
    with HostServer(ctx.output) as server:
        server.publish(tampered, "2.0.0")
        with node(ctx.output / "node", v1.disk, node_config(server)) as vm:
            machine = _booted(vm, 1, "A", "1.0.0", ctx)["machine"]

            def errors() -> list[tuple[int, int, int | None]]:
                return [e for e in _events(server, machine)
                        if e[:2] == (EventType.UPDATE_COMPLETE, EventResult.ERROR)]  # fmt: skip

            first = poll("the tampered payload's error report", UPDATE, errors)
            ctx.log(f"tampered: {first}")
            server.publish(untrusted, "2.0.1")
            both = poll("the untrusted payload's error report", UPDATE,
                        lambda: errors() if len(errors()) >= 2 else None)  # fmt: skip
            ctx.log(f"untrusted: {both[1]}")
            for error in both:
                expect(error[2] in refused, f"error code {error[2]}, expected one of {refused}")
            expect(server.instance(machine)["version"] == "1.0.0", "the node left 1.0.0")
            expect(len(boots(vm)) == 1, f"the node rebooted: {boots(vm)}")
        after = vm.export_disk(ctx.output / "after.bin")
        a, b = _cgpt(after, USR_A), _cgpt(after, USR_B)
        ctx.log(f"cgpt USR-A {a} USR-B {b}")
        expect(a == {"priority": 1, "tries": 0, "successful": 1} and b["priority"] == 0,
               f"slots changed: USR-A {a}, USR-B {b}")  # fmt: skip
        after.unlink()


# Seconds: four check intervals (20 s), so a held node asks several times per period, and
# shorter than a whole update under TCG. The update timeout is the same, so a node still
# installing stops counting as in progress when the next period starts (Nebraska's
# update_timeout) and the three updates overlap. (150 s until the suite had to get quicker.)
POLICY_PERIOD = 90


@vm_test("update.policy", timeout=3600)
def update_policy(ctx: VmContext) -> None:
    """Three nodes, one update per period: one grant per period, the others held, all end on v2.

    The nodes told noupdate are On hold in their history until a later period grants them.
    Updates are enabled only once all three have booted: under load their first boots can end
    minutes apart, and a node first asking after the first period would never be held."""
    from contextlib import ExitStack

    v1, v2 = suite_image("1.0.0"), suite_image("2.0.0")
    with HostServer(ctx.output) as server:
        published = server.publish(v2.payload, "2.0.0")
        group = published["group_id"]
        period = {"period_interval_s": POLICY_PERIOD, "update_timeout_s": POLICY_PERIOD}
        server.set_policy(group, max_updates_per_period=1, updates_enabled=False, **period)
        with ExitStack() as stack:
            # One vCPU each: three guests share the host's two cores, and a guest whose
            # vCPUs are descheduled in turn spins on its own locks under TCG.
            vms = [stack.enter_context(node(ctx.output / f"node{i}", v1.disk,
                                            node_config(server), memory_mib=768, cpus=1))
                   for i in range(3)]  # fmt: skip
            machines = [_booted(vm, 1, "A", "1.0.0", ctx)["machine"] for vm in vms]
            expect(len(set(machines)) == 3, f"machine ids not distinct: {machines}")
            server.set_policy(group, updates_enabled=True)
            ctx.log("updates enabled for the group")
            for vm, machine in zip(vms, machines, strict=True):
                _booted(vm, 2, "B", "2.0.0", ctx)
                poll(
                    f"{machine} Complete on 2.0.0",
                    UPDATE,
                    _instance_is(server, machine, InstanceStatus.COMPLETE, "2.0.0"),
                )
            grants = []
            held = 0
            for machine in machines:
                history = server.instance(machine)["history"]
                statuses = [h["status"] for h in history]
                held += InstanceStatus.ON_HOLD in statuses
                grants += [h["created_ts"] for h in history
                           if h["status"] == InstanceStatus.UPDATE_GRANTED]  # fmt: skip
            ctx.log(f"grants at {sorted(grants)}; {held} nodes were held")
    _check_one_per_period(sorted(grants), held)


def _check_one_per_period(grants: list[str], held: int) -> None:
    import itertools
    from datetime import datetime

    expect(len(grants) == 3, f"expected 3 grants (one per node), got {len(grants)}")
    times = [datetime.fromisoformat(g) for g in grants]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    expect(all(gap >= POLICY_PERIOD for gap in gaps),
           f"two grants within one {POLICY_PERIOD} s period: gaps {gaps}")  # fmt: skip
    expect(held >= 2, f"only {held} nodes were told noupdate while another was granted")
