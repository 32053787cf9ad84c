"""The Binance order gateway and the trader against the fake exchange's trading side."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from redis.asyncio import Redis

from algotrade.adapters.binance.signing import Ed25519Signer, HmacSigner
from algotrade.adapters.binance.trading import BinanceGateway
from algotrade.adapters.binance.userstream import BinanceUserStream
from algotrade.adapters.memory import InMemoryEventStore, InMemorySignalBus, SystemClock
from algotrade.adapters.notices import Notice, Notify, ignore
from algotrade.adapters.redis import RedisSignalConsumer, RedisSignalPublisher
from algotrade.domain.broker import Position, Sizing, SizingKind
from algotrade.domain.errors import MessagingError
from algotrade.domain.events import (
    Event,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    OrderUpdated,
    PositionChanged,
    SignalEmitted,
    TradingHalted,
)
from algotrade.domain.streams import CONTROL_STREAM, order_stream, position_stream
from algotrade.domain.values import OrderStatus, Side, derived_id
from algotrade.services.orders import OrderFollower
from algotrade.services.trader import TraderService
from tests.support.fake_binance import FakeBinance
from tests.support.fake_trading import API_KEY, API_SECRET, ED25519_API_KEY, FakeTrading

pytestmark = pytest.mark.anyio
D = Decimal


async def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until ``condition()`` holds (polling), failing after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


def signal(index: int, side: Side, price: str = "30000") -> SignalEmitted:
    """Return the ``index``-th signal on BTCUSDT, with a uuid id as the processor makes."""
    return SignalEmitted(
        stream="signals-BTCUSDT",
        version=index + 1,
        exchange_ts=index,
        receive_ts=index,
        signal_id=derived_id("test-signal", index),
        symbol="BTCUSDT",
        interval="1m",
        side=side,
        price=D(price),
        short_sma=1.0,
        long_sma=2.0,
        bar_time=index,
        strategy="sma_crossover",
    )


def order_of(index: int, side: Side = Side.BUY, quantity: str = "0.01") -> OrderPlaced:
    """Return the market order of the ``index``-th signal."""
    order_id = derived_id("test-signal", index)
    return OrderPlaced(
        stream=order_stream(order_id),
        version=1,
        exchange_ts=index,
        receive_ts=index,
        order_id=order_id,
        signal_id=order_id,
        symbol="BTCUSDT",
        side=side,
        quantity=D(quantity),
    )


@dataclass
class Exchange:
    """The fake exchange (market and trading sides) and a gateway signed for it."""

    market: FakeBinance
    trading: FakeTrading
    gateway: BinanceGateway

    def user_stream(self, notify: Notify = ignore) -> BinanceUserStream:
        """Return a user data stream client for the fake account."""
        return BinanceUserStream(
            self.trading.stream_url,
            API_KEY,
            HmacSigner(API_SECRET),
            timestamp_ms=self.gateway.server_time_ms,
            resync=self.gateway.sync_time,
            notify=notify,
        )


@pytest.fixture
async def exchange() -> AsyncIterator[Exchange]:
    """A fake exchange with 100,000 USDT, and a gateway that gives up on an answer after 1 s."""
    async with (
        FakeBinance(("BTCUSDT",), rate=20.0) as market,
        FakeTrading(market, balances={"USDT": "100000"}) as trading,
    ):
        market.pause()  # a still book: fills are predictable
        gateway = BinanceGateway(
            trading.rest_url,
            API_KEY,
            HmacSigner(API_SECRET),
            clock=SystemClock(),
            timeout=1.0,
            attempts=5,
        )
        try:
            yield Exchange(market, trading, gateway)
        finally:
            await gateway.close()


async def stored(store: InMemoryEventStore, order_id: str) -> list[Event]:
    """Return an order's stored events."""
    return await store.read_stream(order_stream(order_id))


async def position(store: InMemoryEventStore) -> D:
    """Return the stored BTCUSDT position quantity."""
    last = await store.last_event(position_stream("BTCUSDT"))
    return last.quantity if isinstance(last, PositionChanged) else D(0)


async def test_each_signal_places_one_order_and_the_store_matches_the_exchange(
    exchange: Exchange,
) -> None:
    """Alternating signals, delivered twice, place one order each; stored orders end in the
    exchange's state and the stored position equals the exchange's BTC balance."""
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(store, bus, exchange.gateway, quantity=D("0.01"), clock=SystemClock())
    signals = [signal(i, Side.BUY if i % 2 == 0 else Side.SELL) for i in range(6)]

    await bus.publish(signals)
    await trader.handle(await bus.receive(100, 0.1))
    await bus.publish(signals)  # every signal again: a redelivery storm
    await trader.handle(await bus.receive(100, 0.1))

    assert len(exchange.trading.posts) == 6
    for s in signals:
        placed = exchange.trading.by_client_id(s.signal_id)
        assert len(placed) == 1
        events = await stored(store, s.signal_id)
        last = events[-1]
        assert isinstance(last, OrderUpdated)
        assert (last.status, last.executed_quantity) == (OrderStatus.FILLED, placed[0].executed)
        assert last.executed_quote == placed[0].quote
    assert exchange.trading.balance("BTC") == await position(store) == D(0)
    fills = [t for o in exchange.trading.orders.values() for t in o.trades]
    paid = sum(D(t["commission"]) * (D(t["price"]) if t["commissionAsset"] == "BTC" else 1)
               for t in fills)  # fmt: skip
    last_position = await store.last_event(position_stream("BTCUSDT"))
    assert isinstance(last_position, PositionChanged)
    assert last_position.fees_paid == paid
    assert trader.stats.redelivered == 6


