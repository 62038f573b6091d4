"""Prometheus metrics for the update server, with bounded label sets.

Counters and the latency histogram are updated per Omaha request; fleet gauges (instances per
channel, version and status) are computed from the database at scrape time, capped to the
``MAX_SERIES`` largest groups of labels so a fleet with many stray versions cannot explode the
series count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from railcar.omaha.model import Request, Response
from railcar.server.db import Database
from railcar.server.models import Channel, Group, InstanceApplication
from railcar.server.policy import STATS_VALIDITY
from railcar.server.vocab import InstanceStatus

MAX_SERIES = 50
_ANSWERS = {"ok": "grant", "noupdate": "noupdate"}
_KNOWN_EVENTS = {(3, 0), (3, 1), (3, 2), (13, 1), (14, 1), (800, 1), (3, 9)}


class _FleetCollector(Collector):
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db, self._clock = db, clock

    def collect(self) -> Iterable[GaugeMetricFamily]:
        by_version = GaugeMetricFamily(
            "railcar_instances",
            "Instances seen in the last day, by channel, version and status",
            labels=["channel", "version", "status"],
        )
        since = self._clock() - STATS_VALIDITY
        with self._db.read() as s:
            rows = s.execute(
                select(
                    Channel.name,
                    InstanceApplication.version,
                    InstanceApplication.status,
                    func.count(),
                )
                .select_from(InstanceApplication)
                .join(Group, Group.id == InstanceApplication.group_id, isouter=True)
                .join(Channel, Channel.id == Group.channel_id, isouter=True)
                .where(InstanceApplication.last_check_for_updates > since)
                .group_by(Channel.name, InstanceApplication.version, InstanceApplication.status)
                .order_by(func.count().desc())
            ).all()
        for channel, version, status, count in rows[:MAX_SERIES]:
            name = InstanceStatus(status).name.lower() if status else "none"
            by_version.add_metric([channel or "", version, name], count)
        other = sum(count for *_, count in rows[MAX_SERIES:])
        if other:
            by_version.add_metric(["", "other", "other"], other)
        yield by_version


class _BatchCollector(Collector):
    """The Omaha writer thread's batches, read at scrape time (nothing per request): the mean
    batch size is the rate of the second over the rate of the first."""

    def __init__(self, counts: Callable[[], tuple[int, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[CounterMetricFamily]:
        batches, requests = self._counts()
        yield CounterMetricFamily(
            "railcar_omaha_write_batches",
            "Batches the Omaha writer thread answered (SQLite: transactions of the group"
            " commit; PostgreSQL: fast-path batches)",
            value=batches,
        )
        yield CounterMetricFamily(
            "railcar_omaha_batched_requests",
            "Omaha requests answered in those batches",
            value=requests,
        )


class ServerMetrics:
    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        batches: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        """``batches``: the Omaha writer's (batches, requests) so far, if it batches."""
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "railcar_omaha_request_seconds",
            "Time to answer an Omaha request",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.checks = Counter(
            "railcar_omaha_update_checks",
            "Update checks by answer",
            ["answer"],
            registry=self.registry,
        )
        self.events = Counter(
            "railcar_omaha_events",
            "Events reported by nodes",
            ["type", "result"],
            registry=self.registry,
        )
        self.omaha_rejected = Counter(
            "railcar_omaha_rejected_requests",
            "Omaha requests refused as malformed or oversized",
            registry=self.registry,
        )
        self.registry.register(_FleetCollector(db, clock))
        if batches is not None:
            self.registry.register(_BatchCollector(batches))
        # Labelled children, kept once first used: labels() validates and locks on each call.
        self._events: dict[tuple[str, str], Counter] = {}
        self._checks: dict[str, Counter] = {}

    def _event(self, kind: str, result: str) -> Counter:
        child = self._events.get((kind, result))
        if child is None:
            child = self._events[kind, result] = self.events.labels(kind, result)
        return child

    def _check(self, answer: str) -> Counter:
        child = self._checks.get(answer)
        if child is None:
            child = self._checks[answer] = self.checks.labels(answer)
        return child

    def observe_omaha(self, request: Request, response: Response, seconds: float) -> None:
        self.latency.observe(seconds)
        for app in request.apps:
            for event in app.events:
                key = (event.type, event.result)
                if key in _KNOWN_EVENTS:
                    self._event(str(event.type), str(event.result)).inc()
                else:
                    self._event("other", "other").inc()
        for answered in response.apps:
            if answered.updatecheck is not None:
                status = answered.updatecheck.status
                self._check(_ANSWERS.get(status, "error")).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
