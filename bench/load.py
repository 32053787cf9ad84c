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

Latencies come from the services' Prometheus histograms (bucket bounds: a p99 "<= 25 ms"
means the 99th percentile fell in the bucket ending at 25 ms). Memory is each process's
resident set (``VmRSS``) at the end of the window. Bars are 1 s and the SMAs 2/3, so that
crossovers (and orders) happen every few seconds.

Then the throughput series: the same services over 100 symbols (the rate shared by them,
which also makes hundreds of signals a window), at rates up to 6,800 depth steps/s in all
(about 10,000 frames/s with the trades), not stopped by the p99, each process's CPU share
measured from ``/proc`` over the window: which process saturates first.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import anyio.from_thread
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.fake_binance import FakeBinance
from tests.support.processes import Service, start_service, wait_until
from tests.support.servers import redis_url

RATES = (
    25,
    50,
    100,
    200,
    300,
    400,
    600,
    800,
    1200,
    1600,
)  # depth steps per second (trades: half as many)
#: The throughput series: this many symbols, these depth steps/s in all.
THROUGHPUT_SYMBOLS = 100
THROUGHPUT_RATES = (1600, 3400, 6800)
WARM_UP = 10.0
WINDOW = 45.0
GOAL = 0.050
BUCKET = re.compile(r'^(algotrade_[a-z_]+)_bucket\{le="([^"]+)"\} ([0-9.e+]+)$')


def scrape(service: Service) -> str:
    """Return the service's /metrics text."""
    return httpx.get(service.url("/metrics"), timeout=5.0).text


def buckets(text: str, name: str) -> dict[float, float]:
    """Return the cumulative bucket counts of one histogram."""
    out: dict[float, float] = {}
    for line in text.splitlines():
        found = BUCKET.match(line)
        if found and found[1] == name:
            out[float("inf") if found[2] == "+Inf" else float(found[2])] = float(found[3])
    return out


