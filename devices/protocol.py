"""The device protocol, in one place: MQTT topics, message envelopes and client settings.

Every gateway has one namespace, `mc/v1/{serial}/…`, and may use only its own topics:

    status     gw → cloud   retained, also the last will   StatusMessage
    telemetry  gw → cloud   raw register blocks per bus address   TelemetryMessage
    cmd        cloud → gw   {id, op, deadline, params}   Command
                            (`read_config` asks the gateway for the settings it runs with)
    reply      gw → cloud   {id, ok, result | error}   Reply
    ota/…      both         firmware chunks (see docs/device-protocol.md)

Payloads are JSON (valid on MQTT 3.1.1 and 5, QoS 1). Register blocks travel as base64 of the
big-endian register words, so the gateway stays a transparent bridge and all register knowledge
stays in the register maps. Decoders raise ProtocolError with a reason a person can read; the
ingest loop counts and stores such messages instead of crashing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import struct
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

PROTOCOL_VERSION = 1
TOPIC_ROOT = "mc/v1"
STATUS, TELEMETRY, CMD, REPLY, OTA = "status", "telemetry", "cmd", "reply", "ota"
KINDS = (STATUS, TELEMETRY, CMD, REPLY, OTA)
QOS = 1
SERIAL_RE = re.compile(r"^[A-Za-z0-9_-]{4,32}$")
TABLES = {"i": "input", "h": "holding"}
TABLE_CODES = {v: k for k, v in TABLES.items()}
MAX_BLOCK_REGISTERS = 125
COMMAND_OPS = ("modbus", "config", "reboot", "scan", "ota", "read_config")


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the text says why."""


# --- Topics -----------------------------------------------------------------------------------


def topic(serial: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}")
    if not SERIAL_RE.match(serial):
        raise ValueError(f"invalid gateway serial number {serial!r}")
    return f"{TOPIC_ROOT}/{serial}/{kind}"


def parse_topic(name: str) -> tuple[str, str]:
    """`mc/v1/GW123/telemetry` → ("GW123", "telemetry")."""
    parts = name.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise ProtocolError(f"topic outside {TOPIC_ROOT}/: {name!r}")
    serial, kind = parts[2], parts[3]
    if not SERIAL_RE.match(serial):
        raise ProtocolError(f"invalid gateway serial number in topic {name!r}")
    if kind not in KINDS or (kind != OTA and len(parts) != 4):
        raise ProtocolError(f"unknown topic {name!r}")
    return serial, kind


def cloud_subscriptions(shared_group: str | None = None) -> list[str]:
    """What the cloud side listens to; a shared group spreads load over ingest workers."""
    filters = [f"{TOPIC_ROOT}/+/{kind}" for kind in (STATUS, TELEMETRY, REPLY)]
    if shared_group:
        return [f"$share/{shared_group}/{f}" for f in filters]
    return filters


def gateway_acl_patterns() -> list[tuple[str, str]]:
    """Topics a gateway may use, with %u standing for its own username (= its serial)."""
    base = f"{TOPIC_ROOT}/%u"
    return [
        ("write", f"{base}/{STATUS}"),
        ("write", f"{base}/{TELEMETRY}"),
        ("write", f"{base}/{REPLY}"),
        ("write", f"{base}/{OTA}/req/#"),
        ("read", f"{base}/{CMD}"),
        ("read", f"{base}/{OTA}/res/#"),
    ]


# --- Envelopes --------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def pack_registers(registers: list[int]) -> str:
    return base64.b64encode(struct.pack(f">{len(registers)}H", *registers)).decode("ascii")


def unpack_registers(data: str) -> tuple[int, ...]:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ProtocolError("register block is not valid base64") from exc
    if len(raw) % 2:
        raise ProtocolError("register block has an odd number of bytes")
    return struct.unpack(f">{len(raw) // 2}H", raw)


@dataclass(frozen=True)
class Block:
    """A run of registers read in one request: table, first PDU address, the words."""

    table: str
    start: int
    registers: tuple[int, ...]

    def to_wire(self) -> dict:
        return {"t": TABLE_CODES[self.table], "s": self.start, "r": pack_registers(self.registers)}

    @classmethod
    def from_wire(cls, data: Any) -> Block:
        if not isinstance(data, dict):
            raise ProtocolError("block is not an object")
        table = TABLES.get(data.get("t"))
        start = data.get("s")
        if table is None:
            raise ProtocolError(f"block table must be one of {sorted(TABLES)}")
        if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= 0xFFFF:
            raise ProtocolError("block start must be an address 0..65535")
        registers = unpack_registers(data.get("r"))
        if not 1 <= len(registers) <= MAX_BLOCK_REGISTERS:
            raise ProtocolError(f"block must hold 1..{MAX_BLOCK_REGISTERS} registers")
        if start + len(registers) > 0x10000:
            raise ProtocolError("block runs past address 65535")
        return cls(table, start, registers)


