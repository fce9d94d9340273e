"""Many simulated gateways in one process, on one asyncio loop and one simulated clock.

    async with Fleet(synthetic_specs(50), mqtt_url="mqtt://127.0.0.1:1883") as fleet:
        fleet.inject_fault("SIMINV00000011", "Protect0080")
        await asyncio.sleep(60)

From synchronous code (pytest, Django), `FleetThread` runs the same fleet on a background
thread: `with FleetThread(specs, mqtt_url=...) as fleet: fleet.inverter(sn).values()`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from devices.gateway_settings import ConfigError, apply_config, default_config
from devices.protocol import BrokerAddress
from simulator.clock import SimClock
from simulator.gateway import GatewayOptions, SimulatedGateway
from simulator.inverter import SimulatedInverter
from simulator.mqtt import MqttHub
from simulator.ota import OtaFault
from simulator.sources import GatewaySpec, load_credentials

log = logging.getLogger("simulator.fleet")


def freeze_heap() -> None:
    """Move everything built so far out of the cyclic GC's reach.

    A fleet of thousands of gateways is millions of long-lived objects; without this, each full
    collection pauses the event loop for seconds. Call it once the fleet is up.
    """
    gc.collect()
    gc.freeze()


class Fleet:
    """Gateways (MQTT clients) with their inverters (Modbus servers), started and stopped
    together. `control=True` also listens on the control topic (see `simulator.control`)."""

    def __init__(
        self,
        specs: Iterable[GatewaySpec],
        *,
        mqtt_url: str | BrokerAddress = "mqtt://127.0.0.1:1883",
        credentials: str | Path | Mapping[str, str] | None = None,
        clock: SimClock | None = None,
        options: GatewayOptions | None = None,
        control: bool = False,
        control_topic: str | None = None,
        upload_interval_s: int | None = None,
        backfill_interval_s: int | None = None,
        weather_variability: float = 1.0,
        load_variability: float = 1.0,
    ) -> None:
        self.specs = list(specs)
        self.broker = (
            mqtt_url if isinstance(mqtt_url, BrokerAddress) else BrokerAddress.from_url(mqtt_url)
        )
        self.passwords = load_credentials(credentials)
        self.clock = clock or SimClock()
        self.options = options or GatewayOptions()
        self.control_enabled = control
        self.control_topic = control_topic
        self.upload_interval_s = upload_interval_s
        self.backfill_interval_s = backfill_interval_s
        self.physics_options = {
            "weather_variability": weather_variability,
            "load_variability": load_variability,
        }
        self.gateways: dict[str, SimulatedGateway] = {}
        self.inverters: dict[str, SimulatedInverter] = {}
        self.hub: MqttHub | None = None
        self.control = None
        self._interval_task: asyncio.Task | None = None
        self.started_at = 0.0

    # ---- building ---------------------------------------------------------------------------

    def build_gateway(self, spec: GatewaySpec) -> SimulatedGateway:
        """The gateway and inverters of one spec (not started; needs `self.hub`)."""
        inverters = []
        for inv in spec.inverters:
            inverter = SimulatedInverter(
                inv.serial,
                inv.model,
                address=inv.address,
                site=spec.site,
                clock=self.clock,
                firmware=inv.firmware,
                pv_kwp=inv.pv_kwp,
                **self.physics_options,
            )
            inverters.append(inverter)
            self.inverters[inv.serial] = inverter
        interval = self.upload_interval_s or spec.upload_interval_s
        config = default_config([(i.model, i.address) for i in inverters], interval)
        if spec.settings:
            settings = {k: v for k, v in spec.settings.items() if k in config}
            try:
                config, _ = apply_config(config, settings)
            except ConfigError as exc:
                log.warning("%s: stored settings ignored (%s)", spec.serial, exc)
            if self.upload_interval_s:
                config["upload_interval_s"] = self.upload_interval_s
        assert self.hub is not None
        return SimulatedGateway(
            spec.serial,
            inverters,
            broker=self.broker,
            hub=self.hub,
            clock=self.clock,
            model=spec.model,
            firmware=spec.firmware,
            password=self.passwords.get(spec.serial),
            config=config,
            options=self.options,
        )

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self, *, batch: int = 200, on_progress: Callable[[int], None] | None = None):
        """Build and connect every gateway, `batch` at a time (lets the broker keep up)."""
        self.hub = MqttHub()
        self.started_at = time.monotonic()
        await self.add(self.specs, batch=batch, on_progress=on_progress)
        if self.backfill_interval_s:
            self._interval_task = asyncio.get_running_loop().create_task(self._backfill_interval())
        if self.control_enabled:
            from simulator.control import ControlChannel

            self.control = ControlChannel(self, topic=self.control_topic)
            self.control.start()
        return self

    async def add(
        self,
        specs: Iterable[GatewaySpec],
        *,
        batch: int = 200,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[SimulatedGateway]:
        """Start more gateways in a running fleet (specs already started are skipped)."""
        todo = [spec for spec in specs if spec.serial not in self.gateways]
        if self.hub is None:
            self.hub = MqttHub()
        known = {spec.serial for spec in self.specs}
        self.specs += [spec for spec in todo if spec.serial not in known]
        added = []
        # Building thousands of gateways allocates millions of objects; the cyclic GC would
        # rescan them all again and again. Nothing built here is garbage yet.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            await self._start_batches(todo, batch, added, on_progress)
        finally:
            if gc_was_enabled:
                gc.enable()
        return added

    async def _start_batches(self, todo, batch, added, on_progress) -> None:
        for i in range(0, len(todo), batch):
            chunk = [self.build_gateway(spec) for spec in todo[i : i + batch]]
            for gw in chunk:
                self.gateways[gw.serial] = gw
            await asyncio.gather(*(gw.start() for gw in chunk))
            await asyncio.sleep(0)  # let CONNACKs in
            added += chunk
            if on_progress:
                on_progress(len(self.gateways))

    async def _backfill_interval(self) -> None:
        """Use the coarser backfill interval until the clock is live, then the configured one."""
        saved = {sn: gw.interval for sn, gw in self.gateways.items()}
        for gw in self.gateways.values():
            gw.set_upload_interval(self.backfill_interval_s)
        # To the moment: a gateway asleep on a backfill slot re-plans as soon as it is told.
        await self.clock.wait_live()
        for sn, interval in saved.items():
            self.gateways[sn].set_upload_interval(interval)
        log.info("backfill done, clock is live")

    async def stop(self) -> None:
        if self._interval_task is not None:
            self._interval_task.cancel()
        if self.control is not None:
            self.control.stop()
        await asyncio.gather(*(gw.stop() for gw in self.gateways.values()), return_exceptions=True)
        if self.hub is not None:
            await self.hub.close()

    async def __aenter__(self) -> Fleet:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def wait_online(self, timeout: float = 30.0) -> int:
        """Wait until every gateway is connected (or the timeout); returns how many are."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(gw.connected for gw in self.gateways.values()):
                break
            await asyncio.sleep(0.05)
        return sum(gw.connected for gw in self.gateways.values())

    # ---- access -----------------------------------------------------------------------------

    def gateway(self, serial: str) -> SimulatedGateway:
        return self.gateways[serial]

    def inverter(self, serial: str) -> SimulatedInverter:
        return self.inverters[serial]

    def inject_fault(self, inverter_serial: str, code: str) -> None:
        """Raise a fault code (its word/bit come from the fault-code file)."""
        self.inverter(inverter_serial).inject_fault(code)

    def clear_fault(self, inverter_serial: str, code: str) -> None:
        self.inverter(inverter_serial).clear_fault(code)

    def arm_ota_fault(
        self, gateway_serial: str, fault: OtaFault | None, inverter_serial: str | None = None
    ) -> None:
        """A one-shot failure for the gateway's next firmware job (or its next job for that
        inverter); None disarms. See simulator/control.py for the kinds."""
        self.gateway(gateway_serial).ota.arm(fault, inverter_serial)

    def summary(self) -> dict[str, Any]:
        stats: collections.Counter = collections.Counter()
        for gw in self.gateways.values():
            stats.update(gw.stats)
        return {
            "gateways": len(self.gateways),
            "inverters": len(self.inverters),
            "connected": sum(gw.connected for gw in self.gateways.values()),
            "sim_time": self.clock.now(),
            "live": self.clock.live,
            **{k: stats[k] for k in sorted(stats)},
        }


