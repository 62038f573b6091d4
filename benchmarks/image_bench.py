"""Image benchmarks of issue 5: build times against Debian's mkosi, boot time against a plain boot.

    uv run python benchmarks/image_bench.py build [--runs 1] [--work .railcar/bench-image]
    uv run python benchmarks/image_bench.py boot  [--runs 3] [--work .railcar/bench-image]
                                                  [--variant SPEC]

``build`` (root; mkosi 14 from Debian: ``apt-get install mkosi``): per run a cold ``railcar
build`` of the example spec from an empty cache, a warm rebuild after a one-line spec change,
and mkosi building the same suite and packages; prints each time and the ratios warm/cold
(goal ≤ 0.25) and Railcar cold/mkosi (goal ≤ 1.0). Details: ``benchmarks/image_build_bench.py``.

``boot`` (QEMU, OVMF; TCG without KVM): the example image against the same kernel, initrd and
staged tree booted plainly from one ext4 disk; median seconds from QEMU's start to the
``RAILCAR-BOOTED`` line of a second boot, and the ratio (goal ≤ 1.1); with ``--variant``, the
image of another spec too, in the same rounds. Details: ``benchmarks/image_boot_bench.py``.

Both print JSON with ``--json``. Nothing here asserts: figures go to docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.image_boot_bench import BootBench, phase_medians
from benchmarks.image_boot_bench import summarize as summarize_boots
from benchmarks.image_build_bench import BuildBench
from benchmarks.image_build_bench import summarize as summarize_builds

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "railcar.toml"


def _context() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
    }


def build(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("mkosi") is None:
        raise SystemExit("mkosi is not installed: apt-get install mkosi (Debian 12: mkosi 14)")
    if os.geteuid() != 0:
        raise SystemExit("the build benchmark needs root (mmdebstrap --mode=root, mkosi)")
    bench = BuildBench(args.spec, args.work)
    bench.prime()
    started = _context()
    runs = [bench.run(n) for n in range(args.runs)]
    return {"started": started, "ended": _context(), "mirror": bench.mirror, "runs": runs,
            **summarize_builds(runs)}  # fmt: skip


def boot(args: argparse.Namespace) -> dict[str, Any]:
    cache = args.cache or args.work / "prime" / "railcar-cache"
    bench = BootBench(args.spec, args.work, cache, variant=args.variant)
    prepared = bench.prepare()
    started = _context()
    first = bench.first_boots()
    samples, phases = bench.measure(args.runs)
    return {"started": started, "ended": _context(), "accel": bench.accel, **prepared,
            "first_boot_seconds": first, **summarize_boots(samples),
            "second_boot_phases": phases, "phase_medians": phase_medians(phases)}  # fmt: skip


def _print_build(result: dict[str, Any]) -> None:
    for run in result["runs"]:
        print(f"run order {run['order']}: cold {run['cold_seconds']:.1f} s, warm "
              f"{run['warm_seconds']:.1f} s, mkosi {run['mkosi_seconds']:.1f} s")  # fmt: skip
        diff = run["packages"]
        other = len(diff["other_version"])
        print(f"  packages: {diff['common']} in both, only mkosi {diff['only_mkosi']}, only "
              f"Railcar {diff['only_railcar']}, {other} other versions")  # fmt: skip
        print(f"  .debs downloaded during the timed builds: {run['downloaded_debs']}")
    for name, seconds in result["median_seconds"].items():
        print(f"{name:<8} {seconds:7.1f} s (median)")
    for name, ratio in result["ratios"].items():
        print(f"{name:<20} {ratio:5.2f}   goal ≤ {result['goals'][name]}")
        print(f"  per run: {result['run_ratios'][name]},"
              f" median {result['median_run_ratios'][name]:.2f}")  # fmt: skip


def _print_boot(result: dict[str, Any]) -> None:
    print(f"accelerator {result['accel']}; kernel {result['kernel']}")
    print(f"first boots (once each): {result['first_boot_seconds']}")
    print(f"second boots: {result['second_boot_seconds']}")
    for kind, parts in result["second_boot_phases"].items():
        print(f"  {kind} phases (s): {parts}")
    for kind, medians in result["phase_medians"].items():
        print(f"  {kind} phase medians (s): {medians}")
    for name, seconds in result["median_seconds"].items():
        print(f"{name:<8} {seconds:7.1f} s (median, QEMU start to RAILCAR-BOOTED)")
    print(f"railcar/plain {result['ratio railcar/plain']:5.2f}   goal ≤ {result['goal']}")
    print(f"  per round of boots: {result['pair_ratios']},"
          f" median {result['median_pair_ratio']:.2f}")  # fmt: skip
    if "ratio variant/railcar" in result:
        print(f"variant/railcar {result['ratio variant/railcar']:5.2f};"
              f" per round: {result['variant_pair_ratios']},"
              f" median {result['median_variant_pair_ratio']:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path(".railcar/bench-image"))
    parser.add_argument("--spec", type=Path, default=EXAMPLE)
    parser.add_argument("--json", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="cold and warm railcar build against mkosi")
    b.add_argument("--runs", type=int, default=1)
    v = sub.add_parser("boot", help="boot to multi-user against the same tree booted plainly")
    v.add_argument("--runs", type=int, default=3, help="second boots of each kind")
    v.add_argument("--cache", type=Path, default=None,
                   help="Railcar build cache (default: the build benchmark's)")  # fmt: skip
    v.add_argument("--variant", type=Path, default=None, metavar="SPEC",
                   help="also boot this spec's image in every round, as a third kind")  # fmt: skip
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    result = build(args) if args.command == "build" else boot(args)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.command == "build":
        _print_build(result)
    else:
        _print_boot(result)


if __name__ == "__main__":
    main()