async def test_a_buy_receives_its_quantity_net_of_the_base_asset_commission(
    exchange: Exchange,
) -> None:
    """A BUY paying its commission in BTC holds exactly what the exchange credited."""
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(store, bus, exchange.gateway, quantity=D("0.5"), clock=SystemClock())

    await bus.publish([signal(0, Side.BUY)])
    await trader.handle(await bus.receive(10, 0.1))

    assert await position(store) == exchange.trading.balance("BTC") == D("0.5") * D("0.999")


async def test_a_timeout_after_the_exchange_accepted_places_no_second_order(
    exchange: Exchange,
) -> None:
    """The exchange places the order and answers after the client gave up: the gateway
    finds the order by its client id instead of placing it again."""
    exchange.trading.stall_after_accept(3.0)

    outcome = await exchange.gateway.submit(order_of(1))

    assert isinstance(outcome, OrderUpdated)
    assert outcome.status is OrderStatus.FILLED
    assert len(exchange.trading.by_client_id(order_of(1).order_id)) == 1
    assert len(exchange.trading.posts) == 1
    assert exchange.gateway.stats.found == 1


async def test_a_trader_that_died_before_storing_finds_the_placed_order(
    exchange: Exchange,
) -> None:
    """An order placed by a trader that stopped before storing it is found, not repeated,
    when the redelivered signal comes to the next trader."""
    await exchange.gateway.submit(order_of(0))  # the first trader's last act
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(store, bus, exchange.gateway, clock=SystemClock())

    await bus.publish([signal(0, Side.BUY)])
    await trader.handle(await bus.receive(10, 0.1))

    assert len(exchange.trading.posts) == 1
    last = (await stored(store, order_of(0).order_id))[-1]
    assert isinstance(last, OrderUpdated)
    assert last.status is OrderStatus.FILLED


async def test_an_answer_cut_short_after_placing_is_looked_up_not_placed_again(
    exchange: Exchange,
) -> None:
    """The exchange placed the order but its answer arrived cut short (not JSON): the
    order may exist, so the gateway looks it up and finds it instead of raising."""
    exchange.trading.garble_next("/api/v3/order")

    outcome = await exchange.gateway.submit(order_of(7))

    assert isinstance(outcome, OrderUpdated)
    assert outcome.status is OrderStatus.FILLED
    assert len(exchange.trading.posts) == 1
    assert exchange.gateway.stats.found == 1
    assert exchange.gateway.stats.uncertain == 1


async def test_a_trades_answer_cut_short_is_read_again_for_the_commissions(
    exchange: Exchange,
) -> None:
    """Finding a placed order reads its trades for the commissions; an answer cut short is
    read again, and the order's fees are the exchange's."""
    placed = await exchange.gateway.submit(order_of(8))  # a trader that died before storing
    exchange.trading.garble_next("/api/v3/myTrades")

    outcome = await exchange.gateway.submit(order_of(8))

    assert isinstance(placed, OrderUpdated)
    assert isinstance(outcome, OrderUpdated)
    assert outcome.status is OrderStatus.FILLED
    assert (outcome.fees, outcome.base_fees) == (placed.fees, placed.base_fees)
    assert placed.base_fees > 0  # a BUY pays its commission in BTC
    assert len(exchange.trading.posts) == 1
    assert exchange.trading.garbled["/api/v3/myTrades"] == 0  # the fault was served


async def test_answers_that_stay_malformed_leave_the_signal_pending(exchange: Exchange) -> None:
    """Every answer cut short: the gateway gives up with a MessagingError naming the cause,
    the trader stores nothing and leaves the signal pending, and goes on."""
    exchange.trading.garble_next("/api/v3/order", times=100)
    exchange.trading.garble_next("/api/v3/myTrades", times=100)
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(store, bus, exchange.gateway, clock=SystemClock())

    await bus.publish([signal(9, Side.BUY)])
    await trader.handle(await bus.receive(10, 0.1))

    assert await stored(store, signal(9, Side.BUY).signal_id) == []
    assert bus.pending == 1
    assert trader.stats.failed == 1
    assert len(exchange.trading.posts) == 1  # placed once; every later attempt looked it up
    with pytest.raises(MessagingError, match="not JSON"):
        await exchange.gateway.submit(order_of(9))