def value(text: str, name: str) -> float:
    """Return a metric's value (summed over labels; 0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """Return the upper bound of the bucket holding quantile ``q`` of the window's samples."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * total:
            return bound
    return float("inf")


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
    rate: int, workdir: Path, redis: str, symbols: tuple[str, ...] = ("BTCUSDT",)
) -> Iterator[tuple[FakeBinance, list[Service]]]:
    """Run the fake exchange (``rate`` depth steps/s in all, shared by ``symbols``) and the
    three services; stop them at the end."""
    exchange = FakeBinance(symbols, rate=rate / len(symbols))
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(exchange) as fake,
    ):
        env = {
            **os.environ,
            "ALGOTRADE_SYMBOL": ",".join(symbols),
            "ALGOTRADE_STORE": str(workdir / f"load-{rate}.db"),
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


def _answers(service: Service) -> bool:
    try:
        return httpx.get(service.url("/livez"), timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def cpu_seconds(pid: int) -> float:
    """Return a process's user and system CPU time so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(rate: int, workdir: Path, redis: str, symbols: tuple[str, ...] = ("BTCUSDT",)) -> Step:
    """Run one rate: warm up, then measure a window."""
    with stack(rate, workdir, redis, symbols) as (fake, (collector, processor, trader)):
        time.sleep(WARM_UP)
        sent0 = fake.sent
        c0, p0, t0 = scrape(collector), scrape(processor), scrape(trader)
        used0 = {s.name: cpu_seconds(s.process.pid) for s in (collector, processor, trader)}
        started = time.monotonic()
        time.sleep(WINDOW)
        sent1 = fake.sent
        c1, p1, t1 = scrape(collector), scrape(processor), scrape(trader)
        spent = time.monotonic() - started
        cpu = {s.name: (cpu_seconds(s.process.pid) - used0[s.name]) / spent
               for s in (collector, processor, trader)}  # fmt: skip
        memory = {s.name: rss_mib(s.process.pid) for s in (collector, processor, trader)}
    e2e = "algotrade_exchange_to_acked_seconds"
    stored = "algotrade_frame_to_stored_seconds"
    signal = "algotrade_event_to_signal_seconds"
    return Step(
        rate=rate,
        offered=(sent1 - sent0) / WINDOW,
        received=(value(c1, "algotrade_frames_total") - value(c0, "algotrade_frames_total"))
        / WINDOW,
        lag=value(p1, "algotrade_processor_lag_events"),
        signals=int(
            value(t1, "algotrade_acknowledged_total") - value(t0, "algotrade_acknowledged_total")
        ),
        p99_e2e=quantile(buckets(t0, e2e), buckets(t1, e2e), 0.99),
        p99_stored=quantile(buckets(c0, stored), buckets(c1, stored), 0.99),
        p99_signal=quantile(buckets(p0, signal), buckets(p1, signal), 0.99),
        memory=memory,
        cpu=cpu,
        symbols=len(symbols),
        p50_e2e=quantile(buckets(t0, e2e), buckets(t1, e2e), 0.5),
    )


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return "> 300 s" if seconds == float("inf") else f"<= {seconds * 1000:g} ms"


def run(rates: tuple[int, ...] = RATES) -> tuple[list[Step], str]:
    """Step up the rate until one is not sustained; return the steps and Markdown."""
    steps: list[Step] = []
    with redis_url() as (redis, _), tempfile.TemporaryDirectory() as tmp:
        for rate in rates:
            print(f"load: {rate} steps/s ...", file=sys.stderr, flush=True)
            step = measure(rate, Path(tmp), redis)
            steps.append(step)
            print(f"load: {step}", file=sys.stderr, flush=True)
            if not step.sustained:
                break
        many = tuple(f"S{i:03d}USDT" for i in range(THROUGHPUT_SYMBOLS))
        wide: list[Step] = []
        for rate in THROUGHPUT_RATES:
            print(f"load: {rate} steps/s over {len(many)} symbols ...", file=sys.stderr, flush=True)
            wide.append(measure(rate, Path(tmp), redis, many))
            print(f"load: {wide[-1]}", file=sys.stderr, flush=True)
    best = [s for s in steps if s.sustained]
    top = best[-1] if best else None
    lines = [
        "## Load: the highest sustained rate with end-to-end p99 under 50 ms",
        "",
        "Command: `python bench/run_all.py --only=load` (also part of `nox -s bench`).",
        "Collector (`--flush-interval 10ms`), processor (1 s bars, SMA 2/3) and trader as",
        "separate processes on one SQLite store, signals over Redis, the fake exchange in the",
        f"benchmark process; each rate warms up {WARM_UP:g} s, then {WINDOW:g} s are measured.",
        "p99 figures are Prometheus bucket bounds. All on this 2-core machine at once.",
        "",
        "| depth steps/s | frames/s offered | frames/s received | processor lag | signals "
        "| p99 frame to stored | p99 event to signal | p99 exchange to acked | RSS collector "
        "/ processor / trader | sustained |",
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
            f"Highest sustained rate: **{top.offered:,.0f} frames/s** ({top.rate:,} depth "
            f"steps/s) with end-to-end p99 {_ms(top.p99_e2e)}; memory at that rate: {memory}."
        )
    lines += [
        "",
        f"Throughput over {THROUGHPUT_SYMBOLS} symbols (the rate shared by them, the same "
        "services and window; not stopped by the p99), with each process's CPU share "
        "(user and system time over the window; 1.0 is a whole core):",
        "",
        "| depth steps/s | frames/s offered | frames/s received | processor lag | signals "
        "| p50 / p99 exchange to acked | CPU collector / processor / trader "
        "| RSS collector / processor / trader |",
        "|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for s in wide:
        share = " / ".join(f"{s.cpu[n]:.2f}" for n in ("collector", "processor", "trader"))
        memory = " / ".join(f"{s.memory[n]:.0f}" for n in ("collector", "processor", "trader"))
        lines.append(
            f"| {s.rate:,} | {s.offered:,.0f} | {s.received:,.0f} | {s.lag:,.0f} | {s.signals} "
            f"| {_ms(s.p50_e2e)} / {_ms(s.p99_e2e)} | {share} | {memory} MiB |"
        )
    return [*steps, *wide], "\n".join(lines)


if __name__ == "__main__":
    print(run()[1])
