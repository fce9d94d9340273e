"""Firmware delivery over MQTT (the `ota` command and the `ota/req`, `ota/res` topics).

The cloud offers a job with an `ota` command; the gateway pulls the image in chunks and tells
the cloud how far it got. Pulling, not pushing, is what makes a transfer resumable: after a
reconnect the gateway asks for the next offset it lacks, and the cloud holds no per-device
state beyond the job's row.

    cloud → gw   mc/v1/{sn}/cmd           {"op": "ota", "params": Offer.to_params()}
    gw → cloud   mc/v1/{sn}/ota/req/{job} ChunkRequest (JSON) or StateReport (JSON)
    cloud → gw   mc/v1/{sn}/ota/res/{job} ChunkResponse (binary: header + raw bytes)

A chunk travels as raw bytes after a small JSON header, not as base64 in JSON: a third more
bytes through the broker for every image would be paid by every gateway of a rollout.

Images may start with an `MCFW1` header line naming the model, the firmware type and the
version they are built for; a device refuses an image whose header names another model.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from devices.protocol import OTA, PROTOCOL_VERSION, SERIAL_RE, TOPIC_ROOT, ProtocolError

REQ, RES = "req", "res"
DEFAULT_CHUNK_BYTES = 64 * 1024
MIN_CHUNK_BYTES = 1024
# Far below the 1 MiB payload limit of the embedded broker (and Mosquitto's defaults).
MAX_CHUNK_BYTES = 256 * 1024
# A request may ask for a range of up to this many chunks; each is answered on its own.
MAX_RANGE_CHUNKS = 8
MAX_REQUEST_BYTES = MAX_RANGE_CHUNKS * MAX_CHUNK_BYTES
MAX_IMAGE_BYTES = 1 << 31
JOB_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
TARGET_GATEWAY, TARGET_INVERTER = "gateway", "inverter"

# What a device reports while it works on a job, in order; `failed` can follow any of them.
DOWNLOADING = "downloading"
VERIFYING = "verifying"
INSTALLING = "installing"
REBOOTING = "rebooting"
SUCCEEDED = "succeeded"
FAILED = "failed"
DEVICE_STATES = (DOWNLOADING, VERIFYING, INSTALLING, REBOOTING, SUCCEEDED, FAILED)
FINAL_STATES = (SUCCEEDED, FAILED)

RES_MAGIC = b"MCO1"
IMAGE_MAGIC = b"MCFW1 "


# --- Topics -----------------------------------------------------------------------------------


def job_topic(serial: str, direction: str, job: str) -> str:
    """`mc/v1/{sn}/ota/req/{job}` or `…/ota/res/{job}`."""
    if direction not in (REQ, RES):
        raise ValueError(f"unknown direction {direction!r}")
    if not SERIAL_RE.match(serial):
        raise ValueError(f"invalid gateway serial number {serial!r}")
    if not JOB_RE.match(job):
        raise ValueError(f"invalid job id {job!r}")
    return f"{TOPIC_ROOT}/{serial}/{OTA}/{direction}/{job}"


def parse_job_topic(name: str) -> tuple[str, str, str]:
    """`mc/v1/GW1/ota/req/JOB` → ("GW1", "req", "JOB")."""
    parts = name.split("/")
    if (
        len(parts) != 6
        or "/".join(parts[:2]) != TOPIC_ROOT
        or parts[3] != OTA
        or parts[4] not in (REQ, RES)
        or not SERIAL_RE.match(parts[2])
        or not JOB_RE.match(parts[5])
    ):
        raise ProtocolError(f"not a firmware job topic: {name!r}")
    return parts[2], parts[4], parts[5]


def cloud_request_filter(shared_group: str | None = None) -> str:
    """What the delivery service subscribes to: every gateway's requests."""
    base = f"{TOPIC_ROOT}/+/{OTA}/{REQ}/+"
    return f"$share/{shared_group}/{base}" if shared_group else base


def gateway_response_filter(serial: str) -> str:
    return f"{TOPIC_ROOT}/{serial}/{OTA}/{RES}/+"