async def test_a_retry_after_that_is_not_seconds_waits_one_second(exchange: Exchange) -> None:
    """HTTP allows Retry-After as a date: not a number of seconds, it counts as no header
    (one second's wait) instead of an error."""
    exchange.trading.fail_next(429, retry_after="Wed, 21 Oct 2026 07:28:00 GMT")

    outcome = await exchange.gateway.submit(order_of(10))

    assert isinstance(outcome, OrderUpdated)
    assert exchange.gateway.stats.rate_limited == 1
    assert len(exchange.trading.posts) == 1


@pytest.mark.parametrize(
    ("quantity", "reason"),
    [("0.000001", "below the minimum 0.00001"), ("0.0001", "notional 3.0000")],
)
async def test_an_order_outside_the_filters_is_rejected_without_a_request(
    exchange: Exchange, quantity: str, reason: str
) -> None:
    """Lot size and minimum notional are checked before sending: rejected with the reason,
    and no order request reaches the exchange."""
    outcome = await exchange.gateway.submit(order_of(2, quantity=quantity))

    assert isinstance(outcome, OrderRejected)
    assert outcome.reason.startswith("exchange rules: ")
    assert reason in outcome.reason
    assert exchange.trading.posts == []


async def test_a_clock_out_of_the_recv_window_is_resynchronised(exchange: Exchange) -> None:
    """A -1021 (our timestamp 20 s ahead of the server) re-reads the server time and the
    order goes through."""
    await exchange.gateway.sync_time()
    exchange.trading.skew(-20_000)

    outcome = await exchange.gateway.submit(order_of(3))

    assert isinstance(outcome, OrderUpdated)
    assert outcome.status is OrderStatus.FILLED
    assert exchange.gateway.stats.resyncs == 2
    assert abs(exchange.gateway.offset_ms + 20_000) < 1_000


async def test_insufficient_balance_is_a_rejection_with_binance_s_reason(
    exchange: Exchange,
) -> None:
    """-2010 rejects the order with Binance's code and message."""
    outcome = await exchange.gateway.submit(order_of(4, quantity="10"))

    assert isinstance(outcome, OrderRejected)
    assert outcome.reason == (
        "binance -2010: Account has insufficient balance for requested action."
    )


async def test_a_429_waits_retry_after_and_retries(exchange: Exchange) -> None:
    """Rate limited: the gateway waits Retry-After, then places the order once."""
    exchange.trading.fail_next(429, retry_after=0.5, times=2)

    outcome = await exchange.gateway.submit(order_of(5))

    assert isinstance(outcome, OrderUpdated)
    assert outcome.status is OrderStatus.FILLED
    assert exchange.gateway.stats.rate_limited == 2
    assert len(exchange.trading.posts) == 1


async def test_bad_credentials_leave_the_signal_pending(exchange: Exchange) -> None:
    """A refused signature is not the order's fault: the trader stores nothing and does
    not acknowledge, so the signal comes back once the keys are fixed."""
    gateway = BinanceGateway(
        exchange.trading.rest_url, API_KEY, HmacSigner("wrong"), clock=SystemClock()
    )
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(store, bus, gateway, clock=SystemClock())
    try:
        await bus.publish([signal(6, Side.BUY)])
        await trader.handle(await bus.receive(10, 0.1))
    finally:
        await gateway.close()

    assert await stored(store, signal(6, Side.BUY).signal_id) == []
    assert bus.pending == 1
    assert trader.stats.failed == 1


async def test_the_kill_switch_rejects_orders_without_sending_them(exchange: Exchange) -> None:
    """With trading halted, each signal's order is stored rejected with the halt's reason."""
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    await store.append(
        [TradingHalted(stream=CONTROL_STREAM, version=1, exchange_ts=0, receive_ts=0,
                       reason="manual stop")]
    )  # fmt: skip
    trader = TraderService(store, bus, exchange.gateway, clock=SystemClock())

    await bus.publish([signal(7, Side.BUY)])
    await trader.handle(await bus.receive(10, 0.1))

    last = (await stored(store, signal(7, Side.BUY).signal_id))[-1]
    assert isinstance(last, OrderRejected)
    assert last.reason == "trading halted by the kill switch: manual stop"
    assert exchange.trading.posts == []


