"""A simulated gateway (WiFi/4G/ETH kit): an MQTT client speaking `devices.protocol`, with an
RS-485 line to its inverters.

- On connect it publishes a retained `StatusMessage(online=True, …)`; its last will is the same
  message with `online=False`, so the broker announces a cut connection.
- At the configured upload interval it polls every protocol entry's poll blocks over Modbus RTU
  (FC4/FC3 through `BusClient`) and publishes a `TelemetryMessage` (seq +1 per message, ts = the
  simulated time of the reading). Blocks whose hint is longer than the upload interval (device
  information, hourly) are read when due.
- It subscribes to its `cmd` topic and answers each command id exactly once on `reply`:
  `modbus` forwards an RTU frame to the line, `config` applies settings and restarts,
  `reboot` restarts, `scan` probes addresses, `read_config` answers with the settings it runs
  with, `ota` takes a firmware job (`simulator.ota`); a command past its deadline gets
  "expired".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import copy
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from devices.gateway_settings import ConfigError, apply_config, default_config
from devices.ota import gateway_response_filter
from devices.protocol import (
    CMD,
    QOS,
    REPLY,
    STATUS,
    TELEMETRY,
    Block,
    BrokerAddress,
    Command,
    DeviceReading,
    ProtocolError,
    Reply,
    StatusMessage,
    TelemetryMessage,
    connect_client,
    make_client,
    topic,
)
from devices.registermap import RegisterMap, list_models
from simulator.bus import BusClient, BusError, BusServer, BusTimeout, ModbusExceptionReply
from simulator.clock import SimClock
from simulator.inverter import SimulatedInverter, stable_seed
from simulator.mqtt import MqttHub, drop_connection
from simulator.ota import GatewayOta, OtaRefused

log = logging.getLogger("simulator.gateway")

RESTART_S = (10.0, 20.0)  # guide: "restart the network card (10–20 seconds)"
INVERTER_INSTALL_S = 30.0  # an inverter board flashing a new image, × restart_scale
MAX_FRAME_BYTES = 256
MAX_BATCH_FRAMES = 32
SIGNAL_DBM = {"CPS WiFi Kit": (-78, -48), "CPS 4G Kit": (-105, -70)}


class CommandError(Exception):
    """A command that failed; the text goes into the reply's `error`."""


@dataclass
class GatewayOptions:
    restart_scale: float = 1.0  # × the 10–20 s a real kit needs to restart (tests: 0.01)
    persistent_session: bool = True  # keep QoS-1 commands queued while the kit is offline
    keepalive: int = 60
    modbus_timeout_s: float = 1.0
    scan_timeout_s: float = 0.3
    reconnect_max_s: float = 30.0
    remember_commands: int = 2048  # ids kept to answer each command once
    # False = "light" mode for load tests only: no RS-485 line, telemetry is read from the
    # inverters' register images without Modbus; `modbus` and `scan` commands are refused.
    modbus: bool = True
    line: str = "tcp"  # how the RS-485 line is carried: tcp | pair | memory (see BusServer)
    # Firmware jobs (simulator/ota.py): chunk requests outstanding at once, seconds before a
    # chunk that did not come is asked for again, the largest image taken, and how long an
    # inverter may take to install.
    ota_window: int = 4
    ota_chunk_timeout_s: float = 10.0
    ota_max_image_bytes: int = 32 * 1024 * 1024
    ota_install_timeout_s: float = 600.0


