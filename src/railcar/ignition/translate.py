"""Translate a Railcar config (Butane's YAML shape, ``variant: railcar``) into an Ignition config.

Pure: a parsed YAML document in, the Ignition config as a dict out, plus warnings. Contents named
by ``local:`` come through a :class:`LocalFiles` reader the caller supplies; nothing here touches
the disk, the network or the clock.

``variant: railcar`` / ``version: 1.0.0`` translates to Ignition config spec 3.3.0: Railcar nodes
run Debian bookworm's Ignition 2.14, and 3.3.0 is the newest stable spec before 3.4.0, which
first shipped in Ignition 2.15.0 (the spec/release table in coreos/ignition docs/specs.md).

Field names are Butane's (``password_hash``, ``ssh_authorized_keys``, ``wipe_filesystem``…) and map
one-to-one onto Ignition's camelCase names; the Butane-only parts are ``inline``/``local``
contents (→ data URLs, gzip when shorter) and ``with_mount_unit`` (→ a generated systemd unit).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from railcar.ignition import dataurl, units
from railcar.ignition.errors import ConfigSchemaError, LocalFileError
from railcar.ignition.fields import (
    Field,
    absolute_path,
    boolean,
    check_keys,
    child,
    describe,
    dictionary,
    integer,
    list_of,
    mapping,
    non_empty_string,
    non_negative,
    sequence,
    string,
)

VARIANT = "railcar"
# Railcar config version → Ignition config spec version.
SPEC_VERSIONS = {"1.0.0": "3.3.0"}

# Paths whose files are programs; a mode there without owner-execute is almost always a mistake.
_PROGRAM_DIRS = ("/usr/local/bin/", "/usr/local/sbin/", "/opt/bin/", "/usr/local/libexec/")
_UNIT_SUFFIXES = (
    ".service", ".socket", ".device", ".mount", ".automount", ".swap",
    ".target", ".path", ".timer", ".slice", ".scope",
)  # fmt: skip


# What config spec 3.3.0 allows (coreos/ignition docs/configuration-v3_3.md): source URL schemes
# (`arn` only arrives in 3.4.0), verification hash types, and filesystem formats.
_SCHEMES = ("http", "https", "tftp", "s3", "gs", "data")
_HASH_HEX_DIGITS = {"sha512": 128, "sha256": 64}
_HEX = frozenset("0123456789abcdef")
_FORMATS = ("ext4", "btrfs", "xfs", "vfat", "swap", "none")


class LocalFiles(Protocol):
    """Reads ``local:`` contents, named relative to the files directory (butane's ``-d``)."""

    def read(self, name: str) -> bytes:
        """The file's bytes; :class:`LocalFileError` if it cannot be read."""
        ...


@dataclass(frozen=True)
class ConfigWarning:
    """Something valid that is probably not what the author meant."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Translation:
    config: dict[str, Any]
    warnings: tuple[ConfigWarning, ...]


def translate(document: object, *, local_files: LocalFiles | None = None) -> Translation:
    """Translate a parsed Railcar config; :class:`ConfigSchemaError` names the first bad value."""
    return _Translator(local_files).run(document)


def _mode(value: object, path: str) -> int:
    mode = integer(value, path)
    if not 0 <= mode <= 0o7777:
        raise ConfigSchemaError(
            path,
            f"expected a file mode between 0 and 07777, got {mode}",
            hint="YAML reads 0644 as octal; 644 without the leading 0 is decimal",
        )
    return mode


def _octal(mode: int) -> str:
    return f"0{mode:o}" if mode else "0"


def _unit_name(value: object, path: str) -> str:
    name = non_empty_string(value, path)
    if "/" in name or not name.endswith(_UNIT_SUFFIXES):
        raise ConfigSchemaError(
            path, f"expected a unit name such as foo.service, got {describe(name)}"
        )
    return name


def _dropin_name(value: object, path: str) -> str:
    name = non_empty_string(value, path)
    if "/" in name or not name.endswith(".conf"):
        raise ConfigSchemaError(
            path, f"expected a drop-in name ending in .conf, got {describe(name)}"
        )
    return name


def _source_url(value: object, path: str) -> str:
    url = non_empty_string(value, path)
    scheme = url.partition(":")[0].lower() if ":" in url else ""
    if scheme not in _SCHEMES:
        raise ConfigSchemaError(
            path, f"expected a URL with scheme {', '.join(_SCHEMES)}, got {describe(url)}"
        )
    return url


def _hash(value: object, path: str) -> str:
    text = non_empty_string(value, path)
    kind, _, digest = text.partition("-")
    digits = _HASH_HEX_DIGITS.get(kind)
    if digits is None or len(digest) != digits or not all(c in _HEX for c in digest):
        raise ConfigSchemaError(
            path,
            f"expected sha512-<128 hex digits> or sha256-<64 hex digits>, got {describe(text)}",
        )
    return text


def _check_digest(data: bytes, expected_hash: str, path: str) -> None:
    """Inline and local contents are known now, so a wrong hash is caught before first boot.
    With compression the hash describes the decompressed file (docs/configuration-v3_3.md), so
    it is the hash of the contents before our gzip."""
    kind, _, digest = expected_hash.partition("-")
    actual = hashlib.new(kind, data).hexdigest()
    if actual != digest:
        raise ConfigSchemaError(path, f"does not match the contents, whose {kind} is {actual}")


def _format(value: object, path: str) -> str:
    fs_format = non_empty_string(value, path)
    if fs_format not in _FORMATS:
        raise ConfigSchemaError(
            path, f"expected one of {', '.join(_FORMATS)}, got {describe(fs_format)}"
        )
    return fs_format


_OWNER = mapping({"id": Field("id", non_negative), "name": Field("name", non_empty_string)})
_HEADER = mapping(
    {
        "name": Field("name", non_empty_string, required=True),
        "value": Field("value", string, required=True),
    }
)
_VERIFICATION = mapping({"hash": Field("hash", _hash)})

_USER = mapping(
    {
        "name": Field("name", non_empty_string, required=True),
        "password_hash": Field("passwordHash", string),
        "ssh_authorized_keys": Field("sshAuthorizedKeys", list_of(non_empty_string)),
        "uid": Field("uid", non_negative),
        "gecos": Field("gecos", string),
        "home_dir": Field("homeDir", absolute_path),
        "no_create_home": Field("noCreateHome", boolean),
        "primary_group": Field("primaryGroup", non_empty_string),
        "groups": Field("groups", list_of(non_empty_string)),
        "no_user_group": Field("noUserGroup", boolean),
        "no_log_init": Field("noLogInit", boolean),
        "shell": Field("shell", absolute_path),
        "should_exist": Field("shouldExist", boolean),
        "system": Field("system", boolean),
    }
)
_GROUP = mapping(
    {
        "name": Field("name", non_empty_string, required=True),
        "gid": Field("gid", non_negative),
        "password_hash": Field("passwordHash", string),
        "should_exist": Field("shouldExist", boolean),
        "system": Field("system", boolean),
    }
)
_DROPIN = mapping(
    {"name": Field("name", _dropin_name, required=True), "contents": Field("contents", string)}
)
_UNIT = mapping(
    {
        "name": Field("name", _unit_name, required=True),
        "enabled": Field("enabled", boolean),
        "mask": Field("mask", boolean),
        "contents": Field("contents", string),
        "dropins": Field("dropins", list_of(_DROPIN)),
    }
)
_FILESYSTEM_FIELDS = {
    "device": Field("device", absolute_path, required=True),
    "format": Field("format", _format),
    "path": Field("path", absolute_path),
    "label": Field("label", string),
    "uuid": Field("uuid", string),
    "wipe_filesystem": Field("wipeFilesystem", boolean),
    "options": Field("options", list_of(string)),
    "mount_options": Field("mountOptions", list_of(string)),
}
_FILESYSTEM = mapping(_FILESYSTEM_FIELDS)
_TIMEOUTS = mapping(
    {
        "http_response_headers": Field("httpResponseHeaders", non_negative),
        "http_total": Field("httpTotal", non_negative),
    }
)
_PROXY = mapping(
    {
        "http_proxy": Field("httpProxy", string),
        "https_proxy": Field("httpsProxy", string),
        "no_proxy": Field("noProxy", list_of(string)),
    }
)
_PASSWD = mapping(
    {"users": Field("users", list_of(_USER)), "groups": Field("groups", list_of(_GROUP))}
)
_TOP_LEVEL = ("variant", "version", "ignition", "passwd", "storage", "systemd")


class _Translator:
    def __init__(self, local_files: LocalFiles | None) -> None:
        self._local_files = local_files
        self._warnings: list[ConfigWarning] = []
        node = {
            "path": Field("path", absolute_path, required=True),
            "overwrite": Field("overwrite", boolean),
            "user": Field("user", _OWNER),
            "group": Field("group", _OWNER),
        }
        self._file = mapping(
            node
            | {
                "mode": Field("mode", _mode),
                "contents": Field("contents", self._resource),
                "append": Field("append", list_of(self._resource)),
            }
        )
        self._directory = mapping(node | {"mode": Field("mode", _mode)})
        self._link = mapping(
            node
            | {
                "target": Field("target", non_empty_string, required=True),
                "hard": Field("hard", boolean),
            }
        )
        self._ignition = mapping(
            {
                "config": Field(
                    "config",
                    mapping(
                        {
                            "merge": Field("merge", list_of(self._config_resource)),
                            "replace": Field("replace", self._config_resource),
                        }
                    ),
                ),
                "timeouts": Field("timeouts", _TIMEOUTS),
                "security": Field(
                    "security",
                    mapping(
                        {
                            "tls": Field(
                                "tls",
                                mapping(
                                    {
                                        "certificate_authorities": Field(
                                            "certificateAuthorities",
                                            list_of(self._config_resource),
                                        )
                                    }
                                ),
                            )
                        }
                    ),
                ),
                "proxy": Field("proxy", _PROXY),
            }
        )

    def warn(self, path: str, message: str) -> None:
        self._warnings.append(ConfigWarning(path, message))

    def run(self, document: object) -> Translation:
        root = dictionary(document, "")
        check_keys(root, "", dict.fromkeys(_TOP_LEVEL))
        if root.get("variant") != VARIANT:
            raise _missing_or_wrong(root, "variant", f'expected "{VARIANT}"')
        version = root.get("version")
        if not isinstance(version, str) or version not in SPEC_VERSIONS:
            supported = ", ".join(SPEC_VERSIONS)
            raise _missing_or_wrong(root, "version", f"expected one of {supported}")
        ignition: dict[str, Any] = {"version": SPEC_VERSIONS[version]}
        if root.get("ignition") is not None:
            ignition |= self._ignition(root["ignition"], "ignition")
        config: dict[str, Any] = {"ignition": ignition}
        if root.get("passwd") is not None:
            config["passwd"] = self._passwd(root["passwd"], "passwd")
        generated_units: list[tuple[str, dict[str, Any]]] = []
        if root.get("storage") is not None:
            config["storage"] = self._storage(root["storage"], "storage", generated_units)
        systemd = self._systemd(root.get("systemd"), "systemd", generated_units)
        if systemd:
            config["systemd"] = systemd
        return Translation(_pruned(config), tuple(self._warnings))

    # -- resources: contents, append, merged configs, certificate authorities ----------------

    def _config_resource(self, value: object, path: str) -> dict[str, Any]:
        """A merged or replacing config, or a CA certificate: something must be fetched."""
        return self._resource(value, path, required=True)

    def _resource(self, value: object, path: str, *, required: bool = False) -> dict[str, Any]:
        raw = dictionary(value, path)
        known = ("source", "inline", "local", "compression", "http_headers", "verification")
        check_keys(raw, path, dict.fromkeys(known))
        given = [k for k in ("source", "inline", "local") if raw.get(k) is not None]
        if len(given) > 1:
            raise ConfigSchemaError(path, f"set only one of source, inline or local, got {given}")
        if not given and (required or raw.get("verification") is not None):
            why = "is required" if required else "is required with verification"
            raise ConfigSchemaError(path, f"one of source, inline or local {why}")
        out: dict[str, Any] = {}
        if given == ["source"]:
            out["source"] = _source_url(raw["source"], child(path, "source"))
            if raw.get("compression") is not None:
                compression = string(raw["compression"], child(path, "compression"))
                if compression not in ("", "gzip"):
                    raise ConfigSchemaError(
                        child(path, "compression"), f'expected "gzip", got {describe(compression)}'
                    )
                out["compression"] = compression
        elif raw.get("compression") is not None:
            raise ConfigSchemaError(
                child(path, "compression"),
                "only applies to source; inline and local contents are gzipped when smaller",
            )
        data: bytes | None = None
        if given == ["inline"]:
            data = string(raw["inline"], child(path, "inline")).encode("utf-8")
        elif given == ["local"]:
            data = self._read_local(raw["local"], child(path, "local"))
        if data is not None:
            out |= self._data(data)
        if raw.get("http_headers") is not None:
            out["httpHeaders"] = list_of(_HEADER)(raw["http_headers"], child(path, "http_headers"))
        if raw.get("verification") is not None:
            where = child(path, "verification")
            out["verification"] = _VERIFICATION(raw["verification"], where)
            if data is not None and "hash" in out["verification"]:
                _check_digest(data, out["verification"]["hash"], child(where, "hash"))
        return out

    @staticmethod
    def _data(data: bytes) -> dict[str, Any]:
        encoded = dataurl.encode(data)
        out: dict[str, Any] = {"source": encoded.url}
        if encoded.gzipped:
            out["compression"] = "gzip"
        return out

    def _read_local(self, value: object, path: str) -> bytes:
        name = non_empty_string(value, path)
        if self._local_files is None:
            raise LocalFileError(
                f"{path}: local contents need a files directory", hint="pass --files-dir DIR"
            )
        try:
            return self._local_files.read(name)
        except LocalFileError as exc:
            raise LocalFileError(f"{path}: {exc.message}", hint=exc.hint) from exc

    # -- sections ---------------------------------------------------------------------------

    def _passwd(self, value: object, path: str) -> dict[str, Any]:
        out: dict[str, Any] = _PASSWD(value, path)
        _unique(out.get("users", []), "name", child(path, "users"))
        _unique(out.get("groups", []), "name", child(path, "groups"))
        return out

    def _storage(
        self, value: object, path: str, generated: list[tuple[str, dict[str, Any]]]
    ) -> dict[str, Any]:
        raw = dictionary(value, path)
        check_keys(raw, path, dict.fromkeys(("files", "directories", "links", "filesystems")))
        out: dict[str, Any] = {}
        seen: dict[str, str] = {}
        for key, convert in (
            ("files", self._file),
            ("directories", self._directory),
            ("links", self._link),
        ):
            if raw.get(key) is None:
                continue
            items = sequence(raw[key], child(path, key))
            nodes: list[dict[str, Any]] = []
            for index, item in enumerate(items):
                where = child(child(path, key), index)
                node = convert(item, where)
                _claim(seen, node["path"], child(where, "path"), "path")
                if key == "files":
                    self._check_file(node, where, _inline_of(item))
                nodes.append(node)
            out[key] = nodes
        if raw.get("filesystems") is not None:
            out["filesystems"] = self._filesystems(
                raw["filesystems"], child(path, "filesystems"), generated
            )
        return out

    def _check_file(self, node: dict[str, Any], path: str, inline: str | None) -> None:
        mode = node.get("mode")
        if mode is not None and mode & 0o7000:
            self.warn(
                child(path, "mode"),
                f"setuid/setgid/sticky bits ({_octal(mode & 0o7000)}) are ignored by config "
                "spec 3.3.0"
                + (f"; did you mean 0{mode}?" if set(str(mode)) <= set("01234567") else ""),
            )
        is_script = inline is not None and inline.startswith("#!")
        if node["path"].startswith(_PROGRAM_DIRS) or is_script:
            effective = 0o644 if mode is None else mode
            if not effective & 0o100:
                why = "starts with #!" if is_script else "is in a directory of programs"
                self.warn(
                    child(path, "mode"),
                    f"{node['path']} {why} but mode {_octal(effective)} has no owner-execute bit",
                )

    def _filesystems(
        self, value: object, path: str, generated: list[tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        out = []
        seen: dict[str, str] = {}
        for index, item in enumerate(sequence(value, path)):
            where = child(path, index)
            raw = dictionary(item, where)
            check_keys(raw, where, _FILESYSTEM_FIELDS | {"with_mount_unit": None})
            with_unit = raw.get("with_mount_unit") is not None and boolean(
                raw["with_mount_unit"], child(where, "with_mount_unit")
            )
            fs = _FILESYSTEM({k: v for k, v in raw.items() if k != "with_mount_unit"}, where)
            _claim(seen, fs["device"], child(where, "device"), "device")
            if with_unit:
                generated.append((child(where, "with_mount_unit"), _mount_unit_for(fs, where)))
            out.append(fs)
        return out

    def _systemd(
        self, value: object, path: str, generated: list[tuple[str, dict[str, Any]]]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if value is not None:
            out = mapping({"units": Field("units", list_of(_UNIT))})(value, path)
        unit_list: list[dict[str, Any]] = out.get("units", [])
        seen: dict[str, str] = {}
        for index, unit in enumerate(unit_list):
            where = child(child(path, "units"), index)
            _claim(seen, unit["name"], child(where, "name"), "unit")
            _unique(unit.get("dropins", []), "name", child(where, "dropins"))
            if unit.get("enabled") and "contents" in unit and "[Install]" not in unit["contents"]:
                self.warn(
                    child(where, "enabled"),
                    f"{unit['name']} has no [Install] section, so enabling it does nothing",
                )
        for where, unit in generated:
            _claim(seen, unit["name"], where, "unit")
            unit_list.append(unit)
        if unit_list:
            out["units"] = unit_list
        return out


def _mount_unit_for(fs: Mapping[str, Any], path: str) -> dict[str, Any]:
    fs_type = fs.get("format")
    if fs_type is None:
        raise ConfigSchemaError(child(path, "format"), "is required with with_mount_unit")
    options = list(fs.get("mountOptions", []))
    if fs_type == "swap":
        name, contents = units.swap_unit(fs["device"], options)
    else:
        if "path" not in fs:
            raise ConfigSchemaError(child(path, "path"), "is required with with_mount_unit")
        name, contents = units.mount_unit(fs["device"], fs["path"], fs_type, options)
    return {"name": name, "enabled": True, "contents": contents}


def _pruned(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without empty lists and mappings, which mean nothing to Ignition."""

    def prune(value: Any) -> Any:
        if isinstance(value, dict):
            kept = {k: prune(v) for k, v in value.items()}
            return {k: v for k, v in kept.items() if v not in ({}, [])}
        if isinstance(value, list):
            return [prune(v) for v in value]
        return value

    pruned: dict[str, Any] = prune(config)
    return pruned


def _inline_of(raw_file: object) -> str | None:
    contents = raw_file.get("contents") if isinstance(raw_file, dict) else None
    inline = contents.get("inline") if isinstance(contents, dict) else None
    return inline if isinstance(inline, str) else None


def _claim(seen: dict[str, str], key: str, where: str, what: str) -> None:
    if key in seen:
        raise ConfigSchemaError(where, f"{what} {describe(key)} is already declared at {seen[key]}")
    seen[key] = where


def _unique(items: list[dict[str, Any]], key: str, path: str) -> None:
    seen: dict[str, str] = {}
    for index, item in enumerate(items):
        _claim(seen, item[key], child(child(path, index), key), key)


def _missing_or_wrong(root: Mapping[str, object], key: str, what: str) -> ConfigSchemaError:
    if key not in root:
        return ConfigSchemaError(key, f"is required; {what}")
    return ConfigSchemaError(key, f"{what}, got {describe(root[key])}")
