"""Starting a server process for a test or benchmark and waiting until it answers /health."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from railcar.endpoint import Endpoint


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(Endpoint(host, 0).family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def running(
    cmd: Sequence[str], port: int, *, timeout: float = 60, host: str = "127.0.0.1"
) -> Iterator[str]:
    """Run ``cmd`` (a server listening on ``host``:``port``); yield its base URL; stop it
    by its PID when done."""
    with running_process(cmd, port, timeout=timeout, host=host) as (base, _):
        yield base


@contextmanager
def running_process(
    cmd: Sequence[str], port: int, *, timeout: float = 60, host: str = "127.0.0.1"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`running`, yielding the process too (benchmarks read its CPU time)."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = Endpoint(host, port).url
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                raise RuntimeError(f"server {cmd[:4]} did not start: {err[-2000:]}")
            time.sleep(0.1)
        yield base, proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate a process we started, by its PID; kill it if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
