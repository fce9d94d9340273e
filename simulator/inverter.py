"""A simulated inverter as a Modbus device: pymodbus 3.16 `SimDevice` over an `InverterPhysics`.

Input and holding registers are separate tables (the 4-tuple `SimDevice` form), laid out from
the register map's `raw_block_layout()`. The device's `action=` callback

- refreshes the requested input registers from the physics (advanced to the clock's now);
- serves holding registers from the inverter's own image;
- validates every write with the register map: a register that belongs to no point, or to a
  read-only point, answers ILLEGAL_ADDRESS (exception 2); a value out of range, off the step,
  not an enum option or not a valid time answers ILLEGAL_VALUE (exception 3). Input registers
  cannot be written at all (FC6/FC16 only reach the holding table: exception 2);
- hands accepted values to the physics, so the next reading shows the new behaviour;
- takes firmware images in the map's file-transfer block (`simulator.ota.FirmwareReceiver`):
  on install it sets the version register of that firmware type.

`serve_standalone()` runs one inverter as a Modbus TCP server (socket framer, unit id 1) for any
third-party master.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from devices.registermap import PointSpec, RegisterMap, RegisterValueError
from simulator.clock import SimClock
from simulator.environment import Site
from simulator.ota import FirmwareReceiver
from simulator.physics import InverterPhysics

log = logging.getLogger("simulator.inverter")

#: Firmware names as the portal stores them (Inverter.firmware_versions) → register point keys.
FIRMWARE_POINTS = {
    "dsp": "dsp_version",
    "slave_dsp": "slave_dsp_version",
    "lcd": "lcd_version",
    "arc": "arc_version",
    "bms": "bms_version",
    "safety": "dsp_safety_version",
    "dsp_safety": "dsp_safety_version",
}
_LIMITS = {"u16": (0, 0xFFFF), "s16": (-0x8000, 0x7FFF), "u32": (0, 0xFFFFFFFF)}
_LIMITS["s32"] = (-0x80000000, 0x7FFFFFFF)
_REFRESH_S = 5.0  # simulated seconds between two physics refreshes (one poll = one refresh)


class RegisterImage:
    """The words of one table (input or holding) from its first to its last register."""

    def __init__(self, rm: RegisterMap, table: str) -> None:
        base, regs, segments = _layout(rm, table)
        self.table = table
        self.base = base
        self.regs = list(regs)
        self.segments = segments

    def words(self, address: int, count: int) -> list[int]:
        off = address - self.base
        return self.regs[off : off + count]

    def simdata(self) -> list[SimData]:
        # The values live in this image: the device's action copies them into pymodbus's
        # registers before every read, so pymodbus only needs the address ranges.
        return [
            SimData(start, count=n, values=0, datatype=DataType.REGISTERS)
            for start, n in self.segments
        ]


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _layout(rm: RegisterMap, table: str) -> tuple[int, tuple[int, ...], list[tuple[int, int]]]:
    """(first address, default words, [(start, count)]) of a table, computed once per map."""
    per_map = _LAYOUTS.setdefault(rm, {})
    if table not in per_map:
        segments = rm.raw_block_layout()[table]
        base = segments[0].start
        end = segments[-1].start + len(segments[-1].values)
        regs = [0] * (end - base)
        for seg in segments:
            regs[seg.start - base : seg.start - base + len(seg.values)] = seg.values
        per_map[table] = (base, tuple(regs), [(seg.start, len(seg.values)) for seg in segments])
    return per_map[table]


class FastEncoder:
    """Value → words for many points at once, compiled from the map (no validation: the
    simulator's own readings are clamped to what the register can hold)."""

    def __init__(self, rm: RegisterMap, points: list[PointSpec]) -> None:
        self.rm = rm
        self._cache: dict[tuple[str, Any], list[int]] = {}
        self.plan = [(p, self._compile(p)) for p in points]

    def _compile(self, p: PointSpec):
        n = p.n_registers
        little = p.word_order == "little"
        if p.type in _LIMITS and p.enum is None and p.format is None:
            lo, hi = _LIMITS[p.type]
            scale = p.scale
            mask = (1 << (16 * n)) - 1

            def numeric(value: Any) -> list[int]:
                raw = min(hi, max(lo, round(float(value) / scale)))
                u = raw & mask
                if n == 1:
                    return [u]
                return [u & 0xFFFF, u >> 16] if little else [u >> 16, u & 0xFFFF]

            return numeric
        if p.enum is not None:
            table = {o.key: o.value for o in p.enum}

            def enum(value: Any) -> list[int]:
                raw = value if isinstance(value, int) else table.get(value, 0)
                return [raw & 0xFFFF] if n == 1 else self._slow(p, raw)

            return enum
        if p.type == "bits":

            def bits(value: Any) -> list[int]:
                if isinstance(value, int) and n == 1:
                    return [value & 0xFFFF]
                return self._slow(p, value)

            return bits
        return lambda value: self._slow(p, value)

    def _slow(self, p: PointSpec, value: Any) -> list[int]:
        key = (p.key, tuple(value) if isinstance(value, list) else value)
        words = self._cache.get(key)
        if words is None:
            words = self.rm.encode_value(p.key, value)
            if len(self._cache) < 4096:
                self._cache[key] = words
        return words

    def encode_into(self, image: RegisterImage, values: Mapping[str, Any]) -> None:
        regs, base = image.regs, image.base
        for p, fn in self.plan:
            value = values.get(p.key)
            if value is None:
                continue
            words = fn(value)
            off = p.address - base
            regs[off : off + len(words)] = words


_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SIMDATA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_RUNTIME: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _simdata(rm: RegisterMap) -> tuple[list[SimData], ...]:
    """The (coils, discrete, holding, input) ranges of a model, built once per map."""
    simdata = _SIMDATA.get(rm)
    if simdata is None:
        # pymodbus wants a non-empty list for every table; no ECH point is a coil.
        never = [SimData(0xFFF0, values=False, datatype=DataType.BITS, readonly=True)]
        holding = RegisterImage(rm, "holding").simdata()
        inputs = RegisterImage(rm, "input").simdata()
        simdata = _SIMDATA[rm] = (never, list(never), holding, inputs)
    return simdata


@dataclass
class _ModelDevice(SimDevice):
    """A SimDevice whose runtime layout is built once per model and then shared.

    pymodbus builds a flag and a value per address (about 1,700 for an ECH inverter, gaps
    included), which dominated fleet start-up. The layout depends only on the model. Sharing
    the value lists is safe as well: this device's action copies the inverter's own image into
    them before every read, and no await separates that copy from pymodbus's read.
    """

    model_map: RegisterMap | None = None

    def build_device(self):
        built = _RUNTIME.get(self.model_map)
        if built is None:
            built = _RUNTIME[self.model_map] = super().build_device()
        return built


def _input_encoder(rm: RegisterMap) -> FastEncoder:
    """One compiled encoder per map, shared by every inverter of that model."""
    encoder = _ENCODERS.get(rm)
    if encoder is None:
        inputs = [p for p in rm.points.values() if p.table == "input"]
        encoder = _ENCODERS[rm] = FastEncoder(rm, inputs)
    return encoder


_SELFTEST_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _selftest_encoder(rm: RegisterMap) -> FastEncoder:
    """The encoder of the AutoTest registers (and the running status the test overrides)."""
    encoder = _SELFTEST_ENCODERS.get(rm)
    if encoder is None:
        points = [
            p
            for p in rm.points.values()
            if p.table == "input" and (p.key.startswith("autotest") or p.key == "run_status")
        ]
        encoder = _SELFTEST_ENCODERS[rm] = FastEncoder(rm, points)
    return encoder


class SimulatedInverter:
    """One inverter: physics, register images and the pymodbus device that serves them."""

    def __init__(
        self,
        serial: str,
        model: str,
        *,
        address: int = 1,
        site: Site | None = None,
        clock: SimClock | None = None,
        seed: int | None = None,
        firmware: Mapping[str, str] | None = None,
        rm: RegisterMap | None = None,
        **physics_options: Any,
    ) -> None:
        self.serial = serial
        self.rm = rm or RegisterMap.for_model(model)
        self.model = self.rm.model_name
        self.address = address
        self.clock = clock or SimClock()
        self.site = site or Site()
        seed = seed if seed is not None else stable_seed(serial)
        self.physics = InverterPhysics(
            self.rm, self.site, start_ts=self.clock.now(), seed=seed, **physics_options
        )
        self.identity = self._identity(firmware or {})
        self.input = RegisterImage(self.rm, "input")
        self.holding = RegisterImage(self.rm, "holding")
        self._encoder = _input_encoder(self.rm)
        self._dirty = True
        self.writes = 0  # accepted holding writes (for tests and stats)
        block = self.rm.firmware_transfer
        self.firmware_receiver = FirmwareReceiver(self, block) if block is not None else None
        self.refresh()

    def _identity(self, firmware: Mapping[str, str]) -> dict[str, Any]:
        rm = self.rm
        ident: dict[str, Any] = {
            "serial_number": self.serial[: 2 * rm.point("serial_number").n_registers],
            "model_name": self.model,
            "modbus_address": self.address,
            "rated_power": rm.rated_power_w,
            "phase_count": rm.spec.phases,
            "mppt_count": rm.spec.mppt_count,
        }
        for name, version in firmware.items():
            key = FIRMWARE_POINTS.get(str(name).strip().lower().replace(" ", "_"), str(name))
            if key in rm.points:
                try:
                    rm.encode_value(key, version)
                except RegisterValueError:
                    log.warning("%s: firmware %s=%r is not MM.mm", self.serial, name, version)
                    continue
                ident[key] = version
        return {k: v for k, v in ident.items() if k in rm.points}

    # ---- state ------------------------------------------------------------------------------

    def refresh(self, t: float | None = None) -> None:
        """Advance the physics to `t` (default: the clock's now) and re-encode the inputs."""
        t = self.clock.now() if t is None else t
        if t - self.physics.t >= _REFRESH_S:
            self.physics.advance(t)
            self._dirty = True
        if self._dirty:
            self._encoder.encode_into(self.input, self.physics.values(self.identity))
            self._dirty = False
        if self.physics.selftest is not None:
            # The AutoTest moves faster than the physics' refresh: its registers are exact.
            _selftest_encoder(self.rm).encode_into(self.input, self.physics.self_test_values(t))

    def values(self) -> dict[str, Any]:
        """The inverter's true state now: every input point in engineering units."""
        self.refresh()
        values = self.physics.values(self.identity)
        values.update(self.physics.self_test_values(self.clock.now()))
        return values

    def settings(self) -> dict[str, Any]:
        """Holding values (engineering units) as the inverter applies them."""
        return dict(self.physics.settings)

    @property
    def status(self) -> str | None:
        """running / standby / fault / off, as the register map defines it."""
        return self.rm.device_status({"run_status": self.physics.run_status})

    def inject_fault(self, code: str) -> None:
        self.refresh()
        self.physics.inject_fault(code)
        if code.startswith(("Fault", "Protect")):
            self.physics.abort_self_test(self.clock.now(), "fault_active")
        self.physics.advance(self.physics.t + 1.0)
        self._dirty = True

    def clear_fault(self, code: str) -> None:
        self.refresh()
        self.physics.clear_fault(code)
        self.physics.advance(self.physics.t + 1.0)
        self._dirty = True

    def firmware_versions(self) -> dict[str, str]:
        """The version each firmware type of the model runs ({"dsp": "01.20", …})."""
        return {
            name: str(self.identity.get(t.version_point, self.rm.default_value(t.version_point)))
            for name, t in self.rm.firmware_types.items()
        }

    def set_firmware_version(self, point_key: str, version: str) -> None:
        """What an install changes: the version register of one board."""
        self.rm.encode_value(point_key, version)  # MM.mm, or RegisterValueError
        self.identity[point_key] = version
        self._dirty = True

    def write_registers(self, address: int, values: list[int]) -> ExcCodes | None:
        """A holding write as FC16 would make it, without a line (None = accepted)."""
        return self._write(address, [int(v) & 0xFFFF for v in values])

    def write(self, key: str, value: Any) -> None:
        """Write a holding point as a Modbus master would (RegisterValueError if invalid)."""
        address, words = self.rm.encode_write(key, value)
        result = self._write(address, words)
        if result is not None:
            raise RegisterValueError(key, f"{key}: the inverter answered {result.name}")

    # ---- Modbus -----------------------------------------------------------------------------

    def sim_device(self, device_id: int | None = None) -> SimDevice:
        """A pymodbus device serving this inverter (id = its Modbus address by default)."""
        return _ModelDevice(
            id=self.address if device_id is None else device_id,
            simdata=_simdata(self.rm),
            action=self._action,
            model_map=self.rm,
        )

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is not None and function_code in (6, 16, 23):
            values = [int(v) for v in set_values]
            return self._write(address, values)
        if function_code == 4:
            self.refresh()
            image = self.input
        elif function_code in (3, 6, 16, 23):
            image = self.holding
        else:
            return None
        off = address - start_address
        current_registers[off : off + count] = image.words(address, count)
        return None

    def _write(self, address: int, values: list[int]) -> ExcCodes | None:
        receiver = self.firmware_receiver
        if receiver is not None and receiver.owns(address, len(values)):
            return receiver.write(address, values)
        rm, image = self.rm, self.holding
        touched: dict[str, PointSpec] = {}
        for a in range(address, address + len(values)):
            p = rm.point_at("holding", a)
            if p is None or not p.writable:
                return ExcCodes.ILLEGAL_ADDRESS
            touched[p.key] = p
        merged = list(image.regs)
        merged[address - image.base : address - image.base + len(values)] = values
        decoded = {}
        for key, p in touched.items():
            off = p.address - image.base
            value = rm.decode_point(key, merged[off : off + p.n_registers])
            try:
                rm.encode_write(key, value)  # the map's range, step, option and format checks
            except RegisterValueError as exc:
                log.info("%s: write rejected: %s", self.serial, exc.message)
                return ExcCodes.ILLEGAL_VALUE
            if not _device_accepts(key, value):
                log.info("%s: write rejected by the device: %s = %s", self.serial, key, value)
                return ExcCodes.ILLEGAL_VALUE
            decoded[key] = value
        self.refresh()  # the time before the write ran on the old settings
        image.regs[:] = merged
        for key, value in decoded.items():
            self.physics.apply_setting(key, value)
        self._autotest_commands(decoded)
        self.writes += 1
        self._dirty = True
        return None

    def _autotest_commands(self, written: dict[str, Any]) -> None:
        """AutoTest: Start and Abort commands, and a power-off that stops a running test."""
        now = self.clock.now()
        command = written.get("autotest_command")
        if command == "start":
            refused = self.physics.start_self_test(now)
            if refused:
                log.info("%s: AutoTest refused: %s", self.serial, refused)
        elif command == "abort":
            self.physics.abort_self_test(now, "user_abort")
        if written.get("power_switch") == "off":
            self.physics.abort_self_test(now, "power_off")

    def __repr__(self) -> str:
        return f"<SimulatedInverter {self.serial} {self.model} @{self.address}>"


# Rules the inverter's firmware enforces beyond the register map (the map's descriptions say
# so); the portal does not know them, so they come back as Modbus exceptions.
DEVICE_RULES = {
    # Grid code: a fixed power factor must be at least 0.8 (under- or over-excited).
    "power_factor_setpoint": lambda value: abs(float(value)) >= 0.8,
}


def _device_accepts(key: str, value: Any) -> bool:
    rule = DEVICE_RULES.get(key)
    return rule is None or rule(value)


def stable_seed(text: str) -> int:
    """A seed that does not change between runs (unlike hash())."""
    h = 2166136261
    for ch in text.encode():
        h = (h ^ ch) * 16777619 & 0xFFFFFFFF
    return h


class _LineCore(SimCore):
    """SimCore that treats an unknown address as absent (pymodbus falls back to id 0)."""

    async def async_getValues(self, device_id, func_code, address, count=1):
        if device_id not in self.devices:
            raise NoSuchIdException(f"no device {device_id} on this line")
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(self, device_id, func_code, address, values):
        if device_id not in self.devices:
            raise NoSuchIdException(f"no device {device_id} on this line")
        return await super().async_setValues(device_id, func_code, address, values)


def make_server(
    inverters: Iterable[SimulatedInverter],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    framer: FramerType = FramerType.RTU,
    silent_when_absent: bool = True,
    unit_id: int | None = None,
) -> ModbusTcpServer:
    """A (not yet started) pymodbus TCP server for these inverters (by Modbus address, or all
    as `unit_id`). An unknown address is silent on a line, answers exception 0x0B otherwise."""
    devices = [inv.sim_device(unit_id) for inv in inverters]
    server = ModbusTcpServer(
        devices, framer=framer, address=(host, port), ignore_missing_devices=silent_when_absent
    )
    server.context.__class__ = _LineCore  # same data, stricter device lookup
    return server


async def serve_standalone(
    inverter: SimulatedInverter,
    *,
    host: str = "127.0.0.1",
    port: int = 502,
    framer: FramerType = FramerType.SOCKET,
) -> ModbusTcpServer:
    """Start a Modbus TCP server for one inverter (unit id 1); stop it with `shutdown()`."""
    server = make_server(
        [inverter], host=host, port=port, framer=framer, silent_when_absent=False, unit_id=1
    )
    await server.serve_forever(background=True)
    return server


def server_port(server: ModbusTcpServer) -> int:
    """The TCP port a started server listens on (useful after binding port 0)."""
    return server.transport.sockets[0].getsockname()[1]


async def run_standalone(
    model: str,
    *,
    port: int,
    host: str = "127.0.0.1",
    serial: str | None = None,
    site: Site | None = None,
    clock: SimClock | None = None,
    duration_s: float | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve one simulated inverter until cancelled (or for `duration_s` seconds)."""
    rm = RegisterMap.for_model(model)
    serial = serial or f"SIM{rm.model_name.split('-')[0]}0001"
    inverter = SimulatedInverter(serial, rm.model_name, site=site, clock=clock)
    server = await serve_standalone(inverter, host=host, port=port)
    log.info("inverter %s (%s) on modbus tcp %s:%s unit 1", serial, model, host, port)
    if ready is not None:
        ready.set()
    try:
        if duration_s is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration_s)
    finally:
        await server.shutdown()