@dataclass(frozen=True)
class DeviceReading:
    """What one inverter on the bus answered in one upload (or why it did not)."""

    address: int
    serial: str
    model: str
    blocks: tuple[Block, ...] = ()
    error: str | None = None

    def to_wire(self) -> dict:
        wire = {"a": self.address, "sn": self.serial, "m": self.model}
        if self.error:
            wire["err"] = self.error
        else:
            wire["b"] = [b.to_wire() for b in self.blocks]
        return wire

    @classmethod
    def from_wire(cls, data: Any) -> DeviceReading:
        if not isinstance(data, dict):
            raise ProtocolError("device entry is not an object")
        address, serial, model = data.get("a"), data.get("sn"), data.get("m")
        if not isinstance(address, int) or isinstance(address, bool) or not 1 <= address <= 247:
            raise ProtocolError("device address must be 1..247")
        if not isinstance(serial, str) or not SERIAL_RE.match(serial):
            raise ProtocolError("device serial number missing or invalid")
        if not isinstance(model, str) or not model or len(model) > 32:
            raise ProtocolError("device model missing or invalid")
        error = data.get("err")
        if error is not None:
            return cls(address, serial, model, (), str(error)[:200])
        blocks = data.get("b")
        if not isinstance(blocks, list) or not blocks:
            raise ProtocolError("device entry has neither blocks nor an error")
        return cls(address, serial, model, tuple(Block.from_wire(b) for b in blocks))


@dataclass(frozen=True)
class TelemetryMessage:
    seq: int
    ts_ms: int
    devices: tuple[DeviceReading, ...]

    def encode(self) -> bytes:
        body = {
            "v": PROTOCOL_VERSION,
            "seq": self.seq,
            "ts": self.ts_ms,
            "d": [d.to_wire() for d in self.devices],
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> TelemetryMessage:
        body = _load_object(payload)
        seq, ts = body.get("seq"), body.get("ts")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ProtocolError("seq must be a non-negative integer")
        _check_timestamp_ms(ts)
        devices = body.get("d")
        if not isinstance(devices, list) or not devices:
            raise ProtocolError("telemetry carries no devices")
        return cls(seq, ts, tuple(DeviceReading.from_wire(d) for d in devices))


@dataclass(frozen=True)
class StatusMessage:
    online: bool
    model: str = ""
    firmware: str = ""
    signal_dbm: int | None = None
    ts_ms: int = field(default_factory=_now_ms)

    def encode(self) -> bytes:
        body = {"v": PROTOCOL_VERSION, **asdict(self)}
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> StatusMessage:
        body = _load_object(payload)
        online = body.get("online")
        if not isinstance(online, bool):
            raise ProtocolError("status needs a boolean 'online'")
        signal = body.get("signal_dbm")
        if signal is not None and (not isinstance(signal, int) or not -150 <= signal <= 0):
            raise ProtocolError("signal_dbm must be an integer -150..0")
        ts = body.get("ts_ms", _now_ms())
        _check_timestamp_ms(ts)
        return cls(
            online=online,
            model=str(body.get("model", ""))[:32],
            firmware=str(body.get("firmware", ""))[:32],
            signal_dbm=signal,
            ts_ms=ts,
        )


@dataclass(frozen=True)
class Command:
    """cloud → gateway. `deadline_ms`: the gateway drops a command it receives later."""

    op: str
    params: dict
    deadline_ms: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def encode(self) -> bytes:
        body = {
            "v": PROTOCOL_VERSION,
            "id": self.id,
            "op": self.op,
            "deadline": self.deadline_ms,
            "params": self.params,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Command:
        body = _load_object(payload)
        op, cid, deadline = body.get("op"), body.get("id"), body.get("deadline")
        if op not in COMMAND_OPS:
            raise ProtocolError(f"unknown command op {op!r}")
        if not isinstance(cid, str) or not 1 <= len(cid) <= 64:
            raise ProtocolError("command id missing")
        _check_timestamp_ms(deadline)
        params = body.get("params", {})
        if not isinstance(params, dict):
            raise ProtocolError("command params must be an object")
        return cls(op=op, params=params, deadline_ms=deadline, id=cid)


@dataclass(frozen=True)
class Reply:
    id: str
    ok: bool
    result: dict = field(default_factory=dict)
    error: str | None = None

    def encode(self) -> bytes:
        body = {"v": PROTOCOL_VERSION, "id": self.id, "ok": self.ok, "result": self.result}
        if self.error:
            body["error"] = self.error
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Reply:
        body = _load_object(payload)
        rid, ok = body.get("id"), body.get("ok")
        if not isinstance(rid, str) or not 1 <= len(rid) <= 64:
            raise ProtocolError("reply id missing")
        if not isinstance(ok, bool):
            raise ProtocolError("reply needs a boolean 'ok'")
        result = body.get("result", {})
        if not isinstance(result, dict):
            raise ProtocolError("reply result must be an object")
        error = body.get("error")
        error = None if error is None else storable(str(error)[:500])
        return cls(rid, ok, storable(result), error)


def storable(value: Any) -> Any:
    """JSON as PostgreSQL can keep it: no NUL characters and no lone surrogates in strings
    (JSON escapes allow both; jsonb and UTF-8 text refuse them)."""
    if isinstance(value, str):
        if value.isascii() and "\x00" not in value:
            return value
        cleaned = value.replace("\x00", "\ufffd")
        return cleaned.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


def _load_object(payload: bytes) -> dict:
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("payload is not JSON") from exc
    if not isinstance(body, dict):
        raise ProtocolError("payload is not a JSON object")
    if body.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {body.get('v')!r}")
    return body


def _check_timestamp_ms(ts: Any) -> None:
    # 2000-01-01 .. 2100-01-01: anything else is a broken clock, not a reading.
    if not isinstance(ts, int) or isinstance(ts, bool) or not 946684800000 <= ts < 4102444800000:
        raise ProtocolError("timestamp must be epoch milliseconds between 2000 and 2100")


# --- Clients ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log or traceback
    mqtt_version: int = 5  # 5 or 3 (3.1.1)

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """mqtt://user:pass@host:1883?version=311 (default MQTT 5)."""
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"unsupported MQTT URL scheme {parsed.scheme!r}")
        version = parse_qs(parsed.query).get("version", ["5"])[0]
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 1883,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            mqtt_version=3 if version in ("3", "311", "3.1.1") else 5,
        )

    def with_credentials(self, username: str, password: str) -> BrokerAddress:
        return BrokerAddress(self.host, self.port, username, password, self.mqtt_version)


