"""Payload generation and apply against pbzip2 and lbzip2 on the same bytes, in one run.

    uv run python benchmarks/payload_bench.py [--runs 3] [--work .railcar/bench]

Builds (once, cached) a 1 GiB /usr-shaped image: mkfs.erofs (lz4hc) over this machine's /usr,
minus the largest vendor trees, padded with zeros to 1 GiB like a Flatcar USR partition. Then,
interleaving the tools run by run:

* generate: ``railcar payload generate`` (signed) vs ``pbzip2 -p2 -9`` vs ``lbzip2 -n2 -9``;
* apply: ``railcar payload apply`` (signature pre-pass, apply, target verification) vs
  ``pbzip2 -d -p2`` / ``lbzip2 -d -n2`` on their own output, and ``pbzip2 -d -p2`` on exactly
  the payload's bzip2 streams (the same compressed data the applier decompresses).

Reports medians, ratios against the pbzip2 baselines and peak RSS (``/usr/bin/time``); prints
JSON with ``--json``. Nothing here asserts: figures go to docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from railcar.payload.reader import PayloadReader

IMAGE_BYTES = 1 << 30
EXCLUDES = [
    "^lib/google-cloud-sdk",
    "^lib/jvm",
    "^lib/llvm-",
    "^local",
    "^include",
    "^lib/gcc",
    "^share/doc",
    "^share/man",
    "^share/locale",
]
RAILCAR = [sys.executable, "-m", "railcar"]


def build_image(work: Path) -> Path:
    image = work / "usr-1GiB.img"
    if image.exists() and image.stat().st_size == IMAGE_BYTES:
        return image
    tmp = work / "usr.erofs.tmp"
    cmd = [
        "mkfs.erofs",
        "-zlz4hc",
        "-T0",
        *[f"--exclude-regex={e}" for e in EXCLUDES],
        str(tmp),
        "/usr",
    ]
    print("building the /usr image with mkfs.erofs (once)…", file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    size = tmp.stat().st_size
    if size > IMAGE_BYTES:
        raise SystemExit(f"erofs image is {size} bytes, over 1 GiB: add excludes")
    with open(tmp, "r+b") as f:
        f.truncate(IMAGE_BYTES)
    tmp.rename(image)
    return image


def kernel_file(work: Path) -> Path:
    for candidate in sorted(Path("/boot").glob("vmlinuz-*")):
        if os.access(candidate, os.R_OK):
            return candidate
    stand_in = work / "vmlinuz"
    if not stand_in.exists():
        stand_in.write_bytes(os.urandom(12 << 20))  # a kernel is already compressed
    return stand_in


def timed(cmd: list[str], stdout: Path | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command, measured by /usr/bin/time."""
    os.sync()  # no writeback left over from the previous command competes with this one
    report = Path(os.environ.get("TMPDIR", "/tmp")) / f"railcar-bench-time-{os.getpid()}"
    full = ["/usr/bin/time", "-o", str(report), "-f", "%e %M", *cmd]
    if stdout is None:
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL)
    else:
        with open(stdout, "wb") as out:
            subprocess.run(full, check=True, stdout=out)
    seconds, rss = report.read_text().split()[-2:]
    report.unlink()
    return float(seconds), int(rss)


def bzip2_streams(payload: Path, out: Path) -> None:
    """Concatenate the payload's REPLACE_BZ blobs: a multi-stream .bz2 of the same data."""
    with open(payload, "rb") as f, open(out, "wb") as dst:
        reader = PayloadReader(f)
        for planned, blob in reader.blobs():
            if planned.compressed:
                dst.write(blob)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(".railcar/bench"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    image, kernel = build_image(work), kernel_file(work)
    keys = work / "keys"
    if not (keys / "payload-key.pem").exists():
        subprocess.run(
            [*RAILCAR, "key", "generate", "--out", str(keys)], check=True, stdout=subprocess.DEVNULL
        )
    payload, pbz, lbz = work / "update.gz", work / "usr.pbz2", work / "usr.lbz2"
    streams, sink = work / "payload-streams.bz2", work / "sink"
    target, kernel_out = work / "usr-b.img", work / "vmlinuz-b"

    samples: dict[str, list[tuple[float, int]]] = {}

    def record(name: str, sample: tuple[float, int]) -> None:
        samples.setdefault(name, []).append(sample)

    generate_cmds = {
        "generate/railcar": (
            [
                *RAILCAR,
                "payload",
                "generate",
                "--usr",
                str(image),
                "--kernel",
                str(kernel),
                "--key",
                str(keys / "payload-key.pem"),
                "--out",
                str(payload),
            ],
            None,
        ),
        "generate/pbzip2": (["pbzip2", "-p2", "-9", "-c", str(image)], pbz),
        "generate/lbzip2": (["lbzip2", "-n2", "-9", "-c", str(image)], lbz),
    }
    apply_cmds = {
        "apply/railcar": (
            [
                *RAILCAR,
                "payload",
                "apply",
                str(payload),
                "--key",
                str(keys / "payload-key.pub.pem"),
                "--target",
                str(target),
                "--kernel-out",
                str(kernel_out),
            ],
            None,
        ),
        "apply/pbzip2": (["pbzip2", "-d", "-p2", "-c", str(pbz)], sink),
        "apply/pbzip2-payload-streams": (["pbzip2", "-d", "-p2", "-c", str(streams)], sink),
        "apply/lbzip2": (["lbzip2", "-d", "-n2", "-c", str(lbz)], sink),
    }
    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs}", file=sys.stderr)
        # Rotate the order each run so no tool always goes first or last.
        for phase in (generate_cmds, apply_cmds):
            names = list(phase)
            for name in names[run % len(names) :] + names[: run % len(names)]:
                cmd, stdout = phase[name]
                if name == "apply/railcar":
                    target.unlink(missing_ok=True)
                record(name, timed(cmd, stdout))
                sink.unlink(missing_ok=True)
            if run == 0 and phase is generate_cmds:
                bzip2_streams(payload, streams)

    if target.read_bytes() != image.read_bytes():
        raise SystemExit("apply did not reproduce the image")
    med = {k: statistics.median(s for s, _ in v) for k, v in samples.items()}
    rss = {k: max(r for _, r in v) for k, v in samples.items()}
    result = {
        "image_bytes": IMAGE_BYTES,
        "payload_bytes": payload.stat().st_size,
        "pbzip2_bytes": pbz.stat().st_size,
        "runs": args.runs,
        "median_seconds": med,
        "peak_rss_kib": rss,
        "ratios": {
            "generate railcar/pbzip2": med["generate/railcar"] / med["generate/pbzip2"],
            "generate railcar/lbzip2": med["generate/railcar"] / med["generate/lbzip2"],
            "apply railcar/pbzip2 (own output)": med["apply/railcar"] / med["apply/pbzip2"],
            "apply railcar/pbzip2 (payload streams)": med["apply/railcar"]
            / med["apply/pbzip2-payload-streams"],
            "apply railcar/lbzip2": med["apply/railcar"] / med["apply/lbzip2"],
        },
        "cores": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name, seconds in med.items():
        print(f"{name:<36} {seconds:7.2f} s   peak RSS {rss[name] / 1024:7.1f} MiB")
    for name, ratio in result["ratios"].items():
        print(f"{name:<40} {ratio:5.2f}")
    print(f"payload {result['payload_bytes']:,} bytes; pbzip2 {result['pbzip2_bytes']:,} bytes")


if __name__ == "__main__":
    main()
