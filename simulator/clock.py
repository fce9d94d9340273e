"""Simulated time: one clock drives every inverter and gateway of a simulator process.

The clock reads epoch seconds. Live, it is the wall clock. Accelerated, it starts at a moment
in the past and runs `speed` times faster until it has caught up with the wall clock; from then
on it is live again. That is how a fleet backfills history (30 days at speed 1440 take half an
hour) and then simply carries on. A speed of 0 freezes the clock (tests compare exact values).

Waits on simulated time end early when the timeline changes under them: when the clock goes
live (a moment a blink away at high speed can be half an hour away live) or is `set()`. The
sleeper then re-plans on the new timeline instead of sleeping through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

# The longest a live wait naps in one go: thousands of idle gateways wake once a minute.
LIVE_NAP_S = 60.0


class SimClock:
    """Epoch seconds on a possibly accelerated, possibly frozen timeline."""

    def __init__(
        self, start: float | None = None, speed: float = 1.0, *, catch_up: bool = True
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be 0 (frozen) or positive")
        self._mono0 = time.monotonic()
        self._wall0 = time.time()
        self._sim0 = self._wall0 if start is None else float(start)
        self.speed = float(speed)
        self._want_catch_up = catch_up
        # Only a clock behind the wall clock catches up; one started in the future runs free.
        self.catch_up = catch_up and self._sim0 < self._wall0
        self._epoch = 0  # +1 on every set(): a wait that started before it ends
        # Naps in progress, on whatever loop (thread) they run, so set() can end them.
        self._naps: dict[asyncio.Timeout, asyncio.AbstractEventLoop] = {}

    def now(self) -> float:
        elapsed = time.monotonic() - self._mono0
        t = self._sim0 + elapsed * self.speed
        if self.catch_up:
            wall = self._wall0 + elapsed
            if t >= wall:
                return wall
        return t

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    @property
    def live(self) -> bool:
        """True once simulated time moves with the wall clock."""
        if not self.catch_up:
            return self.speed == 1.0
        elapsed = time.monotonic() - self._mono0
        return self._sim0 + elapsed * self.speed >= self._wall0 + elapsed

    @property
    def rate(self) -> float:
        """Simulated seconds per real second right now."""
        return 1.0 if self.live else self.speed

    def live_in(self) -> float | None:
        """Real seconds until the clock is live: 0 when it is, None when it never will be
        (frozen, running free, or too slow to catch up)."""
        if self.live:
            return 0.0
        if not self.catch_up or self.speed <= 1.0:
            return None
        elapsed = time.monotonic() - self._mono0
        return max((self._wall0 - self._sim0) / (self.speed - 1.0) - elapsed, 0.0)

    def set(self, t: float, speed: float | None = None) -> None:
        """Jump to a moment (tests, control channel); keeps or changes the speed. Safe from
        any thread: waits in progress end and their callers re-plan."""
        self._mono0 = time.monotonic()
        self._wall0 = time.time()
        self._sim0 = float(t)
        if speed is not None:
            self.speed = float(speed)
        self.catch_up = self._want_catch_up and self._sim0 < self._wall0
        self._epoch += 1
        for nap, loop in list(self._naps.items()):
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody sleeps there
                loop.call_soon_threadsafe(_end_nap, nap)

    def advance(self, seconds: float) -> None:
        """Move a (typically frozen) clock forward."""
        self.set(self.now() + seconds)

    async def sleep_until(
        self, t: float, wake: asyncio.Event | None = None, *, max_real_step: float = 1.0
    ) -> bool:
        """Wait until simulated time reaches `t`: True when it did.

        False, early, when the timeline changed under the wait: the clock went live, `set()`
        moved it, or `wake` was set. The caller re-plans (`wake` stays set; clearing it is the
        caller's business).

        A live clock naps up to a minute in one go, so thousands of idle sleepers cost nothing;
        an accelerated one wakes exactly when it goes live; an accelerated or frozen one
        re-checks at least every `max_real_step` real seconds all the same.
        """
        epoch, was_live = self._epoch, self.live
        while True:
            if self.now() >= t:
                return True
            changed = self._epoch != epoch or self.live != was_live
            if changed or (wake is not None and wake.is_set()):
                return False
            remaining = t - self.now()
            if was_live:
                nap = min(remaining, LIVE_NAP_S)
            elif self.speed > 0:
                live_in = self.live_in()
                nap = min(remaining / self.speed, max_real_step)
                nap = nap if live_in is None else min(nap, live_in)
            else:
                nap = max_real_step  # frozen: only set() moves it, and ends the nap early
            await self._nap(max(nap, 0.0), wake)

    async def wait_live(self) -> None:
        """Return once simulated time moves with the wall clock (never, for a frozen clock)."""
        while not self.live:
            await self.sleep_until(math.inf)

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of simulated time, across the clock going live or being set."""
        t = self.now() + seconds
        while not await self.sleep_until(t):
            pass

    async def _nap(self, seconds: float, wake: asyncio.Event | None) -> None:
        """Sleep `seconds` real seconds, less if `wake` is set or `set()` is called."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds) as nap:
                self._naps[nap] = loop
                try:
                    await (wake.wait() if wake is not None else loop.create_future())
                finally:
                    del self._naps[nap]

    def __repr__(self) -> str:
        return f"<SimClock t={self.now():.1f} speed={self.speed:g} live={self.live}>"


def _end_nap(nap: asyncio.Timeout) -> None:
    with contextlib.suppress(RuntimeError):  # the nap ended meanwhile
        nap.reschedule(-math.inf)
