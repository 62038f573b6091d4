"""Reading a Railcar config: YAML text → plain Python data, with errors that give a line.

PyYAML's safe loader keeps the last of two equal keys in one mapping; a config that says
``storage:`` twice would silently lose half of itself, so a repeated key is an error here (as
in Butane's YAML reader).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode

from railcar.ignition.errors import ConfigSyntaxError


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                mark = key_node.start_mark
                raise ConfigSyntaxError(
                    f"{mark.name}:{mark.line + 1}:{mark.column + 1}: duplicate key {key!r}"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def decode(data: bytes, name: str = "<config>") -> str:
    """The config file's bytes as text; a config is UTF-8 (as YAML 1.2 and Butane expect)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigSyntaxError(
            f"{name}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from exc


def load(text: str, name: str = "<config>") -> object:
    """The YAML document in ``text``; :class:`ConfigSyntaxError` if it does not parse."""
    try:
        loader = _StrictLoader(text)
        loader.name = name
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = exc.problem or exc.context or "not valid YAML"
        if exc.problem and exc.context:
            problem += f" ({exc.context})"
        raise ConfigSyntaxError(f"{where}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigSyntaxError(f"{name}: {exc}") from exc
