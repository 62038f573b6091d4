"""A small kola-like test runner: named VM tests, one output directory each, a summary.

Tests register themselves with :func:`vm_test` under dotted names (``update.ab``,
``update.rollback``…). :func:`select_tests` resolves names and shell-style patterns
(``update.*``) the way ``kola run`` does; :func:`run_tests` runs the selection, several at a
time if asked, each with its own output directory (console logs, the server's database, the
test's own log and, on failure, the full traceback), and returns one :class:`Outcome` per
test. Nothing here boots a VM itself: tests use :mod:`railcar.vm.qemu` and the host-side
server harness; this module only runs, times and reports them.

Errors::

    RailcarError
    └── SuiteError            (this module)
        └── UnknownTestError  a name or pattern that matches no registered test
"""

from __future__ import annotations

import fnmatch
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from railcar.errors import RailcarError


class SuiteError(RailcarError):
    """The test selection or the output directory cannot be used."""


class UnknownTestError(SuiteError):
    """A requested name or pattern matches no registered test."""


@dataclass
class VmContext:
    """What a running test gets: its name, its output directory and a log."""

    name: str
    output: Path
    deadline: float  # time.monotonic() by which the test should be done
    _log_lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, message: str) -> None:
        """Append a timestamped line to ``<output>/test.log``."""
        stamp = time.strftime("%H:%M:%S")
        with self._log_lock, (self.output / "test.log").open("a", encoding="utf-8") as f:
            f.write(f"{stamp} {message}\n")

    def remaining(self) -> float:
        """Seconds left before the deadline (at least 1, so waits still start)."""
        return max(1.0, self.deadline - time.monotonic())


VmTestFunction = Callable[[VmContext], None]


@dataclass(frozen=True)
class VmTest:
    name: str
    description: str
    run: VmTestFunction
    timeout: float  # seconds


@dataclass(frozen=True)
class Outcome:
    name: str
    passed: bool
    seconds: float
    output: Path
    error: str = ""  # one line; the traceback is in <output>/error.txt

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "passed": self.passed,
            "seconds": round(self.seconds, 1),
            "output": str(self.output),
            "error": self.error,
        }


class Registry:
    def __init__(self) -> None:
        self._tests: dict[str, VmTest] = {}

    def add(self, test: VmTest) -> None:
        if test.name in self._tests:
            raise SuiteError(f"two tests are named {test.name!r}")
        self._tests[test.name] = test

    def all(self) -> list[VmTest]:
        return sorted(self._tests.values(), key=lambda t: t.name)


REGISTRY = Registry()


def vm_test(
    name: str, *, timeout: float, registry: Registry | None = None
) -> Callable[[VmTestFunction], VmTestFunction]:
    """Register the decorated function as the VM test ``name``; its docstring's first line is
    the description shown by ``railcar test --list``."""

    def register(function: VmTestFunction) -> VmTestFunction:
        doc = (function.__doc__ or "").strip().splitlines()
        (registry or REGISTRY).add(VmTest(name, doc[0] if doc else "", function, timeout))
        return function

    return register


def select_tests(registry: Registry, patterns: Sequence[str]) -> list[VmTest]:
    """The tests matching any of ``patterns`` (all when none), in name order."""
    tests = registry.all()
    if not patterns:
        return tests
    chosen: dict[str, VmTest] = {}
    for pattern in patterns:
        matched = [t for t in tests if fnmatch.fnmatchcase(t.name, pattern)]
        if not matched:
            known = ", ".join(t.name for t in tests) or "none"
            raise UnknownTestError(f"no test matches {pattern!r} (known: {known})")
        chosen.update((t.name, t) for t in matched)
    return sorted(chosen.values(), key=lambda t: t.name)


def run_tests(
    tests: Sequence[VmTest],
    output: Path,
    *,
    parallel: int = 1,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run ``tests`` (``parallel`` at a time), each in ``output/<name>``; outcomes in the
    order of ``tests``."""
    if parallel < 1:
        raise SuiteError(f"parallel must be at least 1, got {parallel}")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SuiteError(f"cannot create output directory {output}: {exc.strerror}") from exc

    def one(test: VmTest) -> Outcome:
        outcome = _run_one(test, output / test.name)
        if on_done is not None:
            on_done(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="vm-test") as pool:
        return list(pool.map(one, tests))


def _run_one(test: VmTest, directory: Path) -> Outcome:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in ("error.txt", "test.log"):
        (directory / stale).unlink(missing_ok=True)
    started = time.monotonic()
    context = VmContext(test.name, directory, started + test.timeout)
    context.log(f"start {test.name}: {test.description}")
    try:
        test.run(context)
    except Exception as exc:
        (directory / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        context.log(f"FAIL {line}")
        return Outcome(test.name, False, time.monotonic() - started, directory, line)
    elapsed = time.monotonic() - started
    if elapsed > test.timeout:
        line = f"took {elapsed:.0f} s, over its {test.timeout:.0f} s timeout"
        context.log(f"FAIL {line}")
        return Outcome(test.name, False, elapsed, directory, line)
    context.log("PASS")
    return Outcome(test.name, True, elapsed, directory)


def summary(outcomes: Sequence[Outcome]) -> str:
    """kola-style lines: ``--- PASS: name (12.3s)``, and a total."""
    lines = []
    for o in outcomes:
        verdict = "PASS" if o.passed else "FAIL"
        lines.append(f"--- {verdict}: {o.name} ({o.seconds:.1f}s)")
        if not o.passed:
            lines.append(f"        {o.error}")
            lines.append(f"        output: {o.output}")
    failed = sum(not o.passed for o in outcomes)
    total = sum(o.seconds for o in outcomes)
    lines.append(
        f"{'FAIL' if failed else 'PASS'}: {len(outcomes) - failed} passed, {failed} failed "
        f"({total:.1f}s of test time)"
    )
    return "\n".join(lines)
