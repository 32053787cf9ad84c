"""Load run: the fake exchange at increasing rates until the pipeline falls behind.

The three services run as real processes (``algotrade collector|processor|trader``) on one
SQLite store with signals over Redis, exactly as a user starts them; the fake Binance
exchange streams depth diffs (and about one trade for two diffs) at each rate for a
warm-up, then a measured window. A rate is *sustained* when, over the window:

* the collector received at least 95 % of the frames the exchange sent,
* the processor's lag at the end is under two seconds of market data,
* the end-to-end p99 latency, from a market event's exchange time to the trader's
  acknowledgement of the order of the signal it triggered (the trader's
  ``algotrade_exchange_to_acked_seconds`` histogram), is under 50 ms.

Latencies are exact: each service counts every sample on ``/latencies`` (to the
microsecond below 2 ms, within 0.1 % above: ``algotrade.apps.latency``), and the window's
samples are the difference of two snapshots. Memory is each process's resident set
(``VmRSS``) at the end of the window. Bars are 1 s and the SMAs 2/3, so that
crossovers (and orders) happen every few seconds.

Then the throughput series: the same services over 100 symbols (the rate shared by them,
which also makes hundreds of signals a window), at rates up to 6,800 depth steps/s in all
(about 10,000 frames/s with the trades), not stopped by the p99, each process's CPU share
measured from ``/proc`` over the window: which process saturates first.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.fake_binance import FakeBinance
from tests.support.processes import Service, start_service, wait_until
from tests.support.servers import mongo_url, redis_url, with_database

from algotrade.apps.latency import quantile, window

RATES = (100, 400, 1600)  # depth steps per second (trades: half as many)
#: The throughput series: this many symbols, these depth steps/s in all.
THROUGHPUT_SYMBOLS = 100
THROUGHPUT_RATES = (1600, 3400, 6800)
#: The same on the MongoDB stand-in.
MONGO_RATES = (400, 1600)
WARM_UP = 10.0
WINDOW = 45.0
GOAL = 0.050


#: The stages reported, in pipeline order: (service, histogram, label). Those from
#: "received" start when the collector read the frame; the others are one process's step.
STAGES = (
    ("collector", "frame_to_stored_seconds", "frame to stored (each batch's oldest)"),
    ("processor", "event_to_signal_seconds", "stored event read to signal stored"),
    ("processor", "received_to_signal_seconds", "frame received to signal stored"),
    ("processor", "signal_to_published_seconds", "signal stored to published"),
    ("trader", "published_to_acked_seconds", "published to acknowledged (ms ids)"),
    ("trader", "received_to_acked_seconds", "frame received to acknowledged"),
    ("trader", "exchange_to_acked_seconds", "exchange time to acknowledged"),
)
QUANTILES = (0.5, 0.99, 0.999, 1.0)


def scrape(service: Service) -> str:
    """Return the service's /metrics text."""
    return httpx.get(service.url("/metrics"), timeout=5.0).text


def exact(service: Service) -> dict[str, Any]:
    """Return the service's exact latency histograms (``/latencies``)."""
    body: dict[str, Any] = httpx.get(service.url("/latencies"), timeout=5.0).json()
    return body


def stage_figures(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> dict[str, tuple[int, tuple[float | None, ...]]]:
    """Return each stage's window: (samples, p50/p99/p99.9/max in seconds)."""
    out: dict[str, tuple[int, tuple[float | None, ...]]] = {}
    for service, name, _ in STAGES:
        if name not in after.get(service, {}):
            continue
        counts = window(before[service].get(name), after[service][name])
        out[name] = (sum(counts.values()), tuple(quantile(counts, q) for q in QUANTILES))
    return out


def value(text: str, name: str) -> float:
    """Return a metric's value (summed over labels; 0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rss_mib(pid: int) -> float:
    """Return a process's resident memory in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Step:
    """One rate's measurements."""

    rate: int
    offered: float
    received: float
    lag: float
    signals: int
    p99_e2e: float | None
    p99_stored: float | None
    p99_signal: float | None
    memory: dict[str, float]
    cpu: dict[str, float]
    symbols: int = 1
    p50_e2e: float | None = None
    stages: dict[str, tuple[int, tuple[float | None, ...]]] = field(default_factory=dict)

    @property
    def sustained(self) -> bool:
        return (
            self.received >= 0.95 * self.offered
            and self.lag < 2 * self.rate * 1.5
            and self.p99_e2e is not None
            and self.p99_e2e <= GOAL
        )


@contextlib.contextmanager
def stack(
    rate: int,
    workdir: Path,
    redis: str,
    symbols: tuple[str, ...] = ("BTCUSDT",),
    store: str | None = None,
) -> Iterator[tuple[FakeBinance, list[Service]]]:
    """Run the fake exchange (``rate`` depth steps/s in all, shared by ``symbols``) and the
    three services on ``store`` (a SQLite file of the run by default); stop them at the end."""
    exchange = FakeBinance(symbols, rate=rate / len(symbols))
    # The generator's own cyclic-GC pauses (measured up to 42 ms in this process) would
    # delay frames it already stamped and count against the pipeline: off while it runs.
    gc.collect()
    gc.disable()
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(exchange) as fake,
    ):
        env = {
            **os.environ,
            "ALGOTRADE_SYMBOL": ",".join(symbols),
            "ALGOTRADE_STORE": store or str(workdir / f"load-{rate}-{len(symbols)}.db"),
            "ALGOTRADE_REDIS_URL": redis,
            "ALGOTRADE_SIGNAL_STREAM": f"load-{rate}",
            "ALGOTRADE_BINANCE_WS_URL": fake.ws_url,
            "ALGOTRADE_BINANCE_REST_URL": fake.rest_url,
            "ALGOTRADE_WARMUP": "0",
        }
        fast = ["--interval", "1s", "--short", "2", "--long", "3"]
        services = [
            start_service("collector", ["--flush-interval", "10ms"], env, workdir),
            start_service("processor", fast, env, workdir),
            start_service("trader", [], env, workdir),
        ]
        try:
            for service in services:
                wait_until(partial(_answers, service), 60, f"{service.name} serves /metrics")
            yield fake, services
        finally:
            for service in services:
                service.process.terminate()
            for service in services:
                try:
                    service.process.wait(timeout=30)
                except Exception:
                    service.process.kill()
                for log in service.logs:
                    log.close()
            gc.enable()


