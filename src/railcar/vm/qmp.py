"""A small client for QEMU's control protocol (QMP) over the VM's Unix socket.

One connection per call: the greeting, the ``qmp_capabilities`` handshake, then each command in
turn; asynchronous events in between are skipped. Used by the VM harness to look inside a
guest that stopped talking (:mod:`railcar.vm.resetwatch`) and by the boot benchmark to power a
guest down.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from railcar.errors import RailcarError


class QmpError(RailcarError):
    """QEMU's control socket could not be reached, or refused a command."""


def qmp(path: Path, *commands: dict[str, Any], timeout: float = 10.0) -> list[Any]:
    """The ``return`` value of each of ``commands`` (``{"execute": …, "arguments": …}``)."""
    answers: list[Any] = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            stream = s.makefile("rwb")
            stream.readline()  # the greeting
            for command in ({"execute": "qmp_capabilities"}, *commands):
                stream.write(json.dumps(command).encode() + b"\n")
                stream.flush()
                while True:
                    line = stream.readline()
                    if not line:
                        raise QmpError(f"QEMU closed {path} before answering {command['execute']}")
                    answer = json.loads(line)
                    if "error" in answer:
                        raise QmpError(f"QMP {command['execute']} failed: {answer['error']}")
                    if "return" in answer:
                        if command["execute"] != "qmp_capabilities":
                            answers.append(answer["return"])
                        break
    except (OSError, ValueError) as e:
        raise QmpError(f"QMP on {path}: {e}") from None
    return answers


def hmp(path: Path, command_line: str) -> str:
    """A human-monitor command's text (``info registers -a``), through QMP."""
    (text,) = qmp(
        path,
        {"execute": "human-monitor-command", "arguments": {"command-line": command_line}},
    )
    return str(text).replace("\r\n", "\n")
