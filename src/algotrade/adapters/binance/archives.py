"""Binance's public kline archives (data.binance.vision): planned, downloaded, verified,
kept in a data directory, and found again for a backtest.

The layout, remote and local alike (the local copy drops the leading ``data/``)::

    data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01.zip
    data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01.zip.CHECKSUM
    data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02-01.zip

A ``.CHECKSUM`` file holds ``<sha256 hex>  <file name>``. Whole months before the current
one come as monthly archives; a month Binance has not published (a 404), and the days of
a month cut by the range or still running, as daily ones. A download goes to
``NAME.part`` and resumes from its size with an HTTP range; it becomes ``NAME`` only once
its SHA-256 matches the checksum, which is kept beside it.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from algotrade.domain.errors import ConfigurationError

if TYPE_CHECKING:
    import httpx

BASE_URL = "https://data.binance.vision"
_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d",
              "3d", "1w", "1mo")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Archive:
    """One archive: a month (``day`` None) or a day of one symbol's klines."""

    symbol: str
    interval: str
    month: date  # the first of its month
    day: date | None = None

    @property
    def name(self) -> str:
        """Return the file name, ``BTCUSDT-1m-2024-01.zip``."""
        when = self.day.isoformat() if self.day else self.month.strftime("%Y-%m")
        return f"{self.symbol}-{self.interval}-{when}.zip"

    @property
    def path(self) -> str:
        """Return the path below ``data/`` on the server and below the data directory."""
        kind = "daily" if self.day else "monthly"
        return f"spot/{kind}/klines/{self.symbol}/{self.interval}/{self.name}"


def parse_day(text: str, *, end: bool = False) -> date:
    """Return the date of ``YYYY-MM-DD``, or of ``YYYY-MM`` (its first day, or its last
    when ``end``).

    Raises:
        ConfigurationError: neither form.
    """
    try:
        if re.fullmatch(r"\d{4}-\d{2}", text):
            first = date.fromisoformat(text + "-01")
            if end:
                return first.replace(day=calendar.monthrange(first.year, first.month)[1])
            return first
        return date.fromisoformat(text)
    except ValueError:
        pass
    raise ConfigurationError("date", f"{text!r} is not YYYY-MM or YYYY-MM-DD")


def check_symbol(symbol: str, interval: str) -> str:
    """Return the symbol in capitals, checked with the interval.

    Raises:
        ConfigurationError: a symbol or interval Binance's archives do not have.
    """
    name = symbol.upper()
    if not _SYMBOL.match(name):
        raise ConfigurationError("symbol", f"{symbol!r} is not a Binance symbol")
    if interval not in _INTERVALS:
        raise ConfigurationError(
            "interval", f"{interval!r}: the archives have {', '.join(_INTERVALS)}"
        )
    return name


def plan(symbol: str, interval: str, start: date, end: date, today: date) -> list[Archive]:
    """Return the archives that cover ``start``..``end`` (both included, capped at the day
    before ``today``, the last one Binance can have published): a monthly archive for each
    whole month before ``today``'s, daily ones for the rest.

    Raises:
        ConfigurationError: a bad symbol or interval, or an empty range.
    """
    name = check_symbol(symbol, interval)
    last = min(end, today - timedelta(days=1))
    if start > last:
        raise ConfigurationError(
            "date", f"{start} .. {end} holds no day before today ({today}) to download"
        )
    out: list[Archive] = []
    month = start.replace(day=1)
    while month <= last:
        days = calendar.monthrange(month.year, month.month)[1]
        month_end = month.replace(day=days)
        whole = start <= month and month_end <= last
        if whole:
            out.append(Archive(name, interval, month))
        else:
            first, final = max(start, month), min(last, month_end)
            out.extend(Archive(name, interval, month, first + timedelta(days=i))
                       for i in range((final - first).days + 1))  # fmt: skip
        month = month_end + timedelta(days=1)
    return out


def days_of(archive: Archive, start: date, last: date) -> list[Archive]:
    """Return the daily archives of a monthly one's month, within ``start``..``last``."""
    days = calendar.monthrange(archive.month.year, archive.month.month)[1]
    first = max(start, archive.month)
    final = min(last, archive.month.replace(day=days))
    return [Archive(archive.symbol, archive.interval, archive.month, first + timedelta(days=i))
            for i in range((final - first).days + 1)]  # fmt: skip


@dataclass
class Outcome:
    """What a download did, archive by archive."""

    kept: list[Archive] = field(default_factory=list)  # downloaded and verified now
    present: list[Archive] = field(default_factory=list)  # already there, verified
    missing: list[Archive] = field(default_factory=list)  # not published (404)
    failed: list[tuple[Archive, str]] = field(default_factory=list)
    resumed: int = 0
    downloaded_bytes: int = 0


class ArchiveError(Exception):
    """An archive could not be downloaded or did not match its checksum."""


class NotPublished(Exception):  # noqa: N818 - an answer, not a failure
    """The server has no such archive (404)."""


