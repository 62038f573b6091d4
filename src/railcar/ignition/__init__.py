"""Provisioning: Railcar configs (Butane-style YAML, ``variant: railcar``) → Ignition configs.

Railcar nodes run Debian's Ignition 2.14 in the initrd (platform ``qemu``); ``railcar ignition
translate`` writes the config it reads. :func:`translate` is pure (data in, data out);
:func:`load` parses YAML; :func:`ignition_validate` runs Debian's checker.
"""

from __future__ import annotations

from railcar.ignition.errors import (
    ConfigSchemaError,
    ConfigSyntaxError,
    IgnitionError,
    IgnitionValidateError,
    LocalFileError,
    StrictWarningError,
)
from railcar.ignition.source import load
from railcar.ignition.translate import (
    SPEC_VERSIONS,
    VARIANT,
    ConfigWarning,
    LocalFiles,
    Translation,
    translate,
)
from railcar.ignition.validate import ignition_validate

__all__ = [
    "SPEC_VERSIONS",
    "VARIANT",
    "ConfigSchemaError",
    "ConfigSyntaxError",
    "ConfigWarning",
    "IgnitionError",
    "IgnitionValidateError",
    "LocalFileError",
    "LocalFiles",
    "StrictWarningError",
    "Translation",
    "ignition_validate",
    "load",
    "translate",
]