def _answers(service: Service) -> bool:
    try:
        return httpx.get(service.url("/livez"), timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def cpu_seconds(pid: int) -> float:
    """Return a process's user and system CPU time so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    rate: int,
    workdir: Path,
    redis: str,
    symbols: tuple[str, ...] = ("BTCUSDT",),
    store: str | None = None,
    servers: dict[str, int] | None = None,
) -> Step:
    """Run one rate: warm up, then measure a window (also the CPU share of ``servers``,
    name -> process id)."""
    with stack(rate, workdir, redis, symbols, store) as (fake, (collector, processor, trader)):
        time.sleep(WARM_UP)
        sent0 = fake.sent
        c0, t0 = scrape(collector), scrape(trader)
        exact0 = {s.name: exact(s) for s in (collector, processor, trader)}
        pids = {s.name: s.process.pid for s in (collector, processor, trader)} | (servers or {})
        used0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        time.sleep(WINDOW)
        sent1 = fake.sent
        c1, p1, t1 = scrape(collector), scrape(processor), scrape(trader)
        exact1 = {s.name: exact(s) for s in (collector, processor, trader)}
        spent = time.monotonic() - started
        cpu = {name: (cpu_seconds(pid) - used0[name]) / spent for name, pid in pids.items()}
        memory = {s.name: rss_mib(s.process.pid) for s in (collector, processor, trader)}
    stages = stage_figures(exact0, exact1)

    def at(name: str, q: float) -> float | None:
        return stages[name][1][QUANTILES.index(q)] if name in stages else None

    return Step(
        rate=rate,
        offered=(sent1 - sent0) / WINDOW,
        received=(value(c1, "algotrade_frames_total") - value(c0, "algotrade_frames_total"))
        / WINDOW,
        lag=value(p1, "algotrade_processor_lag_events"),
        signals=int(
            value(t1, "algotrade_acknowledged_total") - value(t0, "algotrade_acknowledged_total")
        ),
        p99_e2e=at("exchange_to_acked_seconds", 0.99),
        p99_stored=at("frame_to_stored_seconds", 0.99),
        p99_signal=at("received_to_signal_seconds", 0.99),
        memory=memory,
        cpu=cpu,
        symbols=len(symbols),
        p50_e2e=at("exchange_to_acked_seconds", 0.5),
        stages=stages,
    )


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def stage_table(step: Step) -> list[str]:
    """Return one run's per-stage percentiles as a Markdown table."""
    lines = [
        "| stage | process | samples | p50 | p99 | p99.9 | max |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for service, name, label in STAGES:
        if name in step.stages:
            count, qs = step.stages[name]
            lines.append(
                f"| {label} | {service} | {count:,} | " + " | ".join(_ms(q) for q in qs) + " |"
            )
    return lines


def throughput_rows(steps: list[Step]) -> list[str]:
    """Return the throughput rows: rates, signals, e2e percentiles, CPU and memory."""
    lines = [
        "| depth steps/s | frames/s offered | frames/s received | processor lag | signals "
        "| p50 / p99 / p99.9 exchange to acked | CPU collector / processor / trader "
        "| RSS collector / processor / trader |",
        "|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for s in steps:
        share = " / ".join(f"{s.cpu[n]:.2f}" for n in ("collector", "processor", "trader"))
        share += "".join(f" (the {n}: {v:.2f})" for n, v in s.cpu.items() if n not in s.memory)
        memory = " / ".join(f"{s.memory[n]:.0f}" for n in ("collector", "processor", "trader"))
        e2e = s.stages.get("exchange_to_acked_seconds", (0, (None,) * len(QUANTILES)))[1]
        lines.append(
            f"| {s.rate:,} | {s.offered:,.0f} | {s.received:,.0f} | {s.lag:,.0f} | {s.signals} "
            f"| {_ms(e2e[0])} / {_ms(e2e[1])} / {_ms(e2e[2])} | {share} | {memory} MiB |"
        )
    return lines


def run(rates: tuple[int, ...] = RATES) -> tuple[list[Step], str]:
    """Step up the rate until one is not sustained; then the throughput series over many
    symbols on SQLite and on the MongoDB stand-in; return the steps and Markdown."""
    steps: list[Step] = []
    many = tuple(f"S{i:03d}USDT" for i in range(THROUGHPUT_SYMBOLS))
    wide: list[Step] = []
    mongo: list[Step] = []
    with redis_url() as (redis, _), tempfile.TemporaryDirectory() as tmp:
        for rate in rates:
            print(f"load: {rate} steps/s ...", file=sys.stderr, flush=True)
            step = measure(rate, Path(tmp), redis)
            steps.append(step)
            print(f"load: {step}", file=sys.stderr, flush=True)
            if not step.sustained:
                break
        for rate in THROUGHPUT_RATES:
            print(f"load: {rate} steps/s over {len(many)} symbols ...", file=sys.stderr, flush=True)
            wide.append(measure(rate, Path(tmp), redis, many))
            print(f"load: {wide[-1]}", file=sys.stderr, flush=True)
        with mongo_url() as (url, server):
            own = {"MongoDB server": server.process.pid} if server and server.process else {}
            for rate in MONGO_RATES:
                print(f"load: {rate} steps/s over {len(many)} symbols, MongoDB ...",
                      file=sys.stderr, flush=True)  # fmt: skip
                store = with_database(url, f"load_{rate}")
                mongo.append(measure(rate, Path(tmp), redis, many, store, own))
                print(f"load: {mongo[-1]}", file=sys.stderr, flush=True)
    best = [s for s in steps if s.sustained]
    top = best[-1] if best else None
    lines = [
        "## Load: the highest sustained rate with end-to-end p99 under 50 ms",
        "",
        "Command: `python bench/run_all.py --only=load` (also part of `nox -s bench`).",
        "Collector (`--flush-interval 10ms`: the longest wait of its adaptive batches),",
        "processor (1 s bars, SMA 2/3) and trader as separate processes on one SQLite store,",
        "signals over Redis, the fake exchange in the benchmark process; each rate warms up",
        f"{WARM_UP:g} s, then {WINDOW:g} s are measured. Latencies are exact (every sample, "
        "each service's `/latencies`): to 1 us below 2 ms, within 0.1 % above. All on this",
        "2-core machine at once.",
        "",
        "| depth steps/s | frames/s offered | frames/s received | processor lag | signals "
        "| p99 frame to stored | p99 received to signal | p99 exchange to acked | RSS "
        "collector / processor / trader | sustained |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in steps:
        memory = " / ".join(f"{s.memory[n]:.0f}" for n in ("collector", "processor", "trader"))
        lines.append(
            f"| {s.rate:,} | {s.offered:,.0f} | {s.received:,.0f} | {s.lag:,.0f} | {s.signals} "
            f"| {_ms(s.p99_stored)} | {_ms(s.p99_signal)} | {_ms(s.p99_e2e)} | {memory} MiB "
            f"| {'yes' if s.sustained else 'no'} |"
        )
    lines.append("")
    if top is None:
        lines.append("No rate was sustained.")
    else:
        memory = ", ".join(f"{n} {v:.0f} MiB" for n, v in top.memory.items())
        lines.append(
            f"Highest sustained rate on one symbol: **{top.offered:,.0f} frames/s** "
            f"({top.rate:,} depth steps/s) with end-to-end p99 {_ms(top.p99_e2e)}; memory at "
            f"that rate: {memory}."
        )
    lines += [
        "",
        f"### Throughput over {THROUGHPUT_SYMBOLS} symbols, SQLite",
        "",
        "The rate shared by the symbols (so that every second closes 100 bars and hundreds "
        "of signals come each window), the same services and window, not stopped by the p99; "
        "each process's CPU share is its user and system time over the window (1.0 is a "
        "whole core):",
        "",
        *throughput_rows(wide),
    ]
    for s in wide:
        lines += ["", f"Stages at {s.offered:,.0f} frames/s ({s.signals:,} signals):", ""]
        lines += stage_table(s)
    lines += [
        "",
        f"### Throughput over {THROUGHPUT_SYMBOLS} symbols, the MongoDB stand-in",
        "",
        "The same run on the session's MongoDB (here the `nx-27017` stand-in, a Python "
        "server on the same 2 cores; its CPU share in brackets):",
        "",
        *throughput_rows(mongo),
    ]
    for s in mongo:
        title = f"Stages at {s.offered:,.0f} frames/s on MongoDB ({s.signals:,} signals):"
        lines += ["", title, ""]
        lines += stage_table(s)
    return [*steps, *wide, *mongo], "\n".join(lines)


if __name__ == "__main__":
    print(run()[1])