# --- The offer (params of the `ota` command) ---------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """A job for one device: the gateway itself or an inverter on its bus."""

    job: str
    size: int
    sha256: str
    version: str
    model: str
    chunk: int = DEFAULT_CHUNK_BYTES
    target: str = TARGET_GATEWAY
    address: int | None = None  # the inverter's Modbus address
    firmware_type: str | None = None  # the inverter's firmware type (dsp, lcd, …)

    def to_params(self) -> dict:
        params: dict[str, Any] = {
            "job": self.job,
            "size": self.size,
            "sha256": self.sha256,
            "version": self.version,
            "model": self.model,
            "chunk": self.chunk,
            "target": {"kind": self.target},
        }
        if self.target == TARGET_INVERTER:
            params["target"].update(address=self.address, type=self.firmware_type)
        return params

    @classmethod
    def from_params(cls, params: Any) -> Offer:
        if not isinstance(params, dict):
            raise ProtocolError("ota params must be an object")
        job, size, sha = params.get("job"), params.get("size"), params.get("sha256")
        chunk, version, model = params.get("chunk"), params.get("version"), params.get("model")
        if not isinstance(job, str) or not JOB_RE.match(job):
            raise ProtocolError("params.job must be 8..64 letters, digits, '-' or '_'")
        if not _int(size) or not 1 <= size <= MAX_IMAGE_BYTES:
            raise ProtocolError("params.size must be a positive integer")
        if not isinstance(sha, str) or not SHA256_RE.match(sha):
            raise ProtocolError("params.sha256 must be 64 lowercase hex digits")
        if not _int(chunk) or not MIN_CHUNK_BYTES <= chunk <= MAX_CHUNK_BYTES:
            raise ProtocolError(f"params.chunk must be {MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES}")
        if not isinstance(version, str) or not 1 <= len(version) <= 32:
            raise ProtocolError("params.version must be a text of 1..32 characters")
        if not isinstance(model, str) or not 1 <= len(model) <= 32:
            raise ProtocolError("params.model must be a text of 1..32 characters")
        target = params.get("target")
        if not isinstance(target, dict) or target.get("kind") not in (
            TARGET_GATEWAY,
            TARGET_INVERTER,
        ):
            raise ProtocolError("params.target.kind must be 'gateway' or 'inverter'")
        if target["kind"] == TARGET_GATEWAY:
            return cls(job, size, sha, version, model, chunk)
        address, ftype = target.get("address"), target.get("type")
        if not _int(address) or not 1 <= address <= 247:
            raise ProtocolError("params.target.address must be 1..247")
        if not isinstance(ftype, str) or not 1 <= len(ftype) <= 32:
            raise ProtocolError("params.target.type must name a firmware type")
        return cls(job, size, sha, version, model, chunk, TARGET_INVERTER, address, ftype)

    @property
    def chunks(self) -> int:
        return -(-self.size // self.chunk)


# --- gateway → cloud --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkRequest:
    """Send me `length` bytes of the image from `offset` (a multiple of the chunk size).

    With `chunk`, the range may span up to MAX_RANGE_CHUNKS chunks of that size and is
    answered with one ChunkResponse per chunk, in order: one request instead of several
    saves a message each way per chunk, and no response grows. Without it (the original
    form) the range is at most one chunk and gets one response."""

    job: str
    offset: int
    length: int
    chunk: int | None = None

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "type": "chunk",
            "job": self.job,
            "offset": self.offset,
            "length": self.length,
        }
        if self.chunk is not None:
            body["chunk"] = self.chunk
        return json.dumps(body, separators=(",", ":")).encode()

    def pieces(self) -> list[tuple[int, int]]:
        """(offset, length) of each response that answers this request."""
        step = self.chunk or self.length
        end = self.offset + self.length
        return [(start, min(step, end - start)) for start in range(self.offset, end, step)]


@dataclass(frozen=True)
class StateReport:
    """Where the device is with a job. `received`: bytes held; `version`: what it runs now."""

    job: str
    state: str
    received: int = 0
    error: str | None = None
    version: str | None = None

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "type": "state",
            "job": self.job,
            "state": self.state,
            "received": self.received,
        }
        if self.error:
            body["error"] = self.error
        if self.version is not None:
            body["version"] = self.version
        return json.dumps(body, separators=(",", ":")).encode()


