"""The names ``railcar.ignition`` exports are a promise; changing them is a decision."""

from __future__ import annotations

import railcar.ignition


def test_exported_names() -> None:
    assert sorted(railcar.ignition.__all__) == [
        "ConfigSchemaError",
        "ConfigSyntaxError",
        "ConfigWarning",
        "IgnitionError",
        "IgnitionValidateError",
        "LocalFileError",
        "LocalFiles",
        "SPEC_VERSIONS",
        "StrictWarningError",
        "Translation",
        "VARIANT",
        "ignition_validate",
        "load",
        "translate",
    ]
    for name in railcar.ignition.__all__:
        assert hasattr(railcar.ignition, name)
