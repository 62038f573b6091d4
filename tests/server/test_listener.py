"""The listening socket that `railcar server run --workers N` shares between its processes.

Connections accepted on it must get TCP_NODELAY. Otherwise every keep-alive request after a
connection's first waits ~40 ms for the client's delayed ACK (uvicorn issue #3149). asyncio
sets the option only on accepted sockets whose ``proto`` is ``IPPROTO_TCP``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
from multiprocessing.connection import Connection

import pytest

from railcar.server.cli import ListenError, tcp_listener


def accepted_nodelay(sock: socket.socket) -> int:
    """Serve one connection on ``sock`` with asyncio; the accepted socket's TCP_NODELAY."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        seen: asyncio.Future[int] = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted = transport.get_extra_info("socket")
                seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await loop.create_server(Probe, sock=sock)
        host, port = sock.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    return asyncio.run(main())


def test_connections_accepted_on_the_listener_have_nodelay() -> None:
    sock = tcp_listener("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    assert accepted_nodelay(sock) != 0


def test_a_listener_without_its_protocol_leaves_nagle_on() -> None:
    """What the listener guards against (uvicorn's own listener): if asyncio ever sets the
    option on these too, this fails and the workaround can go."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    assert sock.proto == 0
    assert accepted_nodelay(sock) == 0


def _serve_in_child(sock: socket.socket, report: Connection) -> None:
    report.send((sock.proto, accepted_nodelay(sock)))


def test_nodelay_survives_the_hand_over_to_a_spawned_server_process() -> None:
    """uvicorn's supervisor hands the socket to processes it starts with ``spawn``."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    sock = tcp_listener("127.0.0.1", 0)
    child = context.Process(target=_serve_in_child, args=(sock, send))
    child.start()
    try:
        assert receive.poll(60), "the child process reported nothing"
        assert receive.recv() == (socket.IPPROTO_TCP, 1)
    finally:
        child.join(30)
        sock.close()
    assert child.exitcode == 0


def test_a_port_in_use_is_a_clear_error() -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: "):
            tcp_listener("127.0.0.1", port)
    finally:
        busy.close()


def test_the_listener_takes_connections_before_a_server_serves_it() -> None:
    """`railcar server run` announces its address once the listener exists: a client that
    connects then waits in the backlog instead of being refused."""
    sock = tcp_listener("127.0.0.1", 0)
    try:
        with socket.create_connection(sock.getsockname()[:2], timeout=5) as client:
            assert client.getpeername() == sock.getsockname()
    finally:
        sock.close()
