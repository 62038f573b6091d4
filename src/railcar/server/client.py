"""``railcar admin``: the admin REST API from the command line (``--json`` on every listing)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from railcar.clitools import RailcarGroup, emit_json, json_option
from railcar.errors import RailcarError
from railcar.omaha.model import FLATCAR_APP_ID


class AdminClientError(RailcarError):
    """The server refused a call or could not be reached."""


class _Client:
    def __init__(self, server: str, token: str, app: str) -> None:
        import httpx

        self._http = httpx.Client(
            base_url=server.rstrip("/"), timeout=60, headers={"Authorization": f"Bearer {token}"}
        )
        self.app = app

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise AdminClientError(f"cannot reach {self._http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise AdminClientError(f"{method} {path}: {response.status_code} {detail}")
        return response.json() if response.content else None

    def app_path(self, suffix: str = "") -> str:
        return f"/api/apps/{self.app}{suffix}"


@dataclass
class _Settings:
    """Connection settings; the client is made when a command runs (not for --help)."""

    server: str
    token: str | None
    app: str

    def client(self) -> _Client:
        if not self.token:
            raise click.UsageError("give --token or set RAILCAR_TOKEN")
        return _Client(self.server, self.token, self.app)


def pass_client(f: Callable[..., None]) -> Callable[..., None]:
    @click.pass_obj
    @functools.wraps(f)
    def run(settings: _Settings, /, *args: Any, **kwargs: Any) -> None:
        f(settings.client(), *args, **kwargs)

    return run


@click.group(cls=RailcarGroup)
@click.option(
    "--server",
    envvar="RAILCAR_SERVER",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Server URL [env RAILCAR_SERVER].",
)
@click.option(
    "--token",
    envvar="RAILCAR_TOKEN",
    help="API bearer token [env RAILCAR_TOKEN]; needed by every call.",
)
@click.option("--app", default=FLATCAR_APP_ID, show_default=True, help="Application id.")
@click.pass_context
def admin(ctx: click.Context, server: str, token: str | None, app: str) -> None:
    """Administer a running update server over its REST API."""
    ctx.obj = _Settings(server, token, app)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        click.echo(
            "  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True))
        )


def _show(data: Any, json_output: bool, columns: list[str]) -> None:
    if json_output:
        emit_json(data)
    elif isinstance(data, list):
        _table(data, columns)
    else:
        _table([data], columns)


@admin.command("channels")
@json_option
@pass_client
def channels(client: _Client, json_output: bool) -> None:
    """List channels."""
    _show(
        client.call("GET", client.app_path("/channels")),
        json_output,
        ["id", "name", "arch", "package_version"],
    )


@admin.command("channel-set")
@click.argument("channel_id")
@click.option("--package", "package_id", required=True, help="Package id to serve.")
@json_option
@pass_client
def channel_set(client: _Client, channel_id: str, package_id: str, json_output: bool) -> None:
    """Point a channel at a package (starts a rollout in its groups)."""
    _show(
        client.call(
            "PUT", client.app_path(f"/channels/{channel_id}"), json={"package_id": package_id}
        ),
        json_output,
        ["id", "name", "arch", "package_version"],
    )


@admin.command("packages")
@json_option
@pass_client
def packages(client: _Client, json_output: bool) -> None:
    """List packages."""
    _show(
        client.call("GET", client.app_path("/packages")),
        json_output,
        ["id", "version", "arch", "size", "hosted"],
    )


@admin.command("package-add")
@click.option(
    "--file", "payload", required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
@click.option("--version", required=True)
@click.option("--arch", default="amd64", show_default=True)
@click.option("--url", default="", help="Base URL nodes download from; omit to upload here.")
@json_option
@pass_client
def package_add(
    client: _Client, payload: Path, version: str, arch: str, url: str, json_output: bool
) -> None:
    """Register a payload (hashes computed here) and upload it unless --url is given."""
    from railcar.server.hosting import file_digests

    size, sha1, sha256 = file_digests(payload)
    created = client.call(
        "POST",
        client.app_path("/packages"),
        json={
            "version": version,
            "arch": arch,
            "filename": payload.name,
            "size": size,
            "hash": sha1,
            "sha256": sha256,
            "url": url,
            "hosted": not url,
        },
    )
    if not url:
        with open(payload, "rb") as f:
            created = client.call(
                "PUT",
                client.app_path(f"/packages/{created['id']}/file"),
                content=f,
                headers={"Content-Type": "application/octet-stream"},
            )
    _show(created, json_output, ["id", "version", "arch", "size", "hosted"])


@admin.command("groups")
@json_option
@pass_client
def groups(client: _Client, json_output: bool) -> None:
    """List groups with their policy."""
    data = client.call("GET", client.app_path("/groups"))
    if json_output:
        emit_json(data)
        return
    _table(
        [{**g, **{f"p.{k}": v for k, v in g["policy"].items()}} for g in data],
        [
            "id",
            "name",
            "track",
            "p.updates_enabled",
            "p.max_updates_per_period",
            "p.period_interval_s",
            "p.safe_mode",
        ],
    )


_POLICY_FLAGS = [
    click.option("--updates/--no-updates", "updates_enabled", default=None),
    click.option("--safe-mode/--no-safe-mode", default=None),
    click.option("--office-hours/--no-office-hours", default=None),
    click.option("--timezone", default=None),
    click.option("--period", "period_interval_s", type=int, default=None, help="Seconds."),
    click.option("--max-per-period", "max_updates_per_period", type=int, default=None),
    click.option("--timeout", "update_timeout_s", type=int, default=None, help="Seconds."),
]


def _policy_options(f: Any) -> Any:
    for option in reversed(_POLICY_FLAGS):
        f = option(f)
    return f


@admin.command("group-policy")
@click.argument("group_id")
@_policy_options
@json_option
@pass_client
def group_policy(client: _Client, /, group_id: str, json_output: bool, **changes: Any) -> None:
    """Change a group's rollout policy; unspecified fields keep their value."""
    group = client.call("GET", client.app_path(f"/groups/{group_id}"))
    policy = {**group["policy"], **{k: v for k, v in changes.items() if v is not None}}
    updated = client.call("PUT", client.app_path(f"/groups/{group_id}"), json={"policy": policy})
    _show(updated["policy"] if not json_output else updated, json_output, list(policy))


