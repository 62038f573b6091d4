"""A description of a payload for people and scripts (``railcar payload inspect``).

Reads the header and manifest, seeks to the signature blob, and reports without reading the
data; hashes are checked by ``verify``, not here.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

from railcar.payload.errors import PayloadError
from railcar.payload.layout import PayloadLayout, TargetKind
from railcar.payload.manifest import (
    SIGNATURE_VERSION_CHECKED,
    InstallInfo,
    OpType,
    ProcedureType,
    Signatures,
)
from railcar.payload.reader import PayloadReader


def _info(info: InstallInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"size": info.size, "sha256": info.hash.hex() if info.hash else None}


def _ops_summary(layout: PayloadLayout, target: str) -> dict[str, Any]:
    ops = [p for p in layout.ops if p.target == target]
    by_type = collections.Counter(OpType(p.op.type).name for p in ops)
    return {
        "operations": len(ops),
        "by_type": dict(sorted(by_type.items())),
        "data_bytes": sum(p.blob_length for p in ops),
    }


def inspect_payload(path: Path) -> dict[str, Any]:
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise PayloadError(f"cannot read payload {path}: {exc.strerror}") from exc
    with f:
        file_size = os.fstat(f.fileno()).st_size
        reader = PayloadReader(f)
        layout = reader.layout
        manifest = layout.manifest
        signatures: list[dict[str, Any]] = []
        if layout.signed:
            f.seek(layout.signed_range_end)
            blob = f.read(layout.signatures_size)
            if len(blob) == layout.signatures_size:
                signatures = [
                    {"version": s.version, "size": len(s.data or b"")}
                    for s in Signatures.decode(blob).signatures
                ]
    procedures = [
        {
            "type": ProcedureType(p.type).name if p.type in (0, 1) else p.type,
            "operations": len(p.operations),
            "new_info": _info(p.new_info),
        }
        for p in manifest.procedures
    ]
    return {
        "path": str(path),
        "file_size": file_size,
        "expected_size": layout.total_size,
        "header": {"format_version": 1, "manifest_size": layout.manifest_len},
        "block_size": manifest.effective_block_size,
        "new_partition_info": _info(manifest.new_partition_info),
        "partition": _ops_summary(layout, TargetKind.PARTITION),
        "kernel": _ops_summary(layout, TargetKind.KERNEL),
        "procedures": procedures,
        "noop_operations": len(manifest.noop_operations),
        "signed": layout.signed,
        "signatures_offset": manifest.signatures_offset,
        "signatures_size": manifest.signatures_size,
        "signatures": signatures,
        "flatcar_checked_signature": any(
            s["version"] == SIGNATURE_VERSION_CHECKED for s in signatures
        ),
    }


def render(summary: dict[str, Any]) -> str:
    """The human form of :func:`inspect_payload`'s result."""
    lines = [f"{summary['path']}: CrAU payload, format version 1"]
    size, expected = summary["file_size"], summary["expected_size"]
    lines.append(f"  size           {size:,} bytes (manifest says {expected:,})")
    lines.append(
        f"  manifest       {summary['header']['manifest_size']:,} bytes, block size "
        f"{summary['block_size']}"
    )
    part = summary["new_partition_info"]
    lines.append(f"  /usr image     {part['size']:,} bytes  sha256 {part['sha256']}")
    for name in ("partition", "kernel"):
        ops = summary[name]
        types = ", ".join(f"{k} {v}" for k, v in ops["by_type"].items()) or "none"
        lines.append(
            f"  {name + ' ops':<14} {ops['operations']} ({types}), {ops['data_bytes']:,} data bytes"
        )
    for proc in summary["procedures"]:
        info = proc["new_info"] or {}
        lines.append(
            f"  procedure      {proc['type']}: {proc['operations']} ops, {info.get('size')} bytes "
            f"sha256 {info.get('sha256')}"
        )
    lines.append(f"  noop ops       {summary['noop_operations']}")
    if summary["signed"]:
        sigs = ", ".join(f"v{s['version']} ({s['size']} bytes)" for s in summary["signatures"])
        lines.append(f"  signatures     {sigs or 'blob missing'}")
        if not summary["flatcar_checked_signature"]:
            lines.append("  note           no version-2 signature: Flatcar nodes will reject it")
    else:
        lines.append("  signatures     none (unsigned)")
    return "\n".join(lines)