def decode_request(payload: bytes) -> ChunkRequest | StateReport:
    """A message on `ota/req/{job}`: a chunk request or a state report."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("payload is not JSON") from exc
    if not isinstance(body, dict) or body.get("v") != PROTOCOL_VERSION:
        raise ProtocolError("payload is not a version-1 JSON object")
    job = body.get("job")
    if not isinstance(job, str) or not JOB_RE.match(job):
        raise ProtocolError("job id missing or invalid")
    kind = body.get("type")
    if kind == "chunk":
        offset, length = body.get("offset"), body.get("length")
        chunk = body.get("chunk")
        if not _int(offset) or not 0 <= offset < MAX_IMAGE_BYTES:
            raise ProtocolError("offset must be a non-negative integer")
        if chunk is None:
            if not _int(length) or not 1 <= length <= MAX_CHUNK_BYTES:
                raise ProtocolError(f"length must be 1..{MAX_CHUNK_BYTES}")
            return ChunkRequest(job, offset, length)
        if not _int(chunk) or not MIN_CHUNK_BYTES <= chunk <= MAX_CHUNK_BYTES:
            raise ProtocolError(f"chunk must be {MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES}")
        if not _int(length) or not 1 <= length <= MAX_RANGE_CHUNKS * chunk:
            raise ProtocolError(f"length must be 1..{MAX_RANGE_CHUNKS} chunks")
        return ChunkRequest(job, offset, length, chunk)
    if kind == "state":
        state, received = body.get("state"), body.get("received", 0)
        if state not in DEVICE_STATES:
            raise ProtocolError(f"state must be one of {', '.join(DEVICE_STATES)}")
        if not _int(received) or received < 0:
            raise ProtocolError("received must be a non-negative integer")
        error, version = body.get("error"), body.get("version")
        return StateReport(
            job,
            state,
            received,
            None if error is None else str(error)[:300],
            None if version is None else str(version)[:32],
        )
    raise ProtocolError("type must be 'chunk' or 'state'")


# --- cloud → gateway --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkResponse:
    """Bytes of the image from `offset`, or why there are none (`error`: the job is over,
    unknown, or the offset lies past the end)."""

    job: str
    offset: int
    data: bytes = b""
    error: str | None = None
    extra: dict = field(default_factory=dict)

    def encode(self) -> bytes:
        header: dict[str, Any] = {"v": PROTOCOL_VERSION, "job": self.job, "offset": self.offset}
        if self.error:
            header["error"] = self.error
        raw = json.dumps(header, separators=(",", ":")).encode()
        return RES_MAGIC + struct.pack(">H", len(raw)) + raw + self.data

    @classmethod
    def decode(cls, payload: bytes) -> ChunkResponse:
        if len(payload) < 6 or payload[:4] != RES_MAGIC:
            raise ProtocolError("not a chunk response")
        (length,) = struct.unpack(">H", payload[4:6])
        try:
            header = json.loads(payload[6 : 6 + length])
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError("chunk header is not JSON") from exc
        if not isinstance(header, dict) or header.get("v") != PROTOCOL_VERSION:
            raise ProtocolError("chunk header is not a version-1 object")
        job, offset = header.get("job"), header.get("offset")
        if not isinstance(job, str) or not _int(offset):
            raise ProtocolError("chunk header needs job and offset")
        error = header.get("error")
        return cls(job, offset, payload[6 + length :], None if error is None else str(error))


# --- Images -----------------------------------------------------------------------------------


def image_header(model: str, firmware_type: str, version: str) -> bytes:
    """The first line of an image built for `model` (see the module docstring)."""
    fields = {"model": model, "type": firmware_type, "version": version}
    return IMAGE_MAGIC + json.dumps(fields, separators=(",", ":")).encode() + b"\n"


def build_image(model: str, firmware_type: str, version: str, size: int, seed: str = "") -> bytes:
    """A test or demo image of exactly `size` bytes (at least the header) with deterministic
    content, so two builds of the same release have the same SHA-256."""
    head = image_header(model, firmware_type, version)
    body = bytearray()
    block = hashlib.sha256(f"{model}|{firmware_type}|{version}|{seed}".encode()).digest()
    while len(head) + len(body) < size:
        block = hashlib.sha256(block).digest()
        body += block
    return (head + bytes(body))[: max(size, len(head))]


def read_image_header(start: bytes) -> dict[str, str] | None:
    """The header of an image from its first bytes (None: the image has no header)."""
    if not start.startswith(IMAGE_MAGIC):
        return None
    line = start[len(IMAGE_MAGIC) :].split(b"\n", 1)[0]
    try:
        fields = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(fields, dict):
        return None
    return {k: str(v) for k, v in fields.items() if k in ("model", "type", "version")}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
