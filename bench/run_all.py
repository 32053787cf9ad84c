"""Run every benchmark and rewrite docs/benchmarks.md with the results and their command."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    backtest,
    binance_parse,
    binance_soak,
    history,
    load,
    memory,
    mongo_ingest,
    processor_catchup,
    processor_memory,
    run_throughput,
    signals,
    sma,
    sqlite_growth,
    sweep,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def cpu() -> str:
    """Return the CPU model name, when the OS says it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def replace_section(text: str) -> None:
    """Replace the section of docs/benchmarks.md with the same heading (or append it)."""
    page = DOCS.read_text(encoding="utf-8")
    heading = text.splitlines()[0]
    parts = page.split("\n## ")
    for i, part in enumerate(parts[1:], start=1):
        if "## " + part.splitlines()[0] == heading:
            parts[i] = text.removeprefix("## ").rstrip("\n") + "\n"
            break
    else:
        parts.append(text.removeprefix("## ").rstrip("\n") + "\n")
    DOCS.write_text("\n## ".join(parts).rstrip("\n") + "\n", encoding="utf-8")
    print(f"updated {DOCS}: {heading}", file=sys.stderr)


def main() -> None:
    """Run the benchmarks and write the page."""
    sections = []
    modules: list[tuple[str, ModuleType]] = [
        ("sma", sma),
        ("binance", binance_parse),
        ("run", run_throughput),
        ("processor", processor_catchup),
        ("signals", signals),
        ("mongo", mongo_ingest),
        ("sqlite_growth", sqlite_growth),
        ("backtest", backtest),
        ("history", history),
        ("sweep", sweep),
        ("load", load),
        ("memory", memory),
        ("processor_memory", processor_memory),
    ]
    only = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")]
    if "--with-soak" in sys.argv[1:] or "soak" in only:  # 18 minutes more
        modules.append(("soak", binance_soak))
    if only:  # rerun some benchmarks alone and replace their sections of the page
        modules = [(name, module) for name, module in modules if name in only]
        for name, module in modules:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            _, text = module.run()
            print(text, file=sys.stderr)
            replace_section(text)
        return
    for name, module in modules:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        _, text = module.run()
        print(text, file=sys.stderr)
        sections.append(text)
    header = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (that is `nox -s bench`, which runs `python bench/run_all.py`;",
        "`nox -s bench -- --with-soak` adds the 18-minute live soak)",
        f"on {datetime.date.today().isoformat()}, Python {platform.python_version()},"
        f" {os.cpu_count()} cores ({cpu()}).",
        "Timings on this machine are noisy; figures are best or median of repeated runs",
        "measured side by side in one invocation, never limits asserted in tests.",
        "",
    ]
    DOCS.write_text("\n".join(header) + "\n" + "\n\n".join(sections) + "\n", encoding="utf-8")
    print(f"wrote {DOCS}", file=sys.stderr)


if __name__ == "__main__":
    main()
