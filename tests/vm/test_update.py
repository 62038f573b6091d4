"""The update VM tests (issue 6) run through pytest so CI runs them: each is one named test of
``railcar test`` (:mod:`railcar.vm.tests`), with its output kept under pytest's tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from railcar.vm import tests as vm_tests  # noqa: F401 - registers the tests
from railcar.vm.suite import REGISTRY, run_tests, select_tests, summary

pytestmark = pytest.mark.slow

# Minutes each takes in CI, roughly (docs/PERFORMANCE.md): long tests are scheduled first,
# longest first (tests/scheduling.py), so the two longest run side by side.
MINUTES = {"update.rollback": 20, "update.policy": 15, "update.ab": 7, "update.tampered": 5}


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.long(m)) for name, m in MINUTES.items()]
)
def test_vm_update(name: str, tmp_path: Path) -> None:
    (outcome,) = run_tests(select_tests(REGISTRY, [name]), tmp_path)
    detail = ""
    if not outcome.passed:
        log = (outcome.output / "test.log").read_text()
        error = outcome.output / "error.txt"
        detail = log + (error.read_text() if error.exists() else "")
    assert outcome.passed, summary([outcome]) + "\n" + detail
