"""Tampered payloads never switch slots: a flipped bit, a truncated file, a payload signed with
another key, and a hosted file that no longer matches the hash in the Omaha response. Each time
USR-A and both slots' attributes stay as they were (cgpt), and the server records an error
event with update_engine's code for the failure (spec §3.2) and shows the instance in Error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from railcar.agent.slots import Slot
from tests.agent.node_env import FRESH_A, ZERO, Node, UpdateServer, make_release, update_server
from tests.conftest import KeyPair
from tests.gpt.tools import MIB

ERROR_STATUS = 3  # server instance status Error (spec §3.3)


def _flip_bit(payload: Path) -> None:
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside a data blob, covered by the signature
    payload.write_bytes(bytes(data))


def _truncate(payload: Path) -> None:
    data = payload.read_bytes()
    payload.write_bytes(data[: len(data) - 100])  # into the signature blob


def _hosted_file(server: UpdateServer) -> Path:
    (found,) = (server.data / "packages").glob("*/*.gz")
    return found


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("bit-flip", 18),  # DownloadPayloadPubKeyVerificationError
        ("truncated", 12),  # DownloadPayloadVerificationError
        ("wrong-key", 18),
        ("hash-mismatch", 10),  # PayloadHashMismatchError (size and hash from the response)
    ],
)
def test_tampered_payload_is_refused(
    case: str, code: int, tmp_path: Path, keypair: KeyPair, other_keypair: KeyPair
) -> None:
    signer = other_keypair.private if case == "wrong-key" else keypair.private
    release = make_release(tmp_path / "release", signer, usr_bytes=2 * MIB)
    tamper: dict[str, Callable[[Path], None]] = {"bit-flip": _flip_bit, "truncated": _truncate}
    if case in tamper:
        tamper[case](release.payload)
    with update_server(tmp_path / "server", release.payload) as server:
        if case == "hash-mismatch":
            _flip_bit(_hosted_file(server))  # same size, other bytes than announced
        node = Node(tmp_path / "node", keypair, server.omaha_url)
        a_before = node.slot_digest(Slot.A)

        status = node.status(node.agent("run", Slot.A))

        assert status["current_operation"] == "UPDATE_STATUS_IDLE"
        assert status["last_error_code"] == code
        assert node.cgpt() == (FRESH_A, ZERO)
        assert node.next_slot() is Slot.A
        assert node.slot_digest(Slot.A) == a_before
        assert not node.reboot_required.exists()
        assert not node.kernel(Slot.B).exists()
        assert (3, 0, code) in [(t, r, c) for t, r, c, _ in server.events()]
        assert server.instance()["status"] == ERROR_STATUS
