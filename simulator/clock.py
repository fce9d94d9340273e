"""Simulated time: one clock drives every inverter and gateway of a simulator process.

The clock reads epoch seconds. Live, it is the wall clock. Accelerated, it starts at a moment
in the past and runs `speed` times faster until it has caught up with the wall clock; from then
on it is live again. That is how a fleet backfills history (30 days at speed 1440 take half an
hour) and then simply carries on. A speed of 0 freezes the clock (tests compare exact values).
"""

from __future__ import annotations

import asyncio
import time


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

    def set(self, t: float, speed: float | None = None) -> None:
        """Jump to a moment (tests, control channel); keeps or changes the speed."""
        self._mono0 = time.monotonic()
        self._wall0 = time.time()
        self._sim0 = float(t)
        if speed is not None:
            self.speed = float(speed)
        self.catch_up = self._want_catch_up and self._sim0 < self._wall0

    def advance(self, seconds: float) -> None:
        """Move a (typically frozen) clock forward."""
        self.set(self.now() + seconds)

    async def sleep_until(self, t: float, *, max_real_step: float = 1.0) -> None:
        """Wait until simulated time reaches `t`.

        A live clock sleeps in one go (up to a minute, so thousands of idle gateways cost
        nothing); an accelerated or frozen one re-checks at least every `max_real_step` real
        seconds, so catching up, `set()` and `advance()` take effect.
        """
        while True:
            remaining = t - self.now()
            if remaining <= 0:
                return
            if self.live:
                await asyncio.sleep(min(remaining, 60.0))
                continue
            rate = self.rate
            if rate <= 0:
                await asyncio.sleep(max_real_step)
                continue
            await asyncio.sleep(min(remaining / rate, max_real_step))

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now() + seconds)

    def __repr__(self) -> str:
        return f"<SimClock t={self.now():.1f} speed={self.speed:g} live={self.live}>"