async def test_limit_orders_follow_the_user_stream_and_catch_up_after_a_reconnect(
    exchange: Exchange,
) -> None:
    """A resting limit BUY is stored NEW; a partial fill arrives on the user data stream;
    the stream is cut and the order fills meanwhile; after the reconnect the stored order
    is FILLED and the stored position equals the exchange's BTC balance."""
    exchange.trading.hold_limits = True
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(store, bus, exchange.gateway, quantity=D("0.2"),
                           limit_offset_bps=D(10), clock=SystemClock())  # fmt: skip
    follower = OrderFollower(trader, exchange.gateway, reconcile_every=3600)
    notices: list[Notice] = []
    stream = exchange.user_stream(notices.append)
    stop = anyio.Event()
    order_id = signal(8, Side.BUY).signal_id

    async def last_status() -> OrderStatus | None:
        last = (await stored(store, order_id))[-1]
        return last.status if isinstance(last, OrderUpdated) else None

    statuses: list[OrderStatus | None] = []

    async def poll() -> None:
        statuses.append(await last_status())

    async with anyio.create_task_group() as tg:
        tg.start_soon(follower.run, stream, stop)
        await eventually(lambda: stream.stats.connections == 1)
        await bus.publish([signal(8, Side.BUY)])
        await trader.handle(await bus.receive(10, 0.1))
        assert await last_status() is OrderStatus.NEW
        placed = exchange.trading.by_client_id(order_id)[0]
        assert placed.price == D("29970.00")  # 10 bps under the signal's price

        exchange.trading.fill_resting(fraction=D("0.5"))
        await eventually(lambda: follower.stats.updates >= 1)
        assert await last_status() is OrderStatus.PARTIALLY_FILLED
        assert await position(store) == D("0.1") * D("0.999")

        exchange.trading.user_streams_down = True
        exchange.trading.drop_user_streams()
        exchange.trading.fill_resting()  # nobody listens
        # Until a reconnection was refused (a fixed sleep raced the backoff on a busy machine)
        await eventually(lambda: any(n.message == "user data stream failed" for n in notices))
        assert await last_status() is OrderStatus.PARTIALLY_FILLED
        exchange.trading.user_streams_down = False
        await eventually(lambda: stream.stats.connections == 2)
        await eventually(lambda: follower.stats.reconciled >= 1)
        stop.set()

    assert await last_status() is OrderStatus.FILLED
    assert await position(store) == exchange.trading.balance("BTC") == D("0.2") * D("0.999")
    assert trader.working == {}
    await stream.close()
    # Told: connected, lost, failed while subscriptions were refused (with Binance's
    # answer), connected again; failures as problems, with the wait before the next try.
    said = [n.message for n in notices]
    assert said[:2] == ["user data stream connected", "user data stream lost"]
    assert said[-1] == "user data stream connected"
    failed = [n for n in notices if n.message == "user data stream failed"]
    assert failed
    assert all(n.problem for n in failed)
    assert failed[0].fields["error"] == (
        'ExchangeError: subscription refused: status 503: {"code":-1001,'
        '"msg":"Internal error; unable to process your request."}'
    )
    assert [n.fields["attempt"] for n in failed] == list(range(1, len(failed) + 1))
    assert [n.fields["connection"] for n in notices if not n.problem] == [1, 2]


async def run_stream(stream: BinanceUserStream, until: Callable[[], bool]) -> list[int]:
    """Run ``stream`` until ``until()`` holds; return the connection count at each call of
    its ``connected`` callback (where the follower reconciles)."""
    calls: list[int] = []

    async def connected() -> None:
        calls.append(stream.stats.connections)

    async def handle(event: object) -> None:
        raise AssertionError(f"no report was expected: {event}")

    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.run, handle, connected, stop)
        await eventually(until)
        stop.set()
    await stream.close()
    return calls


async def test_the_subscription_is_signed_and_ended_subscriptions_are_renewed(
    exchange: Exchange,
) -> None:
    """The stream subscribes on the WebSocket API with a signed request (the fake checks it
    as Binance does); an eventStreamTerminated ends that subscription: the stream
    reconnects, subscribes again and reconciles."""
    notices: list[Notice] = []
    stream = exchange.user_stream(notices.append)

    async def terminated_then_back() -> None:
        await eventually(lambda: stream.stats.connections == 1)
        exchange.trading.terminate_user_streams()

    async with anyio.create_task_group() as tg:
        tg.start_soon(terminated_then_back)
        calls = await run_stream(stream, lambda: stream.stats.connections == 2)

    assert exchange.trading.subscriptions == 2
    assert stream.stats.terminated == 1
    assert calls == [1, 2]  # reconciled after each subscription
    lost = [n for n in notices if n.message == "user data stream lost"]
    assert [n.fields["error"] for n in lost] == ["Binance sent eventStreamTerminated"]
    connected = [n.fields for n in notices if n.message == "user data stream connected"]
    assert [c["subscription"] for c in connected] == [1, 2]


async def test_a_refused_signature_is_told_with_binance_s_answer(exchange: Exchange) -> None:
    """A wrong secret: Binance refuses the subscription (-1022); the stream says so, never
    counts a connection, and keeps trying."""
    notices: list[Notice] = []
    stream = BinanceUserStream(
        exchange.trading.stream_url, API_KEY, HmacSigner("wrong"), notify=notices.append
    )
    calls = await run_stream(
        stream, lambda: sum(n.message == "user data stream failed" for n in notices) >= 2
    )

    assert (stream.stats.connections, calls) == (0, [])
    assert notices[0].fields["error"] == (
        'ExchangeError: subscription refused: status 400: {"code":-1022,'
        '"msg":"Signature for this request is not valid."}'
    )


