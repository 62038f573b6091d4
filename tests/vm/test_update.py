"""The update VM tests (issue 6) run through pytest so CI runs them: each is one named test of
``railcar test`` (:mod:`railcar.vm.tests`), with its output kept under pytest's tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from railcar.vm import tests as vm_tests  # noqa: F401 - registers the tests
from railcar.vm.suite import REGISTRY, run_tests, select_tests, summary

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["update.ab", "update.rollback", "update.tampered",
                                  "update.policy"])  # fmt: skip
def test_vm_update(name: str, tmp_path: Path) -> None:
    (outcome,) = run_tests(select_tests(REGISTRY, [name]), tmp_path)
    detail = ""
    if not outcome.passed:
        log = (outcome.output / "test.log").read_text()
        error = outcome.output / "error.txt"
        detail = log + (error.read_text() if error.exists() else "")
    assert outcome.passed, summary([outcome]) + "\n" + detail