class Downloader:
    """Downloads archives into ``root``, verified, resuming cut downloads.

    Args:
        root: the data directory.
        base_url: the server (``https://data.binance.vision``; a mirror or a test's).
        retries: attempts per file after a cut connection or a server error.
        on_bytes: called with each chunk's size (for a progress line).
    """

    def __init__(
        self,
        root: Path,
        *,
        base_url: str = BASE_URL,
        retries: int = 3,
        timeout: float = 30.0,
        on_bytes: Callable[[int], None] | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        import httpx  # only here: reading kept archives needs no HTTP client

        self.root = root
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.on_bytes = on_bytes
        self.client = client or httpx.Client(timeout=timeout, follow_redirects=True)

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    def local(self, archive: Archive) -> Path:
        """Return where ``archive`` is kept."""
        return self.root / archive.path

    def url(self, archive: Archive) -> str:
        """Return the archive's URL."""
        return f"{self.base_url}/data/{archive.path}"

    def download(
        self,
        archives: list[Archive],
        start: date,
        last: date,
        *,
        on_file: Callable[[], None] | None = None,
    ) -> Outcome:
        """Fetch every archive not already kept and verified; a monthly one the server
        does not have is replaced by its days. Failures are noted, the rest goes on;
        ``on_file`` is called as each archive is done with."""
        outcome = Outcome()
        queue = list(archives)
        while queue:
            archive = queue.pop(0)
            try:
                fetched = self.fetch(archive, outcome)
            except NotPublished:
                if archive.day is None:  # not published as a month (yet): its days
                    queue[0:0] = days_of(archive, start, last)
                else:
                    outcome.missing.append(archive)
                continue
            except ArchiveError as e:
                outcome.failed.append((archive, str(e)))
                continue
            (outcome.kept if fetched else outcome.present).append(archive)
            if on_file is not None:
                on_file()
        return outcome

    def fetch(self, archive: Archive, outcome: Outcome) -> bool:
        """Make sure ``archive`` is kept and verified; return whether it was downloaded.

        Raises:
            NotPublished: the server has no such archive.
            ArchiveError: it could not be downloaded, or failed its checksum.
        """
        import httpx

        target = self.local(archive)
        expected = self._checksum(archive)
        if target.exists():
            if sha256_of(target) == expected:
                return False
            target.unlink()  # changed on the server, or damaged here: fetched again
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        error = "no attempt"
        for _ in range(self.retries + 1):
            try:
                self._into(archive, part, outcome)
                break
            except (httpx.TransportError, ArchiveError) as e:
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        else:
            raise ArchiveError(f"{self.url(archive)}: {error}; {part.name} kept, a rerun resumes")
        found = sha256_of(part)
        if found != expected:
            part.unlink()
            raise ArchiveError(
                f"{archive.name}: SHA-256 {found} is not the published {expected}; not kept"
            )
        part.replace(target)
        target.with_name(target.name + ".CHECKSUM").write_text(f"{expected}  {archive.name}\n")
        return True

    def _checksum(self, archive: Archive) -> str:
        import httpx

        url = self.url(archive) + ".CHECKSUM"
        try:
            answer = self.client.get(url)
        except httpx.TransportError as e:
            raise ArchiveError(f"{url}: {type(e).__name__}: {e}") from None
        if answer.status_code == 404:
            raise NotPublished(archive.name)
        if answer.status_code != 200:
            raise ArchiveError(f"{url}: HTTP {answer.status_code}")
        text = answer.text.split()
        if not text or not re.fullmatch(r"[0-9a-f]{64}", text[0].lower()):
            raise ArchiveError(f"{url}: not a SHA-256 checksum: {answer.text[:80]!r}")
        return text[0].lower()

    def _into(self, archive: Archive, part: Path, outcome: Outcome) -> None:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self.client.stream("GET", self.url(archive), headers=headers) as answer:
            if answer.status_code == 404:
                raise NotPublished(archive.name)
            if answer.status_code == 416 and have:  # the part is whole already
                return
            if answer.status_code == 206 and have:
                if not answer.headers.get("content-range", "").startswith(f"bytes {have}-"):
                    raise ArchiveError(f"a range answer not from byte {have}")
                mode = "ab"
                outcome.resumed += 1
            elif answer.status_code == 200:
                mode = "wb"  # no range support: from the start
            else:
                raise ArchiveError(f"HTTP {answer.status_code}")
            with part.open(mode) as out:
                for chunk in answer.iter_bytes():  # as it arrives: a cut keeps it
                    out.write(chunk)
                    outcome.downloaded_bytes += len(chunk)
                    if self.on_bytes is not None:
                        self.on_bytes(len(chunk))


def sha256_of(path: Path) -> str:
    """Return a file's SHA-256, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


_NAME = re.compile(r"^([A-Z0-9]+)-(\w+)-(\d{4}-\d{2})(-\d{2})?\.zip$")


def kept_archives(root: Path, symbol: str, interval: str) -> list[Path]:
    """Return the verified archives of ``symbol`` and ``interval`` in the data directory,
    in time order: every monthly archive, and the daily ones of months without one.

    Raises:
        ConfigurationError: there is none.
    """
    name = check_symbol(symbol, interval)
    monthly = root / "spot" / "monthly" / "klines" / name / interval
    daily = root / "spot" / "daily" / "klines" / name / interval
    months = {p.name[len(name) + len(interval) + 2 : -4]: p for p in _verified(monthly)}
    days = [
        p for p in _verified(daily) if p.name[len(name) + len(interval) + 2 :][:7] not in months
    ]
    found = sorted([*months.values(), *days], key=lambda p: p.name)
    if not found:
        raise ConfigurationError(
            "data", f"no {name} {interval} archive in {root} (algotrade download {name} "
            f"--interval {interval} --start YYYY-MM)",
        )  # fmt: skip
    return found


def _verified(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for path in folder.glob("*.zip"):
        if _NAME.match(path.name) and path.with_name(path.name + ".CHECKSUM").exists():
            yield path


def archive_bytes(path: Path) -> bytes:
    """Return the CSV file inside a kline archive, as bytes.

    Raises:
        ConfigurationError: not a zip archive holding one CSV file.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.endswith(".csv")]
            if len(members) != 1:
                raise ConfigurationError("data", f"{path} holds {len(members)} CSV files, not 1")
            return archive.read(members[0])
    except (zipfile.BadZipFile, OSError) as e:
        raise ConfigurationError("data", f"{path} is not a readable zip archive: {e}") from None
