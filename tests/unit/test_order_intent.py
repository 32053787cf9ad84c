"""A decision may say how its order is sized and placed; the signal carries it through
every store and the stream, and the trader and the backtest honour it with the same
functions (what it leaves out is the trader's settings, or all the cash in a backtest)."""

from __future__ import annotations

from decimal import Decimal

import anyio
import pytest

from algotrade.adapters import codec
from algotrade.adapters.memory import InMemoryEventStore, InMemorySignalBus, SystemClock
from algotrade.adapters.mongo import documents
from algotrade.adapters.redis.codec import signal_from_fields, signal_to_fields
from algotrade.adapters.store_bus import PaperGateway
from algotrade.domain.backtest import Backtester
from algotrade.domain.bars import Interval
from algotrade.domain.broker import OrderIntent, Sizing, SizingKind, intent_of, limit_price
from algotrade.domain.errors import ConfigurationError
from algotrade.domain.events import BarClosed, OrderPlaced, SignalEmitted
from algotrade.domain.processing import SymbolPipeline
from algotrade.domain.strategy import Decision
from algotrade.domain.values import Side, TopOfBook
from algotrade.services.trader import TraderService
from tests.support.builders import bar

D = Decimal


class Scripted:
    """BUY on the second bar and SELL on the fourth, with the intent it is given."""

    name = "scripted"
    params = ()

    def __init__(self, intent: OrderIntent | None) -> None:
        self.intent = intent
        self.seen = 0

    def on_bar(self, bar: BarClosed) -> Decision | None:
        """Decide on bars 2 and 4."""
        self.seen += 1
        side = {2: Side.BUY, 4: Side.SELL}.get(self.seen)
        return None if side is None else Decision(side, intent=self.intent)


def signals_of(intent: OrderIntent | None) -> list[SignalEmitted]:
    """Return the scripted strategy's two signals on bars closing at 100."""
    pipeline = SymbolPipeline("BTCUSDT", Interval.parse("1m"), Scripted(intent))
    return [s for i in range(5) if (s := pipeline.on_bar(bar("100", i)))]


INTENTS = [
    OrderIntent(Sizing(SizingKind.QUANTITY, D("0.5"))),
    OrderIntent(Sizing(SizingKind.QUOTE, D("2500"))),
    OrderIntent(Sizing(SizingKind.FRACTION, D("0.25")), limit_offset_bps=D("0")),
    OrderIntent(limit_offset_bps=D("15")),
]


@pytest.mark.parametrize("intent", INTENTS)
def test_the_signal_carries_the_intent_through_every_store_and_the_stream(
    intent: OrderIntent,
) -> None:
    """The intent of a decision is its signal's, read back the same from SQLite's and
    MongoDB's documents and from the Redis entry."""
    signal = signals_of(intent)[0]
    assert intent_of(signal) == intent
    name = codec.type_name(SignalEmitted)
    assert codec.from_dict(name, signal.stream, signal.version, codec.to_dict(signal)) == signal
    assert documents.from_document(documents.to_document(signal, 1)) == signal
    entry: dict[bytes | str, bytes | str] = dict(signal_to_fields(signal).items())
    assert signal_from_fields(entry) == signal


def test_a_decision_without_intent_leaves_the_choice_to_the_trader() -> None:
    """No intent: empty fields, and intent_of gives nothing to override."""
    signal = signals_of(None)[0]
    assert (signal.size_kind, signal.size, signal.limit_offset_bps) == ("", None, None)
    assert intent_of(signal) == OrderIntent()


def test_limit_prices_move_towards_the_side() -> None:
    """A BUY's limit is below the price, a SELL's above; no offset is a market order."""
    assert limit_price(D(100), Side.BUY, D(50)) == D("99.5")
    assert limit_price(D(100), Side.SELL, D(50)) == D("100.5")
    assert limit_price(D(100), Side.BUY, None) is None
    with pytest.raises(ConfigurationError, match="limit_offset_bps"):
        OrderIntent(limit_offset_bps=D(-1))


@pytest.mark.parametrize(
    ("intent", "bought"),
    [
        (None, D("99.90009990")),  # all the cash, fee included (10,000 at 100, fee 0.1%)
        (INTENTS[0], D("0.5")),
        (INTENTS[1], D("25")),
        (INTENTS[2], D("24.97502497")),  # a quarter of the cash a BUY can spend after fee
    ],
)
def test_the_backtest_sizes_a_buy_as_its_intent_says(
    intent: OrderIntent | None, bought: Decimal
) -> None:
    """The backtest buys what the intent asks (and all the cash without one), then sells
    the whole position."""
    pipeline = SymbolPipeline("BTCUSDT", Interval.parse("1m"), Scripted(intent))
    tester = Backtester(pipeline, fee=D("0.001"), initial_cash=D(10_000))
    tester.run_bars([bar("100", i) for i in range(5)])
    assert [(t.side, t.quantity) for t in tester.trades] == [
        (Side.BUY, bought), (Side.SELL, bought),
    ]  # fmt: skip


def test_a_limit_the_price_does_not_reach_is_not_filled_in_a_backtest() -> None:
    """A BUY limited 15 bps under the close is not marketable: rejected, as by the paper
    broker, and the SELL after it has nothing to close."""
    pipeline = SymbolPipeline("BTCUSDT", Interval.parse("1m"), Scripted(INTENTS[3]))
    tester = Backtester(pipeline, initial_cash=D(10_000))
    tester.run_bars([bar("100", i) for i in range(5)])
    assert tester.trades == []
    assert tester.rejected_orders == 2


class Quotes:
    """A still book at 100 / 100."""

    async def latest(self, symbol: str) -> TopOfBook | None:
        """Return the same top of book."""
        return TopOfBook(D(100), D(5), D(100), D(5))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("intent", "quantity", "limit"),
    [
        (None, D("0.01"), None),  # the trader's own --quantity, at market
        (INTENTS[1], D("25"), None),
        (INTENTS[2], D("25"), D("100")),  # a quarter of the paper broker's 10,000
    ],
)
async def test_the_trader_orders_what_the_intent_says(
    intent: OrderIntent | None, quantity: Decimal, limit: Decimal | None
) -> None:
    """The trader sizes and places the BUY as the signal's intent says, its own settings
    filling in what the intent leaves out."""
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    await bus.publish(signals_of(intent)[:1])
    trader = TraderService(store, bus, PaperGateway(Quotes()), clock=SystemClock())
    stop = anyio.Event()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(trader.run, stop)
            while trader.stats.orders < 1:
                await anyio.sleep(0.01)
            stop.set()
    placed = [s.event for s in await store.read_all(0, types=(OrderPlaced,))]
    assert [(o.quantity, o.limit_price) for o in placed] == [(quantity, limit)]  # type: ignore[attr-defined]
