"""The use cases: collector, processor, trader, order follower, backtesting.

They import the domain (its ports included) and the standard library, plus anyio for
concurrency; never an adapter and never an entry point. What they need from the outside
world (an event store, a market feed, an order gateway, the clock, a log) is given to them.
"""
