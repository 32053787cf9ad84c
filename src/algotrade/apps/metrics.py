"""Prometheus metrics of one service: its counters and gauges, read from the service's own
statistics at scrape time, its latency histograms, and the process's CPU and memory.

Counters cost nothing on the hot path: the services already count in plain dataclasses,
and a scrape turns those counts into metric families. Latencies are observed once per
unit of work (a stored batch, a signal, an acknowledged delivery), never per event.
Every name starts with ``algotrade_``; ``docs/operations.md`` lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from algotrade.apps.latency import ExactHistogram

PREFIX = "algotrade_"
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Latency histograms: name (without prefix) -> help. All in seconds.
LATENCIES: dict[str, str] = {
    "frame_to_stored_seconds": "Collector: market event received on this machine to stored "
    "(the oldest event of each stored batch).",
    "event_to_signal_seconds": "Processor: stored market event that closed a bar read to its "
    "signal stored.",
    "signal_to_published_seconds": "Processor: signal stored to published on the stream.",
    "published_to_acked_seconds": "Trader: stream entry added to acknowledged.",
    "exchange_to_acked_seconds": "Trader: exchange time of the signal's market event to the "
    "acknowledgement of its order (end to end; live data only, see unmeasured_latencies).",
    "received_to_signal_seconds": "Processor: the market event that closed a bar received "
    "by the collector to its signal stored (this machine's clock; live data only).",
    "received_to_acked_seconds": "Trader: the signal's market event received by the "
    "collector to the acknowledgement of its order (this machine's clock; live data only).",
    "order_placement_seconds": "Trader: an order sent to the gateway (the exchange, or the "
    "paper broker) to its answer.",
}

#: Histograms of operations on a dependency, labelled ``op``: name (without prefix) -> help.
OPERATIONS: dict[str, str] = {
    "store_operation_seconds": "One event store operation (append, read_all, read_stream, "
    "last_event, head, tracking_position), by op.",
    "redis_operation_seconds": "One Redis operation (publish, ack), by op.",
}

#: Beyond this distance from the local clock a latency read from the data's own times is not
#: the pipeline's: the data is historical or simulated (a replay, the synthetic market).
PLAUSIBLE_LATENCY = 3600.0

#: The histograms measured from the data's own times (see ``observe_data_latency``).
DATA_LATENCIES = frozenset(
    {"exchange_to_acked_seconds", "received_to_signal_seconds", "received_to_acked_seconds"}
)
BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Figure:
    """One metric family read at scrape time: a single value or one value per label set."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    value: float | None = None
    labels: tuple[str, ...] = ()
    values: Sequence[tuple[tuple[str, ...], float]] = ()


Figures = Callable[[], Iterable[Figure]]


class _FigureCollector(Collector):
    def __init__(self, figures: Sequence[Figures]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        for source in self.figures:
            for f in source():
                family: CounterMetricFamily | GaugeMetricFamily
                name = PREFIX + f.name
                if f.kind == "counter":
                    family = CounterMetricFamily(name, f.help, labels=f.labels or None)
                else:
                    family = GaugeMetricFamily(name, f.help, labels=f.labels or None)
                if f.labels:
                    for label_values, value in f.values:
                        family.add_metric(list(label_values), value)
                elif f.value is not None:
                    family.add_metric([], f.value)
                yield family


def _version() -> str:
    try:
        return version("algotrade")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


class ServiceMetrics:
    """The registry one service exposes on ``/metrics``."""

    def __init__(
        self,
        service: str,
        figures: Sequence[Figures],
        latencies: Iterable[str],
        operations: Iterable[str] = (),
    ) -> None:
        self.service = service
        latencies = list(latencies)
        # Exported from the start (0), so the dashboard's series exists before any replay.
        self.unmeasured: dict[str, int] = {n: 0 for n in latencies if n in DATA_LATENCIES}
        self.registry = CollectorRegistry(auto_describe=False)
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(standard)
        info: Figures = lambda: [  # noqa: E731 - a one-line figure source
            Figure("build_info", "gauge", "The running algotrade: version and service.",
                   labels=("version", "service"), values=[((_version(), service), 1.0)])
        ]  # fmt: skip
        unmeasured: Figures = lambda: [  # noqa: E731 - a one-line figure source
            Figure("unmeasured_latencies", "counter", "Latencies read from the data's own "
                   "times more than an hour off the local clock (replayed or simulated data), "
                   "not observed.", labels=("histogram",),
                   values=[((name,), n) for name, n in self.unmeasured.items()])
        ]  # fmt: skip
        self.registry.register(_FigureCollector([info, *figures, unmeasured]))
        self.histograms = {
            name: Histogram(
                PREFIX + name,
                LATENCIES[name],
                buckets=BUCKETS,
                registry=self.registry,
            )
            for name in latencies
        }
        self.exact = {name: ExactHistogram() for name in latencies}
        self.operations = {
            name: Histogram(
                PREFIX + name, OPERATIONS[name], ["op"], buckets=BUCKETS, registry=self.registry
            )
            for name in operations
        }

    def observe(self, name: str, seconds: float) -> None:
        """Record one latency of a histogram this service has (others are ignored)."""
        histogram = self.histograms.get(name)
        if histogram is not None:
            histogram.observe(max(0.0, seconds))
            self.exact[name].record(seconds)

    def observe_data_latency(self, name: str, seconds: float) -> None:
        """Record a latency measured from a time the data carries (its exchange time): one
        more than :data:`PLAUSIBLE_LATENCY` off is counted as unmeasured instead."""
        if abs(seconds) > PLAUSIBLE_LATENCY:
            self.unmeasured[name] = self.unmeasured.get(name, 0) + 1
        else:
            self.observe(name, seconds)

    def operation_observer(self, name: str) -> Callable[[str, float], None]:
        """Return what records one operation of the ``name`` histogram: ``(op, seconds)``."""
        histogram = self.operations[name]
        return lambda op, seconds: histogram.labels(op).observe(seconds)

    def latencies(self) -> dict[str, dict[str, Any]]:
        """Return every latency's exact histogram (``/latencies``, see :mod:`.latency`)."""
        return {name: h.snapshot() for name, h in self.exact.items()}

    def render(self) -> bytes:
        """Return the registry in the Prometheus text format."""
        return generate_latest(self.registry)