class FleetThread:
    """A `Fleet` on its own thread and event loop, for synchronous callers.

    Methods run on the fleet's loop (`call`), so they are safe to use from the test thread.
    """

    def __init__(self, specs: Iterable[GatewaySpec], **fleet_kwargs: Any) -> None:
        self._specs = list(specs)
        self._kwargs = fleet_kwargs
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fleet: Fleet | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 60.0) -> FleetThread:
        self._thread = threading.Thread(target=self._main, name="simulator-fleet", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the simulated fleet did not start in time")
        if self._error is not None:
            raise RuntimeError("the simulated fleet failed to start") from self._error
        return self

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.fleet = Fleet(self._specs, **self._kwargs)
            await self.fleet.start()
            await self.fleet.wait_online(10.0)
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.fleet.stop()

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 30.0) -> Any:
        """Run fn(*args) (a plain function or a coroutine function) on the fleet's loop."""
        assert self.loop is not None

        async def runner():
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result(timeout)

    def inverter_values(self, serial: str) -> dict[str, Any]:
        return self.call(lambda: self.fleet.inverter(serial).values())

    def inject_fault(self, serial: str, code: str) -> None:
        self.call(self.fleet.inject_fault, serial, code)

    def clear_fault(self, serial: str, code: str) -> None:
        self.call(self.fleet.clear_fault, serial, code)

    def arm_ota_fault(
        self, gateway_serial: str, fault: OtaFault | None, inverter_serial: str | None = None
    ) -> None:
        self.call(self.fleet.arm_ota_fault, gateway_serial, fault, inverter_serial)

    def stop(self, timeout: float = 30.0) -> None:
        if self.loop is not None and self._stop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> FleetThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.stop()