class SimulatedGateway:
    """One gateway with its inverters on one RS-485 line."""

    def __init__(
        self,
        serial: str,
        inverters: list[SimulatedInverter],
        *,
        broker: BrokerAddress,
        hub: MqttHub,
        clock: SimClock | None = None,
        model: str = "CPS WiFi Kit",
        firmware: str = "10.00",
        password: str | None = None,
        config: dict | None = None,
        upload_interval_s: int = 60,
        options: GatewayOptions | None = None,
    ) -> None:
        self.serial = serial
        self.inverters = {inv.address: inv for inv in inverters}
        self.model = model
        self.firmware = firmware
        self.clock = clock or SimClock()
        self.hub = hub
        self.options = options or GatewayOptions()
        self.broker = broker.with_credentials(serial, password) if password else broker
        self.config = config or default_config(
            [(inv.model, inv.address) for inv in inverters], upload_interval_s
        )
        self.topics = {kind: topic(serial, kind) for kind in (STATUS, TELEMETRY, CMD, REPLY)}
        self._ota_filter = gateway_response_filter(serial)
        self._ota_prefix = self._ota_filter.removesuffix("+")
        self._rng = random.Random(stable_seed(serial))
        self.signal_dbm = self._initial_signal()
        self.bus = BusServer(inverters, transport=self.options.line)
        self.line: BusClient | None = None
        self.client: mqtt.Client | None = None
        self.connected = False
        self.restarting = False
        self.seq = 0
        self.stats = collections.Counter()
        self._stopping = False
        self._poll_task: asyncio.Task | None = None
        self._reconnect_handle: asyncio.TimerHandle | None = None
        self._reconnect_delay = 1.0
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._acks: dict[int, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        self._device_info: dict[int, tuple[str, str]] = {}
        self._block_read_at: dict[tuple[int, str, int], float] = {}
        self._connected_event = asyncio.Event()
        self._replan = asyncio.Event()  # set: the poll loop's next slot is out of date
        self._outage = False  # the link is down on purpose (network_outage)
        self.ota = GatewayOta(self)
        for inverter in inverters:
            if inverter.firmware_receiver is not None:
                inverter.firmware_receiver.install_s = (
                    INVERTER_INSTALL_S * self.options.restart_scale
                )

    # ---- lifecycle --------------------------------------------------------------------------

    @property
    def interval(self) -> int:
        return int(self.config["upload_interval_s"])

    def set_upload_interval(self, seconds: int) -> None:
        """Upload every `seconds` from the next slot of that interval (a backfill's coarser
        interval, and back to the configured one once the clock is live)."""
        self._apply_settings({**self.config, "upload_interval_s": int(seconds)})

    def _apply_settings(self, config: dict) -> None:
        """The one way settings change: a poll loop asleep on a slot of the old upload
        interval, which may be half an hour away, wakes up and plans on the new one."""
        before = self.interval
        self.config = config
        if self.interval != before:
            self._replan.set()

    async def start(self) -> None:
        if self.options.modbus:
            await self.bus.start()
            self.line = self.bus.client(timeout=self.options.modbus_timeout_s)
            await self.line.connect()
        self.client = self._make_client()
        self._connect()
        self._start_polling()

    async def stop(self) -> None:
        """Shut down cleanly: offline status (retained), DISCONNECT, line down."""
        self._stopping = True
        self._cancel_reconnect()
        await self._stop_polling()
        if self.client is not None and self.connected:
            ack = self._publish(STATUS, self._status(False).encode(), retain=True, track=True)
            if ack is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(ack, 2.0)
            self.client.disconnect()
            with contextlib.suppress(Exception):
                self.client.loop_write()  # send DISCONNECT now; paho then closes the socket
        await self._shutdown()

    async def kill(self) -> None:
        """Die like a power cut: the TCP connection drops without DISCONNECT (LWT fires)."""
        self._stopping = True
        self._cancel_reconnect()
        await self._stop_polling()
        if self.client is not None:
            drop_connection(self.client, self.hub)
        await self._shutdown()

    async def _shutdown(self) -> None:
        self.connected = False
        for task in list(self._tasks):
            task.cancel()
        if self.client is not None:
            self.hub.detach(self.client)
            sock = self.client.socket()
            if sock is not None:  # still connecting, or DISCONNECT not flushed
                with contextlib.suppress(OSError):
                    sock.close()
        if self.line is not None:
            self.line.close()
        await self.bus.stop()

    async def restart(self, seconds: float | None = None) -> None:
        """A simulated reboot: offline (connection cut, LWT), wait, back online, poll again."""
        if self.restarting or self._stopping:
            return
        self.restarting = True
        try:
            if seconds is None:
                seconds = self._rng.uniform(*RESTART_S) * self.options.restart_scale
            await self._stop_polling()
            pending = [f for f in self._acks.values() if not f.done()]
            if pending:
                await asyncio.wait(pending, timeout=2.0)
            self._acks.clear()
            if self.client is not None:
                drop_connection(self.client, self.hub)
            self.connected = False
            self._connected_event.clear()
            self.stats["restarts"] += 1
            await asyncio.sleep(seconds)
        finally:
            self.restarting = False
        if not self._stopping:
            self._device_info.clear()
            self._block_read_at.clear()
            self.signal_dbm = self._initial_signal()
            if self.client is not None:  # a fresh last will (its timestamp) for the new session
                self.client.will_set(
                    self.topics[STATUS], self._status(False).encode(), qos=QOS, retain=True
                )
            self._connect()
            self._start_polling()

    async def wait_online(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._connected_event.wait(), timeout)

    async def network_outage(self, seconds: float) -> None:
        """The link drops (no DISCONNECT: the last will fires) and comes back after `seconds`;
        unlike a restart, the gateway keeps running (polling, a firmware job in memory)."""
        if self.client is None or self.restarting or self._stopping or self._outage:
            return
        self._outage = True
        try:
            drop_connection(self.client, self.hub)
            self.connected = False
            self._connected_event.clear()
            self.stats["outages"] += 1
            await asyncio.sleep(seconds)
        finally:
            self._outage = False
        if not self._stopping and not self.restarting:
            self._connect()

    # ---- MQTT -------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        will = (self.topics[STATUS], self._status(False).encode())
        client = make_client(
            self.serial, self.broker, persistent=self.options.persistent_session, will=will
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _connect(self) -> None:
        self._reconnect_handle = None
        if self._stopping or self.client is None:
            return
        self.hub.attach(self.client)
        try:
            if self.stats["connects"]:
                self.client.reconnect()
            else:
                connect_client(
                    self.client,
                    self.broker,
                    persistent=self.options.persistent_session,
                    keepalive=self.options.keepalive,
                )
            self.stats["connects"] += 1
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot connect to %s:%s: %s", self.serial, *self._where(), exc)
            self.hub.detach(self.client)
            self._schedule_reconnect()

    def _where(self) -> tuple[str, int]:
        return self.broker.host, self.broker.port

    def _schedule_reconnect(self) -> None:
        if self._stopping or self.restarting or self._reconnect_handle is not None:
            return
        delay = self._reconnect_delay * self._rng.uniform(0.8, 1.2)
        self._reconnect_delay = min(self._reconnect_delay * 2, self.options.reconnect_max_s)
        self._reconnect_handle = asyncio.get_running_loop().call_later(delay, self._connect)

    def _cancel_reconnect(self) -> None:
        if self._reconnect_handle is not None:
            self._reconnect_handle.cancel()
            self._reconnect_handle = None

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.warning("%s: broker refused the connection: %s", self.serial, reason_code)
            self.stats["refused"] += 1
            return  # the broker closes the socket; _on_disconnect schedules the retry
        self.connected = True
        self._reconnect_delay = 1.0
        client.subscribe([(self.topics[CMD], QOS), (self._ota_filter, QOS)])
        self._publish(STATUS, self._status(True).encode(), retain=True)
        self._connected_event.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        was = self.connected
        self.connected = False
        self._connected_event.clear()
        if was:
            self.stats["disconnects"] += 1
        if not self._stopping and not self.restarting and not self._outage:
            self.hub.detach(self._client_or_raise())
            self._schedule_reconnect()

    def _client_or_raise(self) -> mqtt.Client:
        assert self.client is not None
        return self.client

    def _on_publish(self, _client, _userdata, mid, _reason_code, _properties) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(True)

    def _publish(
        self, kind: str, payload: bytes, *, retain: bool = False, track: bool = False
    ) -> asyncio.Future | None:
        return self.publish_to(self.topics[kind], payload, retain=retain, track=track, kind=kind)

    def publish_to(
        self,
        name: str,
        payload: bytes,
        *,
        retain: bool = False,
        track: bool = False,
        kind: str = "ota",
    ) -> asyncio.Future | None:
        """Publish at QoS 1 on one of this gateway's topics; with `track`, a future that is
        done when the broker acknowledged it."""
        if self.client is None:
            return None
        info = self.client.publish(name, payload, qos=QOS, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.stats["publish_failed"] += 1
            return None
        self.stats[f"published_{kind}"] += 1
        if not track:
            return None
        fut = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = fut
        return fut

    def _status(self, online: bool) -> StatusMessage:
        return StatusMessage(online, self.model, self.firmware, self.signal_dbm)

    def _initial_signal(self) -> int | None:
        span = SIGNAL_DBM.get(self.model)
        return None if span is None else self._rng.randint(*span)

    # ---- telemetry --------------------------------------------------------------------------

    def _start_polling(self) -> None:
        self._poll_task = asyncio.get_running_loop().create_task(
            self._poll_loop(), name=f"poll-{self.serial}"
        )

    async def _stop_polling(self) -> None:
        task, self._poll_task = self._poll_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _next_slot(self, interval: float) -> float:
        phase = (stable_seed(self.serial) % 1000) / 1000.0 * interval
        return (self.clock.now() - phase) // interval * interval + phase + interval

    async def _wait_for_slot(self, next_t: float, interval: float) -> bool:
        """Sleep until `next_t`; False when the plan went out of date meanwhile (the upload
        interval changed, the clock went live or was set), so the caller re-plans instead of
        sleeping on an old slot up to a whole old interval away, in real time."""
        if self._stopping or self.interval != interval:
            return False
        return await self.clock.sleep_until(next_t, self._replan)

    async def _poll_loop(self) -> None:
        self._replan.clear()
        interval = self.interval
        next_t = self._next_slot(interval)
        while not self._stopping:
            if not await self._wait_for_slot(next_t, interval):
                self._replan.clear()
                interval = self.interval
                next_t = self._next_slot(interval)
                continue
            if self.connected:
                try:
                    await self.upload(self.clock.now())
                except Exception:
                    log.exception("%s: upload failed", self.serial)
            else:
                self.stats["uploads_skipped_offline"] += 1
            interval = self.interval
            next_t += interval
            now = self.clock.now()
            if next_t <= now:  # the clock runs faster than the line can be polled: skip slots
                missed = int((now - next_t) // interval) + 1
                self.stats["slots_skipped"] += missed
                next_t += missed * interval

    async def upload(self, ts: float) -> TelemetryMessage:
        """Poll every configured device over the line and publish one telemetry message."""
        devices = [await self._read_device(entry, ts) for entry in self.config["protocols"]]
        self.seq += 1
        message = TelemetryMessage(self.seq, int(ts * 1000), tuple(devices))
        self._publish(TELEMETRY, message.encode())
        return message

    async def _read_device(self, entry: dict, ts: float) -> DeviceReading:
        address, model = entry["address"], entry["protocol"]
        rm = RegisterMap.for_model(model)
        blocks: list[Block] = []
        error = None
        every = max(self.interval, 60)
        for b in rm.poll_blocks:
            key = (address, b.table, b.start)
            last = self._block_read_at.get(key)
            due = last is None or b.interval_s <= every or ts - last >= b.interval_s
            if not due and (address in self._device_info):
                continue
            try:
                regs = await self._read_block(address, b.table, b.start, b.count)
            except BusTimeout:
                error = "timeout"
            except ModbusExceptionReply as exc:
                error = f"modbus exception {exc.code}"
            except BusError as exc:
                error = str(exc)
            if error:
                self.stats["poll_errors"] += 1
                break
            self._block_read_at[key] = ts
            blocks.append(Block(b.table, b.start, tuple(regs)))
            self._learn_identity(rm, address, b, regs)
        self.stats["polls"] += 1
        serial, name = self._device_info.get(address, (f"UNKNOWN{address:03d}", model))
        if error:
            return DeviceReading(address, serial, name, (), error)
        return DeviceReading(address, serial, name, tuple(blocks))

    async def _read_block(self, address: int, table: str, start: int, count: int) -> list[int]:
        if self.line is not None:
            return await self.line.read_registers(table, address, start, count)
        inverter = self.inverters.get(address)  # light mode: straight from the image
        if inverter is None:
            raise BusTimeout("no response")
        inverter.refresh()
        image = inverter.input if table == "input" else inverter.holding
        return image.words(start, count)

    def _learn_identity(self, rm: RegisterMap, address: int, block, regs: list[int]) -> None:
        sn_p, model_p = rm.point("serial_number"), rm.point("model_name")
        if block.table != sn_p.table or not (
            block.start <= sn_p.address and model_p.address + model_p.n_registers <= block.end
        ):
            return
        decoded = rm.decode_blocks({(block.table, block.start): regs})
        serial = decoded.get("serial_number") or f"UNKNOWN{address:03d}"
        self._device_info[address] = (serial, decoded.get("model_name") or rm.model_name)

    # ---- commands ---------------------------------------------------------------------------

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        if message.topic.startswith(self._ota_prefix):
            self.ota.on_response(message.payload)
            return
        if message.topic != self.topics[CMD]:
            return
        self.stats["commands"] += 1
        try:
            command = Command.decode(message.payload)
        except ProtocolError as exc:
            cid = _peek_id(message.payload)
            if cid and self._first_time(cid):
                self._reply(Reply(cid, False, {}, f"bad command: {exc}"))
            return
        if not self._first_time(command.id):
            self.stats["duplicate_commands"] += 1
            if command.op == "ota":  # answered once; the job's last report goes out again
                self.ota.repeated(command.params)
            return
        if command.deadline_ms < int(time.time() * 1000):
            self.stats["expired_commands"] += 1
            self._reply(Reply(command.id, False, {}, "expired"))
            return
        task = asyncio.get_running_loop().create_task(self._run(command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _first_time(self, command_id: str) -> bool:
        if command_id in self._seen:
            return False
        self._seen[command_id] = None
        while len(self._seen) > self.options.remember_commands:
            self._seen.popitem(last=False)
        return True

    def _reply(self, reply: Reply) -> asyncio.Future | None:
        self.stats["replies"] += 1
        return self._publish(REPLY, reply.encode(), track=True)

    async def _run(self, command: Command) -> None:
        restart = False
        try:
            if command.op == "modbus":
                result = await self._cmd_modbus(command)
            elif command.op == "config":
                result, restart = self._cmd_config(command.params)
            elif command.op == "reboot":
                result, restart = {}, True
            elif command.op == "scan":
                result = await self._cmd_scan(command.params)
            elif command.op == "read_config":
                result = {"settings": copy.deepcopy(self.config)}
            elif command.op == "ota":
                try:
                    result = self.ota.offer(command.params)
                except OtaRefused as exc:
                    raise CommandError(str(exc)) from None
            else:
                raise CommandError(f"operation {command.op!r} is not supported by this gateway")
        except CommandError as exc:
            self._reply(Reply(command.id, False, {}, str(exc)))
            return
        if restart:
            seconds = self._rng.uniform(*RESTART_S) * self.options.restart_scale
            result = {**result, "restart_s": round(seconds, 3)}
        self._reply(Reply(command.id, True, result))
        if restart:
            await self.restart(seconds)

    async def _cmd_modbus(self, command: Command) -> dict:
        """`frame`: one RTU frame → `{"frame": answer}`. `frames`: a list forwarded in order on
        the same line → `{"frames": [{"frame": answer} | {"error": why}, …]}`, so a write and
        its read-back travel as one command."""
        params = command.params
        timeout_ms = params.get("timeout_ms", int(self.options.modbus_timeout_s * 1000))
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int):
            raise CommandError("params.timeout_ms must be an integer")
        timeout = min(max(timeout_ms, 20), 10_000) / 1000
        if self.line is None:
            raise CommandError("this gateway simulates no RS-485 line (light mode)")
        if "frames" in params:
            frames = params["frames"]
            if not isinstance(frames, list) or not 1 <= len(frames) <= MAX_BATCH_FRAMES:
                raise CommandError(f"params.frames must be a list of 1..{MAX_BATCH_FRAMES} frames")
            decoded = [_rtu_frame(f) for f in frames]
            answers = []
            for frame in decoded:
                try:
                    answers.append({"frame": await self._forward(frame, timeout)})
                except CommandError as exc:
                    answers.append({"error": str(exc)})
            return {"frames": answers}
        return {"frame": await self._forward(_rtu_frame(params.get("frame", "")), timeout)}

    async def _forward(self, frame: bytes, timeout: float) -> str:
        assert self.line is not None
        try:
            answer = await self.line.transact(frame, timeout)
        except BusTimeout as exc:
            raise CommandError("timeout: no response on the bus") from exc
        except BusError as exc:
            raise CommandError(f"bus error: {exc}") from exc
        self.stats["forwarded_frames"] += 1
        return base64.b64encode(answer).decode("ascii")

    def _cmd_config(self, params: dict) -> tuple[dict, bool]:
        try:
            new, changed = apply_config(self.config, params)
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
        restart = params.get("restart", True)
        if not isinstance(restart, bool):
            raise CommandError("params.restart must be true or false")
        self._apply_settings(new)
        if "protocols" in changed:
            self._device_info.clear()
            self._block_read_at.clear()
        return {"applied": changed, "settings": new}, restart

    async def _cmd_scan(self, params: dict) -> dict:
        first, last = params.get("first", 1), params.get("last", 16)
        timeout_ms = params.get("timeout_ms", int(self.options.scan_timeout_s * 1000))
        for name, value, lo, hi in (
            ("first", first, 1, 247),
            ("last", last, 1, 247),
            ("timeout_ms", timeout_ms, 20, 5000),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise CommandError(f"params.{name} must be an integer {lo}..{hi}")
        rm = RegisterMap.for_model(list_models()[0])
        model_p, sn_p = rm.point("model_name"), rm.point("serial_number")
        if self.line is None:
            raise CommandError("this gateway simulates no RS-485 line (light mode)")
        found = []
        for address in range(first, last + 1):
            try:
                words = await self.line.read_registers(
                    model_p.table, address, model_p.address, model_p.n_registers, timeout_ms / 1000
                )
            except BusTimeout:
                continue
            except ModbusExceptionReply as exc:
                found.append({"address": address, "model": None, "error": f"exception {exc.code}"})
                continue
            except BusError as exc:
                raise CommandError(f"bus error: {exc}") from exc
            entry: dict[str, Any] = {
                "address": address,
                "model": rm.decode_point("model_name", words),
            }
            with contextlib.suppress(BusTimeout, ModbusExceptionReply, BusError):
                sn_words = await self.line.read_registers(
                    sn_p.table, address, sn_p.address, sn_p.n_registers, timeout_ms / 1000
                )
                entry["serial"] = rm.decode_point("serial_number", sn_words)
            found.append(entry)
        return {"devices": found}

    def __repr__(self) -> str:
        return f"<SimulatedGateway {self.serial} {len(self.inverters)} inverter(s)>"


def _rtu_frame(value: Any) -> bytes:
    try:
        frame = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CommandError("params.frame must be a base64 RTU frame") from exc
    if not 4 <= len(frame) <= MAX_FRAME_BYTES:
        raise CommandError(f"an RTU frame has 4..{MAX_FRAME_BYTES} bytes")
    return frame


def _peek_id(payload: bytes) -> str | None:
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    cid = body.get("id") if isinstance(body, dict) else None
    return cid if isinstance(cid, str) and 1 <= len(cid) <= 64 else None
