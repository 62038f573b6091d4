"""Errors raised while translating a Railcar (Butane-style) YAML config into an Ignition config.

::

    RailcarError
    └── IgnitionError                anything wrong with a config or its translation
        ├── ConfigSyntaxError        the YAML does not parse, or repeats a key in one mapping
        ├── ConfigSchemaError        a value at a YAML path is unknown, missing, of the wrong type
        │                            or out of range; also a wrong ``variant`` or ``version``
        ├── LocalFileError           ``local:`` contents: no --files-dir, outside it, unreadable
        ├── StrictWarningError       --strict and the translation (or ignition-validate) warned
        └── IgnitionValidateError    Debian's ignition-validate rejected the translated config

Messages start with the YAML path of the offending value (``storage.files[2].mode: expected an
integer, got "644"``) so one line is enough to find and fix it. A missing ``ignition-validate``
is a :class:`railcar.runner.ToolError`.
"""

from __future__ import annotations

from railcar.errors import RailcarError


class IgnitionError(RailcarError):
    """Anything wrong with a Railcar config or its translation to Ignition."""


class ConfigSyntaxError(IgnitionError):
    """The YAML does not parse, or a mapping repeats a key."""


class ConfigSchemaError(IgnitionError):
    """A value is unknown, missing, of the wrong type or out of range; names its YAML path."""

    def __init__(self, path: str, problem: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {problem}" if path else problem, hint=hint)
        self.path = path
        self.problem = problem


class LocalFileError(IgnitionError):
    """Contents named by ``local:`` cannot be read from the files directory."""


class StrictWarningError(IgnitionError):
    """``--strict`` turns the first warning into this error."""


class IgnitionValidateError(IgnitionError):
    """Debian's ``ignition-validate`` rejected the translated config."""
