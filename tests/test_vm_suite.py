"""The VM test runner's own behaviour, with small registered tests that need no VM."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from railcar.vm.suite import (
    Registry,
    SuiteError,
    UnknownTestError,
    VmContext,
    run_tests,
    select_tests,
    summary,
    vm_test,
)


def _registry() -> Registry:
    registry = Registry()

    @vm_test("update.ab", timeout=30, registry=registry)
    def ab(ctx: VmContext) -> None:
        """A to B."""
        ctx.log("booting")
        (ctx.output / "console.log").write_text("Welcome\n")

    @vm_test("update.rollback", timeout=30, registry=registry)
    def rollback(ctx: VmContext) -> None:
        """Falls back."""
        assert 1 + 1 == 3, "the node did not come back on v1"

    @vm_test("boot.slow", timeout=0.05, registry=registry)
    def slow(ctx: VmContext) -> None:
        """Too slow."""
        time.sleep(0.2)

    return registry


def test_patterns_select_like_kola() -> None:
    registry = _registry()
    assert [t.name for t in select_tests(registry, ["update.*"])] == [
        "update.ab",
        "update.rollback",
    ]
    assert [t.name for t in select_tests(registry, [])] == [
        "boot.slow",
        "update.ab",
        "update.rollback",
    ]
    with pytest.raises(UnknownTestError, match=r"no test matches 'update\.nope'"):
        select_tests(registry, ["update.nope"])


def test_duplicate_names_are_refused() -> None:
    registry = _registry()
    with pytest.raises(SuiteError, match=r"two tests are named 'update\.ab'"):

        @vm_test("update.ab", timeout=1, registry=registry)
        def again(ctx: VmContext) -> None:
            pass


def test_outcomes_logs_and_summary(tmp_path: Path) -> None:
    registry = _registry()
    done: list[str] = []
    outcomes = run_tests(
        registry.all(), tmp_path / "out", parallel=2, on_done=lambda o: done.append(o.name)
    )
    by_name = {o.name: o for o in outcomes}
    assert sorted(done) == sorted(by_name)
    assert by_name["update.ab"].passed
    assert (tmp_path / "out/update.ab/console.log").read_text() == "Welcome\n"
    assert "booting" in (tmp_path / "out/update.ab/test.log").read_text()
    failed = by_name["update.rollback"]
    assert not failed.passed
    assert failed.error == "AssertionError: the node did not come back on v1"
    assert "Traceback" in (failed.output / "error.txt").read_text()
    slow = by_name["boot.slow"]
    assert not slow.passed and "over its 0 s timeout" in slow.error
    text = summary(outcomes)
    assert "--- PASS: update.ab (" in text
    assert "--- FAIL: update.rollback (" in text
    assert text.splitlines()[-1].startswith("FAIL: 1 passed, 2 failed")


def test_a_rerun_does_not_keep_an_old_failure(tmp_path: Path) -> None:
    registry = Registry()
    attempts: list[int] = []

    @vm_test("flaky.once", timeout=30, registry=registry)
    def once(ctx: VmContext) -> None:
        attempts.append(1)
        assert len(attempts) > 1

    first = run_tests(registry.all(), tmp_path)
    second = run_tests(registry.all(), tmp_path)
    assert not first[0].passed and second[0].passed
    assert not (tmp_path / "flaky.once/error.txt").exists()


def test_update_test_images_are_the_example_without_the_container_runtime(tmp_path: Path) -> None:
    from railcar.image.spec import parse_spec
    from railcar.vm.images import VARIANTS, example_spec, variant_spec

    example = parse_spec(example_spec().read_text(), path=example_spec())
    canary = variant_spec(VARIANTS["3.0.0"], tmp_path)
    assert canary.version == "3.0.0"
    assert "docker.io" in example.packages and "containerd" in example.packages
    runtime = {"docker.io", "containerd", "runc", "apparmor"}
    assert set(canary.packages) == set(example.packages) - runtime  # nothing else changed
    assert canary.enable_units == ("railcar-canary.service", "ssh.service")
    assert (canary.partitions.usr, example.partitions.usr) == (512, 1024)
    assert canary.partitions.root == example.partitions.root

    v2 = variant_spec(VARIANTS["2.0.0"], tmp_path)
    added = {str(f.target): f.source.read_text() for f in v2.files}.items() - {
        (str(f.target), f.source.read_text()) for f in example.files
    }
    assert added == {("/usr/share/railcar/update-test", "version 2 was here\n")}


def test_boot_reports_count_the_direct_line_only_even_after_a_login_prompt() -> None:
    from railcar.vm.nodes import boot_reports

    console = (
        "Debian GNU/Linux 12 railcar ttyS0\n\n"
        "railcar login: RAILCAR-BOOTED slot=A version=1.0.0 verity=yes\n"
        "[   35.81] boot-report[541]: RAILCAR-BOOTED slot=A version=1.0.0 verity=yes\n"
        "[   60.00] reboot: Restarting system\n"
        "RAILCAR-BOOTED slot=B version=2.0.0 verity=yes\n"
        "[   31.20] boot-report[530]: RAILCAR-BOOTED slot=B version=2.0.0 verity=yes\n"
    )
    reports = boot_reports(console)
    assert [(r["slot"], r["version"]) for r in reports] == [("A", "1.0.0"), ("B", "2.0.0")]
    assert boot_reports("railcar login: \n[ 1.0] boot-report[5]: RAILCAR-BOOTED slot=A\n") == []


def test_a_boot_report_still_being_written_is_not_counted_yet() -> None:
    """A CI run read ``usr=/dev/map`` from a line the guest had not finished printing."""
    from railcar.vm.nodes import boot_reports

    line = "RAILCAR-BOOTED slot=A version=1.0.0 usr=/dev/mapper/usr verity=yes\r\n"
    cut = line.index("/dev/map") + len("/dev/map")
    assert boot_reports("[  1.0] booting\r\n" + line[:cut]) == []
    assert boot_reports(line)[0]["usr"] == "/dev/mapper/usr"