async def test_a_clock_refused_by_the_subscription_is_measured_again(exchange: Exchange) -> None:
    """The exchange's clock moved 20 s since it was measured: the subscription is refused
    (-1021), the clock is measured again, and the next attempt subscribes."""
    await exchange.gateway.sync_time()
    exchange.trading.skew(-20_000)
    notices: list[Notice] = []
    stream = exchange.user_stream(notices.append)

    await run_stream(stream, lambda: stream.stats.connections == 1)

    (failed,) = [n for n in notices if n.message == "user data stream failed"]
    assert '"code":-1021' in str(failed.fields["error"])
    assert exchange.gateway.stats.resyncs == 2
    assert abs(exchange.gateway.offset_ms + 20_000) < 1_000


async def test_a_quiet_account_stays_connected_and_a_silent_session_is_dropped(
    exchange: Exchange,
) -> None:
    """No account activity: ``ping`` requests keep frames coming, so the watchdog stays
    quiet; once the session answers nothing (half-open), the watchdog reconnects."""
    notices: list[Notice] = []
    stream = BinanceUserStream(
        exchange.trading.stream_url, API_KEY, HmacSigner(API_SECRET),
        keepalive=0.1, watchdog=0.5, notify=notices.append,
    )  # fmt: skip

    async def quiet_then_silent() -> None:
        await eventually(lambda: stream.stats.keepalives >= 12)  # 1.2 s: past the watchdog
        assert (stream.stats.connections, stream.stats.connected) == (1, True)
        exchange.trading.ws_api_silent = True
        await eventually(lambda: any(n.message == "user data stream lost" for n in notices))
        exchange.trading.ws_api_silent = False

    async with anyio.create_task_group() as tg:
        tg.start_soon(quiet_then_silent)
        await run_stream(stream, lambda: stream.stats.connections == 2)

    lost = [n for n in notices if n.message == "user data stream lost"]
    assert lost[0].fields["error"] == "no frame for 0.5s (watchdog)"
    assert exchange.trading.requests.count("WS ping") >= 12


async def test_a_malformed_execution_report_is_told_with_its_text_and_the_stream_goes_on(
    exchange: Exchange,
) -> None:
    """A user data stream frame that is not an execution report is counted and told with
    its reason and raw text (it was kept in a list nothing logged); later reports arrive."""
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(store, bus, exchange.gateway, quantity=D("0.2"), clock=SystemClock())
    follower = OrderFollower(trader, exchange.gateway, reconcile_every=3600)
    notices: list[Notice] = []
    stream = exchange.user_stream(notices.append)
    stop = anyio.Event()
    bad = {"e": "executionReport", "s": "BTCUSDT", "X": "NEW"}
    async with anyio.create_task_group() as tg:
        tg.start_soon(follower.run, stream, stop)
        await eventually(lambda: stream.stats.connections == 1)
        exchange.trading.send_event(bad)
        await eventually(lambda: stream.stats.rejected == 1)
        await bus.publish([signal(8, Side.BUY)])
        await trader.handle(await bus.receive(10, 0.1))
        await eventually(lambda: stream.stats.events >= 1)  # the market BUY's report
        stop.set()
    await stream.close()
    (rejected,) = [n for n in notices if n.message == "input rejected"]
    assert rejected.problem
    assert rejected.fields["source"] == "binance-user-stream"
    assert json.loads(str(rejected.fields["raw"]))["event"] == bad
    assert "malformed executionReport" in str(rejected.fields["reason"])
    assert stream.stats.connections == 1


async def test_a_cancel_on_the_exchange_is_stored(exchange: Exchange) -> None:
    """An order cancelled outside algotrade ends CANCELED in the store."""
    exchange.trading.hold_limits = True
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(store, bus, exchange.gateway, limit_offset_bps=D(5), clock=SystemClock())
    follower = OrderFollower(trader, exchange.gateway)
    stream = exchange.user_stream()
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(follower.run, stream, stop)
        await eventually(lambda: stream.stats.connections == 1)
        await bus.publish([signal(9, Side.BUY)])
        await trader.handle(await bus.receive(10, 0.1))
        exchange.trading.cancel(exchange.trading.by_client_id(signal(9, Side.BUY).signal_id)[0])
        await eventually(lambda: follower.stats.updates == 1)
        stop.set()
    last = (await stored(store, signal(9, Side.BUY).signal_id))[-1]
    assert isinstance(last, OrderUpdated)
    assert last.status is OrderStatus.CANCELED
    assert exchange.trading.balance("USDT") == D("100000")
    await stream.close()


