"""The simulated clock: catching up with the wall clock, and waits that end when the timeline
changes (the clock goes live, is set, or the sleeper is woken) so the caller can re-plan."""

import asyncio
import threading
import time
from datetime import UTC, datetime

from simulator.clock import SimClock

NOON = datetime(2026, 6, 21, 10, 0, tzinfo=UTC).timestamp()


def timed(coro, timeout: float = 5.0):
    """Run `coro` on a fresh loop: (its result, real seconds it took)."""
    began = time.monotonic()
    result = asyncio.run(asyncio.wait_for(coro, timeout))
    return result, time.monotonic() - began


def test_an_accelerated_clock_goes_live_when_it_has_caught_up():
    clock = SimClock(time.time() - 100, speed=101)  # 100 s behind, gains 100 s a second
    assert not clock.live and clock.rate == 101
    assert 0.95 < clock.live_in() <= 1.0
    assert SimClock(speed=0).live_in() is None  # frozen: never
    assert SimClock(time.time() + 3600, speed=10).live_in() is None  # ahead: runs free
    assert SimClock().live_in() == 0.0
    _, took = timed(clock.wait_live())
    assert 0.9 < took < 1.2
    assert clock.live and clock.rate == 1.0 and abs(clock.now() - time.time()) < 0.01


def test_sleep_until_returns_at_the_live_transition_not_at_the_far_moment():
    """At speed 101 half an hour is 18 real seconds away; once live, it is half an hour away.
    The wait ends when the clock goes live, so the caller can re-plan on the live timeline."""
    clock = SimClock(time.time() - 100, speed=101)
    reached, took = timed(clock.sleep_until(clock.now() + 1800))
    assert reached is False
    assert 0.9 < took < 1.2 and clock.live


def test_sleep_until_reaches_a_moment_before_the_live_transition():
    clock = SimClock(time.time() - 3600, speed=1000)
    reached, took = timed(clock.sleep_until(clock.now() + 300))  # 0.3 real seconds
    assert reached is True
    assert 0.25 < took < 0.5 and not clock.live


def test_a_wake_event_ends_the_wait_early():
    clock = SimClock()  # live: a sleeper naps up to a minute in one go

    async def main():
        wake = asyncio.Event()
        asyncio.get_running_loop().call_later(0.1, wake.set)
        return await clock.sleep_until(clock.now() + 60, wake)

    reached, took = timed(main())
    assert reached is False and took < 0.3


def test_set_from_another_thread_ends_a_live_wait():
    clock = SimClock()
    jump = threading.Timer(0.1, clock.set, args=(time.time() + 10,))  # still short of the moment
    jump.start()
    reached, took = timed(clock.sleep_until(clock.now() + 60))
    jump.join()
    assert reached is False and took < 0.3


def test_a_frozen_clock_waits_without_spinning_and_sees_advance_at_once():
    clock = SimClock(NOON, speed=0)
    nudge = threading.Timer(0.5, clock.advance, args=(30,))
    cpu = time.process_time()
    nudge.start()
    reached, took = timed(clock.sleep_until(NOON + 10))
    nudge.join()
    assert reached is True and 0.45 < took < 0.7
    assert time.process_time() - cpu < 0.1
    assert clock.now() == NOON + 30


def test_sleep_waits_out_its_simulated_seconds_across_the_live_transition():
    clock = SimClock(time.time() - 50, speed=101)  # live after half a second
    _, took = timed(clock.sleep(51.0))  # 0.5 s accelerated (50.5 simulated), then ~0.5 s live
    assert 0.9 < took < 1.2 and clock.live
