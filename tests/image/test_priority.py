"""The build's background threads (hashes, reports, ROOT and OEM) yield the CPU to its chain of
steps: they, and the processes they start, run at a lower priority (ADR 0033)."""

from __future__ import annotations

import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from railcar.image.build import BACKGROUND_NICE, _background_thread


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _child_nice() -> int:
    return int(subprocess.run(["nice"], capture_output=True, text=True, check=True).stdout)


def test_background_threads_and_their_processes_run_lower_and_the_caller_does_not() -> None:
    before = _own_nice()
    with ThreadPoolExecutor(1, initializer=_background_thread) as pool:
        in_thread = pool.submit(_own_nice).result()
        in_child = pool.submit(_child_nice).result()
    assert in_thread == in_child == min(19, before + BACKGROUND_NICE)
    assert _own_nice() == before and _child_nice() == before
