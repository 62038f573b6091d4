"""``HOST:PORT`` as the servers' ``--listen`` options take it, with IPv6 in brackets.

``127.0.0.1:8080``, ``localhost:8080`` and ``[::1]:8080`` are accepted; a bare IPv6 address
(``::1:8080``) is refused, since where its address ends is a guess. :class:`Endpoint` keeps the
host without brackets (what ``bind`` and uvicorn take) and gives it back with them where a URL
needs them (RFC 3986 §3.2.2). Pure: nothing here resolves or binds.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

EXAMPLES = "e.g. 127.0.0.1:8080 or [::1]:8080"
DEFAULT_LISTEN = "127.0.0.1:8080"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Endpoint:
    """A TCP address: ``host`` (a name, an IPv4 address, or an IPv6 address without brackets)
    and ``port`` (1-65535)."""

    host: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def family(self) -> socket.AddressFamily:
        """The socket family to bind ``host`` with (names are bound as IPv4, as uvicorn does)."""
        return socket.AF_INET6 if self.is_ipv6 else socket.AF_INET

    @property
    def authority(self) -> str:
        """``host:port`` as written in a URL: ``[::1]:8080`` for IPv6."""
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.authority}"


def parse_endpoint(text: str) -> Endpoint:
    """``text`` as an :class:`Endpoint`; ValueError saying what was wrong and what is expected."""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected [IPV6]:PORT, {EXAMPLES}")
        port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} in brackets is not an IPv6 address") from None
    else:
        host, _, port = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:8080")
        if not host:
            raise ValueError(f"{text!r}: expected HOST:PORT, {EXAMPLES}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return Endpoint(host, int(port))


def endpoint_option(ctx: click.Context, param: click.Parameter, value: str) -> Endpoint:
    """The click callback of a ``HOST:PORT`` option: a usage error (exit 2) when it is not one."""
    try:
        return parse_endpoint(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def listen_option(help: str) -> Callable[[F], F]:
    """``--listen HOST:PORT`` (default 127.0.0.1:8080), given to the command as an
    :class:`Endpoint`."""
    return click.option(
        "--listen",
        metavar="HOST:PORT",
        callback=endpoint_option,
        default=DEFAULT_LISTEN,
        show_default=True,
        help=help,
    )
