"""A container image built locally, with no registry: one layer holding a static busybox.

Written in the format ``docker save`` produces (``manifest.json`` + config + layer tar), which
both ``docker load`` and containerd's ``ctr images import`` read, so one file proves both
runtimes on a node. The layer and config digests are computed here; nothing is fetched.
Format facts: moby ``image/spec/v1.2.md`` (config: architecture, os, config.Cmd,
rootfs.type "layers" with ``diff_ids`` = sha256 of each uncompressed layer tar) and moby
``image/tarexport`` (``manifest.json``: Config, RepoTags, Layers).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from railcar.errors import RailcarError

BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
# A fixed time for every tar member, so the same busybox gives the same image id.
_MTIME = 1764028800


class ContainerImageError(RailcarError):
    """The image could not be made (no static busybox)."""


def _tar(members: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, _MTIME
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def busybox_image(dest: Path, tag: str, *, busybox: Path = BUSYBOX) -> str:
    """Write a docker-archive tarball for ``tag`` (``name:version``) to ``dest``; return the
    image id (sha256 of its config)."""
    if not busybox.is_file():
        raise ContainerImageError(
            f"{busybox} not found", hint="install busybox-static (scripts/setup does)"
        )
    layer = _tar({"bin/busybox": (busybox.read_bytes(), 0o755)})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2025-11-25T00:00:00Z",
            "config": {"Cmd": ["/bin/busybox", "echo", "hello from " + tag], "Env": []},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    image_id = hashlib.sha256(config).hexdigest()
    layer_dir = diff_id.split(":", 1)[1]
    manifest = json.dumps(
        [{"Config": f"{image_id}.json", "RepoTags": [tag], "Layers": [f"{layer_dir}/layer.tar"]}]
    ).encode()
    dest.write_bytes(
        _tar(
            {
                f"{layer_dir}/layer.tar": (layer, 0o644),
                f"{image_id}.json": (config, 0o644),
                "manifest.json": (manifest, 0o644),
            }
        )
    )
    return image_id