def make_client(
    client_id: str,
    broker: BrokerAddress,
    *,
    persistent: bool = True,
    manual_ack: bool = False,
    will: tuple[str, bytes] | None = None,
) -> mqtt.Client:
    """A paho 2.x client with our settings: VERSION2 callbacks, QoS-1-friendly session.

    A persistent session (fixed id, no clean start) lets the broker keep QoS-1 messages for
    us while we are away. Call `connect_client` to open it.
    """
    v5 = broker.mqtt_version == 5
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if v5 else not persistent,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if will:
        client.will_set(will[0], will[1], qos=QOS, retain=True)
    client.max_inflight_messages_set(100)
    client.on_socket_open = lambda _client, _userdata, sock: no_delay(sock)
    return client


def no_delay(sock: Any) -> None:
    """Send small packets at once. paho leaves Nagle's algorithm on, so a PUBLISH written
    right after a PUBACK waits for the broker's delayed TCP ACK: 40 ms per hop on Linux."""
    import socket

    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect_client(
    client: mqtt.Client,
    broker: BrokerAddress,
    *,
    persistent: bool = True,
    keepalive: int = 30,
    receive_maximum: int | None = None,
    asynchronous: bool = False,
) -> None:
    """Open the session. `receive_maximum` (MQTT 5) lets a subscriber that acknowledges after
    its database commit hold that many unacknowledged messages; without it Mosquitto sends
    only `max_inflight_messages` (20). `asynchronous` keeps retrying a broker that is down at
    start-up instead of failing."""
    connect = client.connect_async if asynchronous else client.connect
    if broker.mqtt_version == 5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 24 * 3600 if persistent else 0
        if receive_maximum:
            props.ReceiveMaximum = max(1, min(receive_maximum, 65535))
        connect(broker.host, broker.port, keepalive, clean_start=not persistent, properties=props)
    else:
        connect(broker.host, broker.port, keepalive)
