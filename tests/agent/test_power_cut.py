"""Power cuts during an update: the agent is killed with SIGKILL at 50 seeded-random byte
positions of a throttled 16 MiB download, then at random moments of the install, and
restarted each time. After every cut USR-A's bytes and GPT attributes (as cgpt reads them) are
unchanged, and gptprio would boot A — unless B is completely written and switched. The
restarted agent resumes (Range) and finishes: B holds the new image and boots next."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

from railcar.agent.slots import Slot
from railcar.gpt import GptPrio
from tests.agent.node_env import FRESH_A, Node, Release, make_release, update_server
from tests.agent.throttle import throttled
from tests.conftest import KeyPair
from tests.gpt.tools import MIB, sgdisk_verify
from tests.servers import free_port

SEED = 20261125
DOWNLOAD_CUTS = 52  # ≥ 50 real cuts even if two positions fall within one received piece
INSTALL_CUTS = 8
PAYLOAD_MIB = 16


def _lines(stream: object, out: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        out.put(line)


class Agent:
    """``railcar agent run --once`` in the background, its log lines in a queue."""

    def __init__(self, node: Node) -> None:
        self.proc = subprocess.Popen(
            node.agent_args("run", Slot.A),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=_lines, args=(self.proc.stderr, self.lines), daemon=True).start()

    def wait_for(self, text: str, timeout: float = 60) -> bool:
        """True once a log line contains ``text``; False if the agent exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    return False
                continue
            self.log.append(line)
            if text in line:
                return True
        raise AssertionError(f"no {text!r} within {timeout} s: {''.join(self.log)[-2000:]}")

    def kill(self) -> bool:
        """SIGKILL; True if the agent was still running (a real cut)."""
        alive = self.proc.poll() is None
        if alive:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return alive


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _check_after_cut(node: Node, release: Release, a_digest: str) -> bool:
    """The invariants after any cut; True if B is already installed and switched."""
    assert node.slot_digest(Slot.A) == a_digest
    a, b = node.cgpt()
    assert a == FRESH_A
    if node.next_slot() is Slot.B:
        assert b == GptPrio(2, 1, False)
        assert node.slot_bytes(Slot.B, len(release.usr)) == release.usr
        assert node.kernel(Slot.B).read_bytes() == release.kernel
        return True
    assert not b.bootable
    return False


def test_power_cuts_during_download_and_install(tmp_path: Path, keypair: KeyPair) -> None:
    rng = random.Random(SEED)
    release = make_release(tmp_path / "release", keypair.private, usr_bytes=PAYLOAD_MIB * MIB)
    size = release.payload.stat().st_size
    server_port, proxy_port = free_port(), free_port()
    with (
        throttled(f"http://127.0.0.1:{server_port}", proxy_port) as proxy,
        update_server(
            tmp_path / "server", release.payload, public_url=proxy, port=server_port
        ) as server,
    ):
        node = Node(tmp_path / "node", keypair, server.omaha_url, usr_mib=PAYLOAD_MIB + 2)
        a_digest = node.slot_digest(Slot.A)
        partial = node.state / "download" / "payload.partial"
        cuts = sorted(rng.randrange(1, size) for _ in range(DOWNLOAD_CUTS))
        killed = 0
        for position in cuts:
            agent = Agent(node)
            while _file_size(partial) < position and agent.proc.poll() is None:
                time.sleep(0.002)
            killed += agent.kill()
            assert not _check_after_cut(node, release, a_digest)
        assert killed >= 50

        install_cuts = 0
        switched = False
        for _ in range(INSTALL_CUTS):
            agent = Agent(node)
            if agent.wait_for("status UPDATE_STATUS_FINALIZING"):
                time.sleep(rng.uniform(0, 0.08))  # the install itself takes ~0.1-0.2 s
            install_cuts += agent.kill()
            switched = _check_after_cut(node, release, a_digest)
            if switched:
                break
        assert install_cuts >= 1

        done = node.status(node.agent("run", Slot.A))
        assert done["current_operation"] == "UPDATE_STATUS_UPDATED_NEED_REBOOT"
        assert _check_after_cut(node, release, a_digest)
        assert node.cgpt() == (FRESH_A, GptPrio(2, 1, False))
        sgdisk_verify(node.disk)
        kinds = [(t, r) for t, r, _, _ in server.events()]
        # One offer, resumed across every restart (14/1 repeats when a restart finds the
        # download complete); no error event.
        assert kinds.count((13, 1)) == 1 and kinds[-1] == (3, 1)
        assert set(kinds) == {(13, 1), (14, 1), (3, 1)}