async def test_a_limit_order_working_past_cancel_after_is_cancelled_and_frees_its_symbol(
    exchange: Exchange,
) -> None:
    """With ``cancel_after``, a resting BUY half filled is cancelled on the exchange once
    it has worked that long: stored CANCELED with what it executed, the position equal to
    the exchange's BTC balance, and the next signal on the symbol places its order."""
    exchange.trading.hold_limits = True
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(store, bus, exchange.gateway, quantity=D("0.2"),
                           limit_offset_bps=D(10), clock=SystemClock())  # fmt: skip
    follower = OrderFollower(trader, exchange.gateway, reconcile_every=3600, cancel_after=1.5)
    stream = exchange.user_stream()
    stop = anyio.Event()
    first = signal(12, Side.BUY).signal_id
    async with anyio.create_task_group() as tg:
        tg.start_soon(follower.run, stream, stop)
        await eventually(lambda: stream.stats.connections == 1)
        await bus.publish([signal(12, Side.BUY)])
        await trader.handle(await bus.receive(10, 0.1))
        exchange.trading.fill_resting(fraction=D("0.5"))
        await eventually(lambda: follower.stats.updates >= 1)
        assert follower.stats.cancelled == 0  # not yet: 1.5 s
        await eventually(lambda: follower.stats.cancelled == 1)
        await bus.publish([signal(14, Side.SELL)])  # closes what the BUY executed
        await trader.handle(await bus.receive(10, 0.1))
        stop.set()
    await stream.close()

    last = (await stored(store, first))[-1]
    assert isinstance(last, OrderUpdated)
    assert (last.status, last.executed_quantity) == (OrderStatus.CANCELED, D("0.1"))
    assert exchange.trading.by_client_id(first)[0].status == "CANCELED"
    assert len(exchange.trading.posts) == 2  # the next signal's order was sent
    second = (await stored(store, signal(14, Side.SELL).signal_id))[-1]
    assert isinstance(second, OrderUpdated)
    assert second.status is OrderStatus.NEW
    assert exchange.trading.posts[1]["quantity"] == "0.0999"  # the whole position
    assert await position(store) == D("0.1") * D("0.999")  # the SELL rests, unfilled


async def resting_buy(
    exchange: Exchange,
    index: int,
    *,
    clock: SystemClock | None = None,
    reconcile_every: float = 60.0,
    cancel_after: float | None = None,
) -> tuple[InMemoryEventStore, TraderService, OrderFollower]:
    """Place the ``index``-th signal's limit BUY, resting on the book (not followed yet)."""
    exchange.trading.hold_limits = True
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(
        store, bus, exchange.gateway, limit_offset_bps=D(0), clock=clock or SystemClock()
    )
    follower = OrderFollower(
        trader, exchange.gateway, reconcile_every=reconcile_every, cancel_after=cancel_after
    )
    await bus.publish([signal(index, Side.BUY)])
    await trader.handle(await bus.receive(10, 0.1))
    return store, trader, follower


async def test_an_order_that_filled_before_its_cancel_is_stored_filled(
    exchange: Exchange,
) -> None:
    """The exchange filled the order while nobody listened; the cancel finds it FILLED and
    stores that (nothing counted as cancelled)."""
    store, trader, follower = await resting_buy(exchange, 15, cancel_after=0.0)
    exchange.trading.fill_resting()

    await follower.cancel_stale(now=100.0)

    last = (await stored(store, signal(15, Side.BUY).signal_id))[-1]
    assert isinstance(last, OrderUpdated)
    assert last.status is OrderStatus.FILLED
    assert (follower.stats.cancelled, trader.working) == (0, {})
    assert "DELETE /api/v3/order" in exchange.trading.requests


async def test_a_working_order_the_exchange_forgot_expires_at_cancel_after(
    exchange: Exchange,
) -> None:
    """The Spot Testnet forgets every order when it is reset: a stored working order the
    exchange no longer knows is stored EXPIRED ("unknown to the exchange") once
    ``cancel_after`` passes, instead of blocking its symbol for ever."""
    store, trader, follower = await resting_buy(exchange, 16, cancel_after=60.0)
    exchange.trading.orders.clear()  # the reset

    await follower.cancel_stale(now=100.0)  # first seen working
    assert trader.working  # not yet: 60 s
    await follower.cancel_stale(now=160.0)

    last = (await stored(store, signal(16, Side.BUY).signal_id))[-1]
    assert isinstance(last, OrderUpdated)
    assert (last.status, last.reason, last.executed_quantity) == (
        OrderStatus.EXPIRED,
        "unknown to the exchange",
        D(0),
    )
    assert (follower.stats.cancelled, trader.working) == (1, {})


