"""``HOST:PORT`` for the servers' ``--listen``: IPv6 in brackets, as in URLs."""

from __future__ import annotations

import socket

import click
import pytest
from click.testing import CliRunner

from railcar.endpoint import Endpoint, listen_option, parse_endpoint


@pytest.mark.parametrize(
    ("text", "host", "port", "authority"),
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080, "127.0.0.1:8080"),
        ("0.0.0.0:1", "0.0.0.0", 1, "0.0.0.0:1"),
        ("localhost:65535", "localhost", 65535, "localhost:65535"),
        ("[::1]:8080", "::1", 8080, "[::1]:8080"),
        ("[::]:443", "::", 443, "[::]:443"),
        ("[fe80::1%eth0]:8080", "fe80::1%eth0", 8080, "[fe80::1%eth0]:8080"),
    ],
)
def test_accepted(text: str, host: str, port: int, authority: str) -> None:
    endpoint = parse_endpoint(text)
    assert (endpoint.host, endpoint.port) == (host, port)
    assert endpoint.authority == authority == text
    assert endpoint.url == f"http://{text}"
    assert endpoint.family == (socket.AF_INET6 if text.startswith("[") else socket.AF_INET)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("::1:8080", "write an IPv6 address in brackets"),
        ("fe80::1:8080", "write an IPv6 address in brackets"),
        ("8080", "expected HOST:PORT"),
        (":8080", "expected HOST:PORT"),
        ("[::1]8080", "expected [IPV6]:PORT"),
        ("[::1:8080", "expected [IPV6]:PORT"),
        ("[127.0.0.1]:8080", "'127.0.0.1' in brackets is not an IPv6 address"),
        ("[]:8080", "'' in brackets is not an IPv6 address"),
        ("127.0.0.1:", "the port must be a number from 1 to 65535"),
        ("127.0.0.1:0", "the port must be a number from 1 to 65535"),
        ("127.0.0.1:65536", "the port must be a number from 1 to 65535"),
        ("127.0.0.1:80a", "the port must be a number from 1 to 65535"),
        ("[::1]:-1", "the port must be a number from 1 to 65535"),
    ],
)
def test_refused_with_what_was_expected(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="^" + repr(text).replace("[", r"\[")) as refused:
        parse_endpoint(text)
    assert says in str(refused.value)


def test_an_option_of_this_type_is_a_usage_error_when_wrong() -> None:
    @click.command()
    @listen_option("where")
    def serve(listen: Endpoint) -> None:
        click.echo(f"{listen.host} {listen.port} {listen.url}")

    assert CliRunner().invoke(serve, []).output == "127.0.0.1 8080 http://127.0.0.1:8080\n"
    ok = CliRunner().invoke(serve, ["--listen", "[::1]:9000"])
    assert ok.output == "::1 9000 http://[::1]:9000\n"
    wrong = CliRunner().invoke(serve, ["--listen", "::1:9000"])
    assert wrong.exit_code == 2
    assert "Invalid value for '--listen': '::1:9000': write an IPv6 address in brackets" in (
        wrong.output
    )
