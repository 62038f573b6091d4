"""What dm-verity costs a Railcar boot in this VM: /usr bytes a boot reads, and read speed
through verity against the same slot read raw, in the same guest (issue 5's boot gap).

    uv run python benchmarks/verity_cost.py --image DISK.bin [--runs 3] [--json]

Boots ``DISK.bin`` (a built ``railcar_production_image.bin``) with an Ignition config that
gives root our SSH key, reboots it once, and on that second boot (what the boot benchmark
times) reads over SSH:
- ``/sys/block/dm-N/stat`` of ``/dev/mapper/usr``: bytes the boot read through verity;
- ``dd iflag=direct`` of the first 256 MiB of ``/dev/mapper/usr`` and of the slot partition
  under it, alternating, ``--runs`` times each (page cache dropped before each);
- with ``--hashes sha256,blake2b-512``: the guest kernel's dm-verity over a 128 MiB file of
  random data held in the page cache, per hash algorithm (``veritysetup format`` in the guest),
  so the read speed is the hash's;
- with ``--options " ,--use-tasklets"``: ``veritysetup open`` options compared on the booted
  slot itself. The slot is opened a second time per option set (through a read-only loop
  device, direct I/O, as veritysetup refuses a partition in use; same hash offset and root
  hash as ``/dev/mapper/usr``), its erofs mounted read-only, the page cache dropped,
  and what a boot does most timed: starting the container daemons' binaries
  (``--version``) and reading them whole. Option sets alternate, ``--runs`` times each.

The ratio raw/verity speed is the figure (a baseline in the same guest and run); the verity
share of a boot is estimated as boot bytes × (1/verity − 1/raw). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from railcar.vm import Vm, VmConfig
from railcar.vm.hostserver import free_port
from railcar.vm.nodes import IGNITION_VERSION, Ssh, wait_boot

BOOT_TIMEOUT = 900.0
MIB = 1 << 20
READ_MIB = 256
_DD = re.compile(r"(\d+) bytes .* copied, ([0-9.]+) s")


def _config(public_key: str) -> dict[str, object]:
    return {
        "ignition": {"version": IGNITION_VERSION},
        "passwd": {"users": [{"name": "root", "sshAuthorizedKeys": [public_key]}]},
    }


def _dd(root: Ssh, device: str, *, drop: bool = True) -> float:
    """MiB/s reading up to ``READ_MIB`` MiB of ``device`` (``iflag=direct``: not from its own
    page cache); ``drop``: empty the page cache first, so what is under it is read too."""
    flush = "sync; echo 3 > /proc/sys/vm/drop_caches; " if drop else ""
    out = root.run(
        f"{flush}dd if={device} of=/dev/null bs=1M count={READ_MIB} iflag=direct 2>&1",
        timeout=900,
    )
    found = _DD.search(out)
    if found is None:
        raise SystemExit(f"dd on {device} printed no figure: {out!r}")
    return int(found.group(1)) / MIB / float(found.group(2))


def _hash_speeds(root: Ssh, hashes: list[str], runs: int) -> dict[str, list[float]]:
    """dm-verity read speed (MiB/s) per hash over a file the guest holds in its page cache."""
    data = "/var/tmp/verity-bench.data"
    root.run(f"dd if=/dev/urandom of={data} bs=1M count=128 status=none && cat {data} >/dev/null")
    speeds: dict[str, list[float]] = {}
    for name in hashes:
        tree = f"{data}.{name}"
        out = root.run(f"veritysetup format --hash={name} {data} {tree}", timeout=900)
        found = re.search(r"Root hash:\s*([0-9a-f]+)", out)
        if found is None:
            raise SystemExit(f"veritysetup format --hash={name} printed no root hash: {out!r}")
        root.run(f"veritysetup open {data} bench {tree} {found.group(1)}")
        try:
            speeds[name] = [_dd(root, "/dev/mapper/bench", drop=False) for _ in range(runs)]
        finally:
            root.run(f"veritysetup close bench; rm -f {tree}")
    root.run(f"rm -f {data}")
    return speeds


# What a boot waits for most (issue 5's boot gap): the container daemons, large Go binaries
# read through erofs and dm-verity. Paths inside the /usr filesystem.
WORKLOAD_BINARIES = ("bin/containerd", "sbin/dockerd")


def _cmdline_value(cmdline: str, key: str) -> str:
    for word in cmdline.split():
        if word.startswith(key + "="):
            return word.split("=", 1)[1]
    raise SystemExit(f"the guest's command line has no {key}=: {cmdline!r}")


Times = dict[str, dict[str, list[float]]]


def _option_times(root: Ssh, slot: str, option_sets: list[str], runs: int) -> Times:
    """Seconds to exec (``--version``) and to read the :data:`WORKLOAD_BINARIES` from a second
    mapping of the booted ``slot`` opened with each option set, caches dropped before each."""
    cmdline = root.run("cat /proc/cmdline")
    root_hash = _cmdline_value(cmdline, "verity.usrhash")
    offset = _cmdline_value(cmdline, "railcar.verity_hash_offset")
    loop = root.run(f"losetup --read-only --direct-io=on --find --show {slot}").strip()
    bins = " ".join(f"/mnt/bench/{b}" for b in WORKLOAD_BINARIES)
    execs = "; ".join(f"/mnt/bench/{b} --version >/dev/null 2>&1" for b in WORKLOAD_BINARIES)
    timed = 'a=$(date +%s.%N); {}; b=$(date +%s.%N); echo "$a $b"'
    times: Times = {o: {"exec": [], "read": []} for o in option_sets}
    root.run("mkdir -p /mnt/bench")
    for _ in range(runs):
        for options in option_sets:
            root.run(
                f"veritysetup open {options} --hash-offset={offset} {loop} bench {loop}"
                f" {root_hash} && mount -t erofs -o ro /dev/mapper/bench /mnt/bench"
            )
            try:
                for name, work in (("exec", execs), ("read", f"cat {bins} >/dev/null")):
                    out = root.run(f"sync; echo 3 > /proc/sys/vm/drop_caches; {timed.format(work)}")
                    start, end = (float(x) for x in out.split())
                    times[options][name].append(round(end - start, 3))
            finally:
                root.run("umount /mnt/bench; veritysetup close bench")
    root.run(f"losetup --detach {loop}")
    return times


def measure(
    image: Path, runs: int, work: Path, hashes: list[str], option_sets: list[str] | None = None
) -> dict[str, Any]:
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ignition = work / "config.ign"
    ignition.write_text(json.dumps(_config(key.with_suffix(".pub").read_text())))
    port = free_port()
    config = VmConfig(image=image, run_dir=work / "vm", ignition=ignition, ssh_port=port)
    with Vm(config) as vm:
        wait_boot(vm, 1, BOOT_TIMEOUT)
        root = Ssh(port, key, "root")
        root.wait(600)
        root.run("systemctl reboot || true")
        wait_boot(vm, 2, BOOT_TIMEOUT)
        root.wait(600)
        dm = root.run("basename $(readlink -f /dev/mapper/usr)").strip()
        slot = root.run(f"ls /sys/block/{dm}/slaves").split()[0]
        stat = root.run(f"cat /sys/block/{dm}/stat").split()
        uptime = float(root.run("cut -d' ' -f1 /proc/uptime"))
        verity, raw = [], []
        for _ in range(runs):
            verity.append(_dd(root, "/dev/mapper/usr"))
            raw.append(_dd(root, f"/dev/{slot}"))
        speeds = _hash_speeds(root, hashes, runs) if hashes else {}
        options = _option_times(root, f"/dev/{slot}", option_sets, runs) if option_sets else {}
    boot_mib = int(stat[2]) * 512 / MIB
    v, r = statistics.median(verity), statistics.median(raw)
    return {
        "image": str(image),
        "accel": config.accel.value,
        "boot_usr_read_mib": round(boot_mib, 1),
        "uptime_at_measure_s": uptime,
        "verity_mib_s": [round(x, 1) for x in verity],
        "raw_mib_s": [round(x, 1) for x in raw],
        "ratio raw/verity": round(r / v, 2),
        "estimated_verity_seconds_per_boot": round(boot_mib * (1 / v - 1 / r), 1),
        "hash_mib_s": {name: [round(x, 1) for x in got] for name, got in speeds.items()},
        "open_options_seconds": options,
        "open_options_medians": {
            o: {k: round(statistics.median(got), 3) for k, got in t.items()}
            for o, t in options.items()
        },
        "console": str(vm.console),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, required=True, help="a built disk image (.bin)")
    parser.add_argument("--runs", type=int, default=3, help="reads of each device")
    parser.add_argument(
        "--hashes", default="", help="comma-separated verity hashes to compare (sha256,…)"
    )
    parser.add_argument(
        "--options", default="",
        help='comma-separated veritysetup open option sets to compare (" ,--use-tasklets")',
    )  # fmt: skip
    parser.add_argument("--work", type=Path, help="run directory (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    work = args.work or Path(tempfile.mkdtemp(prefix="railcar-verity-"))
    work.mkdir(parents=True, exist_ok=True)
    hashes = [h for h in args.hashes.split(",") if h]
    option_sets = [o.strip() for o in args.options.split(",")] if args.options else []
    result = measure(args.image.resolve(), args.runs, work, hashes, option_sets)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for name, value in result.items():
            print(f"{name}: {value}")


if __name__ == "__main__":
    main()
