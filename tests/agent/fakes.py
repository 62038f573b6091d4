"""In-memory IO for driver tests: a scripted Omaha server, a downloader that writes bytes it is
given, an installer and boot control that record what they were asked, a clock that only moves
when told, and a waiter that advances it."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from railcar.agent.config import AgentConfig
from railcar.agent.download import DownloadError, partial_path
from railcar.agent.driver import Driver, DriverIO, DriverSettings
from railcar.agent.health import HealthPolicy
from railcar.agent.install import Installed, InstallError, SlotTarget
from railcar.agent.reboot import RebootReason
from railcar.agent.slots import Slot, other
from railcar.gpt import GptPrio
from railcar.omaha.model import (
    AppResponse,
    Event,
    Manifest,
    Package,
    PostinstallAction,
    Request,
    Response,
    UpdateCheck,
)
from railcar.progress import Progress
from tests.agent.nodes import node_config

SERVER = "http://omaha.test/v1/update/"
PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
PAYLOAD_SHA = base64.b64encode(hashlib.sha256(PAYLOAD).digest()).decode()


def config(
    boot_id: str = "0b6a0c0e-2f0b-4f5e-9d6a-3c1d2e4f5a6b", version: str = "1.0.0"
) -> AgentConfig:
    return node_config(
        {
            "/etc/railcar/update.conf": f"SERVER={SERVER}\nREBOOT_STRATEGY=off\n",
            "/usr/lib/railcar/release": (
                f"RAILCAR_RELEASE_VERSION={version}\nRAILCAR_RELEASE_BOARD=amd64-usr\n"
            ),
            "/proc/sys/kernel/random/boot_id": boot_id + "\n",
        }
    )


def offer_response(appid: str, version: str = "2.0.0", sha: str = PAYLOAD_SHA) -> Response:
    manifest = Manifest(
        version, (Package("update.gz", len(PAYLOAD)),), PostinstallAction(sha, True)
    )
    check = UpdateCheck("ok", ("http://pkg.test/a/", "http://pkg.test/b/"), manifest)
    return Response((AppResponse(appid, updatecheck=check),))


def noupdate(appid: str) -> Response:
    return Response((AppResponse(appid, updatecheck=UpdateCheck("noupdate")),))


@dataclass
class Omaha:
    """Answers update checks from a script (the last answer repeats); events get an ack."""

    answers: list[Response | Exception] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def __call__(self, url: str, request: Request) -> Response:
        assert url == SERVER
        self.requests.append(request)
        app = request.apps[0]
        if not app.updatecheck:
            return Response((AppResponse(app.appid),))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def events(self) -> list[Event]:
        return [e for r in self.requests for e in r.apps[0].events]


@dataclass
class Fetcher:
    """Writes ``data`` in ``steps`` pieces, or fails with ``error`` after half of it."""

    data: bytes = PAYLOAD
    steps: int = 10
    error: DownloadError | None = None
    calls: list[tuple[tuple[str, ...], int]] = field(default_factory=list)

    def fetch(
        self, urls: Sequence[str], dest: Path, size: int, sha256_b64: str, progress: Progress
    ) -> Path:
        partial = partial_path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        offset = partial.stat().st_size if partial.exists() else 0
        self.calls.append((tuple(urls), offset))
        progress.start("download", size)
        progress.advance(offset)
        piece = max(1, (size - offset) // self.steps)
        with partial.open("ab") as f:
            for start in range(offset, size, piece):
                if self.error is not None and start >= size // 2:
                    raise self.error
                f.write(self.data[start : start + piece])
                progress.advance(min(piece, size - start))
        partial.replace(dest)
        return dest


@dataclass
class Boot:
    booted: Slot = Slot.A
    states: dict[Slot, GptPrio] = field(
        default_factory=lambda: {Slot.A: GptPrio(1, 0, True), Slot.B: GptPrio()}
    )
    calls: list[str] = field(default_factory=list)

    def booted_slot(self) -> Slot:
        return self.booted

    def mark_unbootable(self, slot: Slot) -> None:
        self.calls.append(f"unbootable {slot.value}")
        self.states[slot] = GptPrio()

    def mark_install_target(self, slot: Slot) -> None:
        self.calls.append(f"target {slot.value}")
        self.states[slot] = GptPrio(2, 1, False)

    def mark_booted_good(self) -> None:
        self.calls.append(f"good {self.booted.value}")
        self.states[self.booted] = GptPrio(2, 0, True)

    def next_boot(self) -> Slot:
        return Slot.B if self.states[Slot.B].priority > self.states[Slot.A].priority else Slot.A

    def slot_state(self, slot: Slot) -> GptPrio:
        return self.states[slot]


@dataclass
class FakeInstaller:
    boot: Boot
    fail: dict[str, InstallError] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def verify(self, payload: Path) -> None:
        self.calls.append(f"verify {payload.read_bytes() == PAYLOAD}")
        if "verify" in self.fail:
            raise self.fail["verify"]

    def install(self, payload: Path, new_version: str) -> Installed:
        self.calls.append(f"install {new_version}")
        if "install" in self.fail:
            raise self.fail["install"]
        slot = other(self.boot.booted)
        return Installed(slot, SlotTarget(Path("/dev/null")), None)

    def switch(self) -> Slot:
        self.calls.append("switch")
        if "switch" in self.fail:
            raise self.fail["switch"]
        slot = other(self.boot.booted)
        self.boot.mark_install_target(slot)
        return slot


@dataclass
class Clock:
    time: float = 1000.0

    def now(self) -> datetime:
        return datetime(2026, 11, 25, tzinfo=UTC) + timedelta(seconds=self.time)

    def monotonic(self) -> float:
        return self.time


@dataclass
class Waiter:
    """Advances the clock by each wait; calls ``on_wait`` (e.g. to stop the driver)."""

    clock: Clock
    waits: list[float] = field(default_factory=list)
    on_wait: list[object] = field(default_factory=list)

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.time += seconds
        if self.on_wait:
            action = self.on_wait.pop(0)
            assert callable(action)
            action()

    def wake(self) -> None:
        pass


@dataclass
class Probe:
    """Scripted systemd: each look pops the next (target active, failed units)."""

    looks: list[tuple[bool, tuple[str, ...]]]
    clock: Clock | None = None

    def is_active(self, unit: str) -> bool:
        active, _ = self.looks[0]
        return active

    def is_failed(self, unit: str) -> bool:
        _, failed = self.looks[0]
        return unit in failed

    def sleep(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.time += seconds
        if len(self.looks) > 1:
            self.looks.pop(0)


@dataclass
class Rebooter:
    reasons: list[RebootReason] = field(default_factory=list)

    def reboot(self, reason: RebootReason) -> None:
        self.reasons.append(reason)


@dataclass
class Rig:
    """A driver over the fakes, and the fakes to look at."""

    state_dir: Path
    cfg: AgentConfig = field(default_factory=config)
    omaha: Omaha = field(default_factory=Omaha)
    fetcher: Fetcher = field(default_factory=Fetcher)
    boot: Boot = field(default_factory=Boot)
    clock: Clock = field(default_factory=Clock)
    rebooter: Rebooter = field(default_factory=Rebooter)
    probe: Probe = field(default_factory=lambda: Probe([(True, ())]))
    health: HealthPolicy | None = None

    def __post_init__(self) -> None:
        self.installer = FakeInstaller(self.boot)
        self.waiter = Waiter(self.clock)
        if not self.omaha.answers:
            self.omaha.answers.append(offer_response(self.cfg.release.appid))

    def driver(self, **settings: object) -> Driver:
        io = DriverIO(
            load_config=lambda: self.cfg,
            exchange=self.omaha,
            fetcher=self.fetcher,
            installer=self.installer,
            boot=self.boot,
            rebooter=self.rebooter,
            probe=self.probe,
            clock=self.clock,
            waiter=self.waiter,
            rng=random.Random(5),
            sleep=self.probe.sleep,
        )
        options: dict[str, object] = {
            "state_dir": self.state_dir,
            "reboot_required": self.state_dir / "run" / "reboot-required",
            "health": self.health,
            **settings,
        }
        return Driver(io, DriverSettings(**options))  # type: ignore[arg-type]