class SteppedClock(SystemClock):
    """The real clock, whose monotonic time a test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def test_a_working_order_unknown_at_two_reconciliations_expires(
    exchange: Exchange,
) -> None:
    """Without ``cancel_after`` too: an order the exchange says twice, a reconciliation
    interval apart, that it does not know is stored EXPIRED and frees its symbol."""
    clock = SteppedClock()
    store, trader, follower = await resting_buy(exchange, 17, clock=clock, reconcile_every=60.0)
    exchange.trading.orders.clear()  # a testnet reset

    await follower.reconcile()
    clock.advance(30.0)
    await follower.reconcile()
    assert trader.working  # unknown for 30 s only: maybe not visible yet
    clock.advance(30.0)
    await follower.reconcile()

    last = (await stored(store, signal(17, Side.BUY).signal_id))[-1]
    assert isinstance(last, OrderUpdated)
    assert (last.status, last.reason) == (OrderStatus.EXPIRED, "unknown to the exchange")
    assert trader.working == {}


async def test_a_restarted_follower_reconciles_stored_working_orders(exchange: Exchange) -> None:
    """Working orders are found in the store at start-up and brought up to date."""
    exchange.trading.hold_limits = True
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    first = TraderService(store, bus, exchange.gateway, limit_offset_bps=D(0), clock=SystemClock())
    await bus.publish([signal(10, Side.BUY)])
    await first.handle(await bus.receive(10, 0.1))
    exchange.trading.fill_resting()  # while no trader runs

    second = TraderService(store, bus, exchange.gateway, clock=SystemClock())
    follower = OrderFollower(second, exchange.gateway)
    await follower.reconcile()

    last = (await stored(store, signal(10, Side.BUY).signal_id))[-1]
    assert isinstance(last, OrderUpdated)
    assert last.status is OrderStatus.FILLED
    assert await position(store) == exchange.trading.balance("BTC")


async def test_fraction_sizing_reads_the_account_balance(exchange: Exchange) -> None:
    """A BUY sized at 1 % of the free USDT buys 1,000 USDT worth at the signal's price,
    rounded down to the lot step."""
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    sizing = Sizing(SizingKind.FRACTION, D("0.01"))
    trader = TraderService(store, bus, exchange.gateway, sizing=sizing, clock=SystemClock())

    await bus.publish([signal(11, Side.BUY)])
    await trader.handle(await bus.receive(10, 0.1))

    assert [p["quantity"] for p in exchange.trading.posts] == ["0.03333"]


class CrashAfterPlacing:
    """A gateway that places each order, then fails as a trader killed before storing."""

    def __init__(self, gateway: BinanceGateway) -> None:
        self.gateway = gateway

    async def submit(self, order: OrderPlaced) -> OrderRejected | OrderUpdated | OrderFilled:
        await self.gateway.submit(order)
        raise MessagingError("killed after the exchange accepted the order")

    async def free_quote(self, symbol: str, position: Position) -> Decimal | None:
        return None

    async def dust(self, symbol: str) -> Decimal:
        return await self.gateway.dust(symbol)


async def test_signals_over_redis_survive_a_trader_killed_after_placing(
    exchange: Exchange, redis_url: str
) -> None:
    """Signals on the Redis stream: a first trader places an order and dies before storing
    it; a second trader in the group takes the other entries, claims the orphan, finds its
    order on the exchange instead of placing it again, and stores it FILLED. Every signal
    has one stored order, at most one exchange order, and the stored state is the
    exchange's. (The claimed entry comes after newer ones, so some of them meet another
    position than in stream order and are rejected: at-least-once delivery reorders.)"""
    client = Redis.from_url(redis_url)
    store = InMemoryEventStore()
    signals = [signal(20 + i, Side.BUY if i % 2 == 0 else Side.SELL) for i in range(4)]
    try:
        await RedisSignalPublisher(client).publish(signals)
        crashing = TraderService(
            store,
            RedisSignalConsumer(client, consumer="t1", claim_idle=0.3, claim_every=0.1),
            CrashAfterPlacing(exchange.gateway),
            clock=SystemClock(),
        )
        await crashing.handle(await crashing.consumer.receive(1, 1.0))
        survivor_consumer = RedisSignalConsumer(
            client, consumer="t2", claim_idle=0.3, claim_every=0.1
        )
        survivor = TraderService(store, survivor_consumer, exchange.gateway, clock=SystemClock())
        deadline = anyio.current_time() + 20
        while survivor.stats.acknowledged < len(signals) and anyio.current_time() < deadline:
            deliveries = await survivor_consumer.receive(10, 0.2)
            if deliveries:
                await survivor.handle(deliveries)
    finally:
        await client.aclose()

    assert survivor.stats.acknowledged == len(signals)
    for s in signals:
        on_exchange = exchange.trading.by_client_id(s.signal_id)
        last = (await stored(store, s.signal_id))[-1]
        assert len(on_exchange) <= 1
        if on_exchange:
            assert isinstance(last, OrderUpdated)
            assert (last.status, last.executed_quantity) == (
                OrderStatus.FILLED,
                on_exchange[0].executed,
            )
        else:
            assert isinstance(last, OrderRejected)
    orphan = (await stored(store, signals[0].signal_id))[-1]
    assert isinstance(orphan, OrderUpdated)
    assert exchange.gateway.stats.found == 1
    assert len(exchange.trading.posts) == len(exchange.trading.orders)
    assert await position(store) == exchange.trading.balance("BTC")


async def test_dust_left_by_a_sell_does_not_block_the_next_buy(exchange: Exchange) -> None:
    """A BUY sized by quote amount pays its commission in BTC, so the SELL rounded down to
    the lot step leaves dust; the next BUY still opens a position."""
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    sizing = Sizing(SizingKind.QUOTE, D("1000"))
    trader = TraderService(store, bus, exchange.gateway, sizing=sizing, clock=SystemClock())

    await bus.publish([signal(30, Side.BUY), signal(31, Side.SELL), signal(32, Side.BUY)])
    await trader.handle(await bus.receive(10, 0.1))

    assert [p["side"] for p in exchange.trading.posts] == ["BUY", "SELL", "BUY"]
    assert exchange.trading.posts[1]["quantity"] == "0.03329"  # 0.03333 less 0.1 %, stepped
    assert await position(store) == exchange.trading.balance("BTC")


async def test_no_new_order_while_one_is_working(exchange: Exchange) -> None:
    """While a limit BUY rests on the book, the next signal's order is stored rejected
    with the working order's id, and nothing is sent."""
    exchange.trading.hold_limits = True
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(store, bus, exchange.gateway, limit_offset_bps=D(0), clock=SystemClock())

    await bus.publish([signal(33, Side.BUY), signal(34, Side.SELL)])
    await trader.handle(await bus.receive(10, 0.1))

    last = (await stored(store, signal(34, Side.SELL).signal_id))[-1]
    assert isinstance(last, OrderRejected)
    assert last.reason == f"order {signal(33, Side.BUY).signal_id} is still working on the exchange"
    assert len(exchange.trading.posts) == 1


