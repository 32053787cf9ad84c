"""When a consumer may hand unacknowledged deliveries out again: after a back-off.

A delivery that comes back unacknowledged was not acted upon (its order could not be
stored, the gateway refused it for now). Handing it out again at once would hammer what
failed; waiting too long delays every signal behind it. The back-off doubles from ``first``
with each attempt, up to ``most``.
"""

from __future__ import annotations

import anyio


class Redelivery:
    """The back-off before handing unacknowledged deliveries out again."""

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self._at: float | None = None

    @property
    def scheduled(self) -> bool:
        """Return whether a redelivery waits for its back-off."""
        return self._at is not None

    def schedule(self, attempt: int) -> None:
        """Start the back-off before delivery ``attempt`` (2 for the first redelivery)."""
        self._at = anyio.current_time() + min(self.most, self.first * 2 ** (attempt - 2))

    async def due(self, timeout: float) -> bool:
        """Wait for the back-off, ``timeout`` at most; return whether it has passed (then
        it is over). While it has not, the consumer returns nothing: its caller may stop."""
        if self._at is None:
            return True
        wait = self._at - anyio.current_time()
        if wait > 0:
            await anyio.sleep(min(wait, timeout))
            if anyio.current_time() < self._at:
                return False
        self._at = None
        return True