@admin.command("instances")
@click.option("--group", "group_id")
@click.option("--search", default="", help="Id prefix, alias, IP or version.")
@click.option("--status", type=int)
@click.option("--version")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@pass_client
def instances(
    client: _Client,
    group_id: str | None,
    search: str,
    status: int | None,
    version: str | None,
    limit: int,
    json_output: bool,
) -> None:
    """List instances."""
    params = {
        k: v
        for k, v in {
            "group": group_id,
            "search": search,
            "status": status,
            "version": version,
            "limit": limit,
        }.items()
        if v
    }
    data = client.call("GET", client.app_path("/instances"), params=params)
    if json_output:
        emit_json(data)
        return
    _table(data["instances"], ["id", "alias", "ip", "version", "status", "last_check_for_updates"])
    click.echo(f"{data['total']} in all")


@admin.command("instance")
@click.argument("instance_id")
@click.option("--hide/--unhide", default=None)
@click.option("--delete", is_flag=True)
@json_option
@pass_client
def instance(
    client: _Client, instance_id: str, hide: bool | None, delete: bool, json_output: bool
) -> None:
    """Show one instance with its history; or hide, unhide or delete it."""
    path = client.app_path(f"/instances/{instance_id}")
    if delete:
        client.call("DELETE", path)
        click.echo(f"deleted {instance_id}")
        return
    if hide is not None:
        client.call("PUT", path, json={"hidden": hide})
    data = client.call("GET", path)
    if json_output:
        emit_json(data)
        return
    _table([data], ["id", "alias", "version", "status", "last_update_version", "hidden"])
    _table(data["history"], ["created_ts", "status", "version"])


@admin.command("activity")
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
@pass_client
def activity(client: _Client, limit: int, json_output: bool) -> None:
    """Recent activity, newest first."""
    _show(
        client.call("GET", "/api/activity", params={"app": client.app, "limit": limit}),
        json_output,
        ["created_ts", "activity_class", "severity", "version", "group_id"],
    )


@admin.command("stats")
@click.argument("group_id")
@json_option
@pass_client
def stats(client: _Client, group_id: str, json_output: bool) -> None:
    """Version breakdown, status counts and rollout progress of a group."""
    data = client.call("GET", client.app_path(f"/groups/{group_id}/stats"))
    if json_output:
        emit_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key:<28} {value}")