async def test_an_ed25519_key_signs_orders_the_exchange_verifies() -> None:
    """With an Ed25519 key (Binance's recommended type) the order and the user data
    stream's subscription are signed in base64 and the fake exchange verifies them with
    the registered public key; a wrong key is refused."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    async with (
        FakeBinance(("BTCUSDT",), rate=20.0) as market,
        FakeTrading(market, ed25519_public_key=key.public_key()) as trading,
    ):
        market.pause()
        good = BinanceGateway(
            trading.rest_url, ED25519_API_KEY, Ed25519Signer(pem), clock=SystemClock()
        )
        other = Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        bad = BinanceGateway(
            trading.rest_url, ED25519_API_KEY, Ed25519Signer(other), clock=SystemClock()
        )
        stream = BinanceUserStream(trading.stream_url, ED25519_API_KEY, Ed25519Signer(pem))
        try:
            outcome = await good.submit(order_of(40))
            with pytest.raises(MessagingError, match="-1022"):
                await bad.submit(order_of(41))
            await run_stream(stream, lambda: stream.stats.connections == 1)
        finally:
            await good.close()
            await bad.close()

    assert isinstance(outcome, OrderUpdated)
    assert outcome.status is OrderStatus.FILLED
    assert [p["newClientOrderId"] for p in trading.posts] == [order_of(40).order_id]
    assert trading.subscriptions == 1  # the user data stream's subscription, signed too


async def test_a_report_that_overtakes_the_storing_of_its_order_is_caught_up(
    exchange: Exchange,
) -> None:
    """A fill reported before its order is stored is looked at again once the order is
    stored, within seconds, not at the next periodic reconciliation."""
    exchange.trading.hold_limits = True
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(store, bus, exchange.gateway, clock=SystemClock())
    follower = OrderFollower(trader, exchange.gateway, reconcile_every=3600)
    stream = exchange.user_stream()
    stop = anyio.Event()
    order = dataclasses.replace(order_of(50, quantity="0.1"), limit_price=D("29990.00"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(follower.run, stream, stop)
        await eventually(lambda: stream.stats.connections == 1)
        accepted = await exchange.gateway.submit(order)  # placed, not stored yet
        exchange.trading.fill_resting()
        await eventually(lambda: follower.stats.unknown >= 2)  # NEW and TRADE: too early
        await store.append([order, accepted])  # what the trader stores a moment later
        trader.working[order.order_id] = order
        await eventually(lambda: follower.stats.updates == 1, timeout=10)
        stop.set()

    last = (await stored(store, order.order_id))[-1]
    assert isinstance(last, OrderUpdated)
    assert last.status is OrderStatus.FILLED
    assert await position(store) == exchange.trading.balance("BTC")
    await stream.close()


async def test_a_sell_while_flat_is_rejected_without_a_made_up_quantity(
    exchange: Exchange,
) -> None:
    """With quote-amount sizing, a SELL with nothing to close is stored rejected with the
    reason and quantity 0 (not the 1,000 USDT meant for BUYs), and nothing is sent."""
    store, bus = InMemoryEventStore(), InMemorySignalBus()
    trader = TraderService(
        store, bus, exchange.gateway, sizing=Sizing(SizingKind.QUOTE, D(1000)), clock=SystemClock()
    )

    await bus.publish([signal(60, Side.SELL)])
    await trader.handle(await bus.receive(10, 0.1))

    placed, rejected = await stored(store, signal(60, Side.SELL).signal_id)
    assert isinstance(placed, OrderPlaced)
    assert placed.quantity == 0
    assert isinstance(rejected, OrderRejected)
    assert rejected.reason == "no open position to close"
    assert exchange.trading.posts == []
