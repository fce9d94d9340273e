"""Firmware delivery on the device side: the gateway's `ota` job and the inverter's transfer block.

A gateway takes one job at a time (`devices.ota.Offer`, the params of the `ota` command). It
pulls the image in chunks on `mc/v1/{sn}/ota/req/{job}` with a few requests outstanding,
hashes it as it arrives and reports its progress as `StateReport`s on the same topic:

- gateway firmware: no image bytes are kept (the flash stands in), so a thousand gateways in
  one process can upgrade at once; after the check it restarts and comes back online with the
  new version in its retained status, then reports `succeeded`;
- inverter firmware: the whole image is kept, checked, and written into the inverter's
  file-transfer block over Modbus (FC16, `firmware_transfer` in the register map); the
  inverter installs it and shows the new version in its version register, which the gateway
  reads back before it reports `succeeded`.

A transfer cut by a lost connection resumes at the first byte the gateway does not hold.
Failure injection (`OtaFault`, armed through the control channel) makes the next job see a
corrupted chunk, lose power during the install, or lose its connection part-way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

from pymodbus.constants import ExcCodes
from pymodbus.framer.rtu import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
)

from devices.ota import (
    DOWNLOADING,
    FAILED,
    FINAL_STATES,
    INSTALLING,
    MAX_RANGE_CHUNKS,
    REBOOTING,
    REQ,
    SUCCEEDED,
    TARGET_INVERTER,
    VERIFYING,
    ChunkRequest,
    ChunkResponse,
    Offer,
    StateReport,
    job_topic,
    read_image_header,
)
from devices.protocol import ProtocolError
from devices.registermap import (
    FirmwareTransfer,
    FirmwareTypeSpec,
    RegisterMap,
    RegisterValueError,
    UnknownModelError,
)

if TYPE_CHECKING:
    from simulator.gateway import SimulatedGateway
    from simulator.inverter import SimulatedInverter

log = logging.getLogger("simulator.ota")

CORRUPT_CHUNK, POWER_LOSS, OFFLINE = "corrupt_chunk", "power_loss", "offline"
OTA_FAULTS = (CORRUPT_CHUNK, POWER_LOSS, OFFLINE)
GATEWAY_TARGET = "gateway"  # the key of a fault armed for the gateway's own next job
REMEMBER_JOBS = 64  # finished jobs whose final report a repeated offer gets again
PROGRESS_STEP = 0.10  # a `downloading` report about every 10 % …
PROGRESS_MIN_S = 2.0  # … but not more often than this
INVERTER_MAX_IMAGE_BYTES = 16 * 1024 * 1024
INSTALL_POLL_S = 0.1
MODBUS_TRIES = 3
RESUME_GRACE_S = 1.0  # after a reconnect, how long a request in flight may still be answered


class OtaRefused(Exception):
    """An offer the gateway does not take; the text goes into the command's reply."""


class JobFailed(Exception):
    """The job ends as `failed`; the text is the reason the cloud shows."""


@dataclasses.dataclass(frozen=True)
class OtaFault:
    """A one-shot failure for the next firmware job (see simulator/control.py)."""

    kind: str
    at_pct: float = 50.0  # offline: when this share of the image is held
    seconds: float = 5.0  # offline: how long the connection stays down

    def __post_init__(self) -> None:
        if self.kind not in OTA_FAULTS:
            raise ValueError(f"fault must be one of {', '.join(OTA_FAULTS)}")
        if not 0 <= self.at_pct <= 100:
            raise ValueError("at_pct must be 0..100")
        if not 0 <= self.seconds <= 3600:
            raise ValueError("seconds must be 0..3600")

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> OtaFault:
        """From a control request: {"fault": "offline", "at_pct": 40, "seconds": 5}."""
        try:
            return cls(
                str(request.get("fault")),
                float(request.get("at_pct", 50.0)),
                float(request.get("seconds", 5.0)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- The gateway's side ------------------------------------------------------------------------


@dataclasses.dataclass
class _Job:
    offer: Offer
    device_model: str
    old_version: str
    fault: OtaFault | None = None
    inverter: SimulatedInverter | None = None
    type_spec: FirmwareTypeSpec | None = None
    received: int = 0
    next_offset: int = 0
    state: str = DOWNLOADING
    image: bytearray | None = None
    hasher: Any = dataclasses.field(default_factory=hashlib.sha256)
    outstanding: dict[int, float] = dataclasses.field(default_factory=dict)
    arrived: dict[int, bytes] = dataclasses.field(default_factory=dict)
    event: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    cloud_error: str | None = None
    failure: JobFailed | None = None  # raised while a chunk was taken on arrival
    connects: int = -1  # the gateway's connects when the download last went on from here
    link_down: bool = False  # an injected outage is cutting the link: nothing comes in
    fault_fired: bool = False
    held_at_outage: int | None = None  # offline injection: bytes held when the link went down
    last_report_at: float = 0.0
    last_report_step: int = 0

    @property
    def id(self) -> str:
        return self.offer.job


class GatewayOta:
    """One gateway's firmware jobs: offers, the download, the install and the reports."""

    def __init__(self, gateway: SimulatedGateway) -> None:
        self.gw = gateway
        self.job: _Job | None = None
        self.finished: collections.OrderedDict[str, StateReport] = collections.OrderedDict()
        self.faults: dict[str, OtaFault] = {}  # GATEWAY_TARGET or an inverter serial → fault
        self._task: asyncio.Task | None = None
        # (job, bytes held, time.monotonic()) of the last injected outage, for tests
        self.last_outage: tuple[str, int, float] | None = None

    # ---- failure injection ---------------------------------------------------------------

    def arm(self, fault: OtaFault | None, inverter_serial: str | None = None) -> None:
        """Arm (or with None clear) a one-shot fault for the next job of the gateway, or for
        the next job that targets this inverter."""
        key = inverter_serial or GATEWAY_TARGET
        if fault is None:
            self.faults.pop(key, None)
        else:
            self.faults[key] = fault

    def _take_fault(self, inverter: SimulatedInverter | None) -> OtaFault | None:
        if inverter is not None and inverter.serial in self.faults:
            return self.faults.pop(inverter.serial)
        return self.faults.pop(GATEWAY_TARGET, None)

    # ---- the offer -----------------------------------------------------------------------

    def offer(self, params: dict) -> dict[str, Any]:
        """Take or refuse an `ota` command; the job runs in the background. A job already
        finished is not run again: its final report goes out once more."""
        try:
            offer = Offer.from_params(params)
        except ProtocolError as exc:
            raise OtaRefused(f"bad offer: {exc}") from None
        done = self.finished.get(offer.job)
        if done is not None:
            asyncio.get_running_loop().call_soon(self._publish_report, done)
            return {"job": offer.job, "state": done.state, "received": done.received}
        if self.job is not None:
            if self.job.id == offer.job:
                return {"job": offer.job, "state": self.job.state, "received": self.job.received}
            raise OtaRefused(f"busy with firmware job {self.job.id}")
        job = self._new_job(offer)
        self.job = job
        self._task = asyncio.get_running_loop().create_task(self._run(job), name=f"ota-{job.id}")
        self.gw._tasks.add(self._task)
        self._task.add_done_callback(self.gw._tasks.discard)
        self.gw.stats["ota_jobs"] += 1
        return {"job": offer.job, "state": "accepted", "received": 0}

    def repeated(self, params: dict) -> None:
        """An offer whose command id was answered before (a cloud that uses the job id as the
        command id): no second reply, but the job's final report is published again, or for a
        job in progress where it is."""
        job_id = params.get("job") if isinstance(params, dict) else None
        done = self.finished.get(job_id) if isinstance(job_id, str) else None
        if done is not None:
            self._publish_report(done)
        elif self.job is not None and self.job.id == job_id and self.gw.connected:
            job = self.job
            self._publish_report(StateReport(job.id, job.state, job.received))

    def _new_job(self, offer: Offer) -> _Job:
        options = self.gw.options
        if offer.target != TARGET_INVERTER:
            if offer.size > options.ota_max_image_bytes:
                raise OtaRefused(
                    f"image too large: {offer.size} bytes, this gateway takes at most "
                    f"{options.ota_max_image_bytes}"
                )
            return _Job(
                offer, self.gw.model, self.gw.firmware, self._take_fault(None), hasher=_hasher()
            )
        assert offer.address is not None and offer.firmware_type is not None
        entry = next(
            (p for p in self.gw.config["protocols"] if p["address"] == offer.address), None
        )
        inverter = self.gw.inverters.get(offer.address)
        if entry is None or inverter is None:
            raise OtaRefused(f"no inverter at address {offer.address} on this gateway")
        try:
            rm = RegisterMap.for_model(entry["protocol"])
        except UnknownModelError:
            raise OtaRefused(f"no register map for model {entry['protocol']}") from None
        spec = rm.firmware_types.get(offer.firmware_type)
        if spec is None:
            have = ", ".join(rm.firmware_types) or "none"
            raise OtaRefused(
                f"model {rm.model_name} has no firmware type {offer.firmware_type!r} "
                f"(it has: {have})"
            )
        try:
            rm.encode_value(spec.version_point, offer.version)
        except RegisterValueError:
            raise OtaRefused(
                f"version {offer.version!r} is not MM.mm, as inverter firmware versions are"
            ) from None
        limit = min(options.ota_max_image_bytes, INVERTER_MAX_IMAGE_BYTES)
        if offer.size > limit:
            raise OtaRefused(
                f"image too large: {offer.size} bytes, this gateway takes at most {limit} "
                "for an inverter"
            )
        old = str(inverter.values().get(spec.version_point, ""))
        job = _Job(offer, rm.model_name, old, self._take_fault(inverter), inverter, spec)
        job.image = bytearray()
        return job

    # ---- messages ------------------------------------------------------------------------

    def on_response(self, payload: bytes) -> None:
        """A ChunkResponse from the cloud (called on the event loop)."""
        job = self.job
        try:
            response = ChunkResponse.decode(payload)
        except ProtocolError:
            self.gw.stats["ota_bad_responses"] += 1
            return
        if job is None or response.job != job.id:
            return
        if response.error:
            job.cloud_error = response.error
            job.event.set()
            return
        expected = min(job.offer.chunk, job.offer.size - response.offset)
        if response.offset not in job.outstanding or len(response.data) != expected:
            self.gw.stats["ota_stray_chunks"] += 1
            return
        if job.link_down:
            return  # read while the link is being cut: it never arrived
        del job.outstanding[response.offset]
        job.arrived[response.offset] = response.data
        if job.connects != self.gw.stats["connects"]:
            job.event.set()  # reconnected: the task says where it resumes before taking more
            return
        # Taken (hashed) at once and the window refilled from here, as a device's network
        # stack would: waking the job's task for every chunk costs more than the chunk.
        if job.failure is None:
            try:
                self._take_arrived(job)
            except JobFailed as exc:
                job.failure = exc
            self._fill_window(job)
        if job.received >= job.offer.size or job.failure is not None:
            job.event.set()

    def _publish_report(self, report: StateReport) -> asyncio.Future | None:
        return self.gw.publish_to(
            job_topic(self.gw.serial, REQ, report.job), report.encode(), track=True
        )

    async def _report(
        self,
        job: _Job,
        state: str,
        *,
        error: str | None = None,
        version: str | None = None,
        wait: bool = True,
    ) -> None:
        """Publish a StateReport; with `wait`, after the connection is back if it is down."""
        job.state = state
        if not self.gw.connected:
            if not wait:
                return
            await self._wait_online()
        report = StateReport(job.id, state, job.received, error, version)
        if state in FINAL_STATES:
            self.finished[job.id] = report
            while len(self.finished) > REMEMBER_JOBS:
                self.finished.popitem(last=False)
        ack = self._publish_report(report)
        job.last_report_at = time.monotonic()
        if ack is not None and state in (REBOOTING, *FINAL_STATES):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ack, 5.0)

    async def _wait_online(self) -> None:
        while not self.gw.connected:
            with contextlib.suppress(asyncio.TimeoutError):
                await self.gw.wait_online(5.0)

    # ---- the job -------------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        try:
            await self._report(job, DOWNLOADING)
            await self._download(job)
            await self._report(job, VERIFYING)
            got = job.hasher.hexdigest()
            if got != job.offer.sha256:
                raise JobFailed(
                    f"SHA-256 mismatch: the image received hashes to {got[:12]}…, the offer "
                    f"says {job.offer.sha256[:12]}…"
                )
            if job.inverter is None:
                version = await self._install_gateway_firmware(job)
            else:
                version = await self._install_inverter_firmware(job)
            await self._report(job, SUCCEEDED, version=version)
            self.gw.stats["ota_succeeded"] += 1
        except JobFailed as exc:
            self.gw.stats["ota_failed"] += 1
            running = self._running_version(job)
            reason = str(exc)
            if "running" not in reason:
                reason = f"{reason}; running {running}"
            log.info("%s: firmware job %s failed: %s", self.gw.serial, job.id, reason)
            await self._report(job, FAILED, error=reason[:300], version=running)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must end the job, not leave it running forever
            log.exception("%s: firmware job %s crashed", self.gw.serial, job.id)
            await self._report(job, FAILED, error=f"gateway error: {exc}"[:300])
        finally:
            job.image = None
            job.arrived.clear()
            if self.job is job:
                self.job = None

    def _running_version(self, job: _Job) -> str:
        if job.inverter is None or job.type_spec is None:
            return self.gw.firmware
        return str(job.inverter.values().get(job.type_spec.version_point, job.old_version))

    async def _download(self, job: _Job) -> None:
        """Keep `ota_window` requests outstanding until the image is held. Chunks are taken as
        they arrive (`on_response`); this loop starts the transfer, asks again for chunks that
        did not come, resumes after a lost connection and injects the outage fault."""
        options = self.gw.options
        size = job.offer.size
        job.connects = self.gw.stats["connects"]
        while job.received < size:
            if job.failure is not None:
                raise job.failure
            if job.cloud_error:
                raise JobFailed(job.cloud_error)
            if not self.gw.connected:
                await self._wait_online()
                # Resume where the held bytes end. The client sends requests it had not got
                # through again by itself on reconnect: ask once more only for chunks that
                # still do not come shortly after.
                grace = min(RESUME_GRACE_S, options.ota_chunk_timeout_s)
                back = time.monotonic() - options.ota_chunk_timeout_s + grace
                job.outstanding = dict.fromkeys(job.outstanding, back)
                await self._report(job, DOWNLOADING, wait=False)
                job.connects = self.gw.stats["connects"]
                continue
            if job.connects != self.gw.stats["connects"]:  # back before this task noticed
                await self._report(job, DOWNLOADING, wait=False)
                job.connects = self.gw.stats["connects"]
            self._take_arrived(job)
            if (
                job.fault is not None
                and job.fault.kind == OFFLINE
                and not job.fault_fired
                and job.received * 100 >= job.fault.at_pct * size
                and job.received < size
            ):
                # After the chunks already here are taken: what is held is what it resumes from.
                job.fault_fired = True
                job.held_at_outage = job.received
                self.last_outage = (job.id, job.received, time.monotonic())
                log.info("%s: injected outage at %d bytes", self.gw.serial, job.received)
                job.link_down = True
                try:
                    await self.gw.network_outage(job.fault.seconds)
                finally:
                    job.link_down = False
                continue
            self._fill_window(job)
            now = time.monotonic()
            late = sorted(
                offset
                for offset, sent in job.outstanding.items()
                if now - sent >= options.ota_chunk_timeout_s
            )
            for start, count in _runs(late, job.offer.chunk, _range_chunks(options.ota_window)):
                self.gw.stats["ota_rerequests"] += count
                self._request(job, start, count)
                for n in range(count):
                    job.outstanding[start + n * job.offer.chunk] = now
            if job.received >= size or job.failure is not None:
                continue
            job.event.clear()
            # Only the end, an error, the outage fault or a timeout wakes this task.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(job.event.wait(), min(0.5, options.ota_chunk_timeout_s))
        if job.failure is not None:
            raise job.failure

    @staticmethod
    def _outage_armed(job: _Job) -> bool:
        return job.fault is not None and job.fault.kind == OFFLINE and not job.fault_fired

    def _take_arrived(self, job: _Job) -> None:
        """Hash the chunks that continue the bytes held, in order."""
        while job.received in job.arrived:
            self._take_chunk(job, job.arrived.pop(job.received))
            self._progress(job)
            if self._outage_armed(job):
                assert job.fault is not None
                if job.received * 100 >= job.fault.at_pct * job.offer.size:
                    job.event.set()  # the task drops the link
                    return

    def _fill_window(self, job: _Job) -> None:
        """Ask for the next chunks, a range of several per request, while at most
        `ota_window` chunks are outstanding: the same bytes in flight as one request per
        chunk, with a fraction of the requests."""
        if not self.gw.connected or job.failure is not None or job.cloud_error:
            return
        if self._outage_armed(job) and job.event.is_set():
            return  # the link is about to drop
        window, size, chunk = self.gw.options.ota_window, job.offer.size, job.offer.chunk
        per_request = _range_chunks(window)
        now = time.monotonic()
        while job.next_offset < size:
            count = min(per_request, -(-(size - job.next_offset) // chunk))
            if len(job.outstanding) + count > max(window, per_request):
                break
            self._request(job, job.next_offset, count)
            for _ in range(count):
                job.outstanding[job.next_offset] = now
                job.next_offset += chunk

    def _request(self, job: _Job, offset: int, count: int = 1) -> None:
        """Ask for `count` chunks from `offset` in one request (answered chunk by chunk)."""
        chunk = job.offer.chunk
        length = min(count * chunk, job.offer.size - offset)
        payload = ChunkRequest(job.id, offset, length, chunk).encode()
        self.gw.publish_to(job_topic(self.gw.serial, REQ, job.id), payload)
        self.gw.stats["ota_requests"] += 1

    def _take_chunk(self, job: _Job, data: bytes) -> None:
        offset = job.received
        if offset == 0:
            header = read_image_header(data[:1024])
            model = (header or {}).get("model")
            if model and model.strip().upper() != job.device_model.strip().upper():
                raise JobFailed(f"image is for model {model}, this device is {job.device_model}")
        if (
            job.fault is not None
            and job.fault.kind == CORRUPT_CHUNK
            and not job.fault_fired
            and (offset // job.offer.chunk == job.offer.chunks // 2)
        ):
            job.fault_fired = True
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0xFF
            data = bytes(flipped)
            log.info("%s: injected a corrupted chunk at %d", self.gw.serial, offset)
        job.hasher.update(data)
        if job.image is not None:
            job.image += data
        job.received += len(data)
        self.gw.stats["ota_bytes"] += len(data)

    def _progress(self, job: _Job) -> None:
        step = int(job.received / job.offer.size / PROGRESS_STEP)
        if (
            step > job.last_report_step
            and time.monotonic() - job.last_report_at >= PROGRESS_MIN_S
            and self.gw.connected
        ):
            job.last_report_step = step
            self._publish_report(StateReport(job.id, DOWNLOADING, job.received))
            job.last_report_at = time.monotonic()

    # ---- installing ----------------------------------------------------------------------

    async def _install_gateway_firmware(self, job: _Job) -> str:
        gw = self.gw
        await self._report(job, INSTALLING)
        await asyncio.sleep(gw.options.restart_scale)  # writing the flash
        if job.fault is not None and job.fault.kind == POWER_LOSS:
            gw.stats["ota_power_losses"] += 1
            await gw.restart()  # comes back on the image it ran before
            await self._wait_online()
            raise JobFailed(f"power lost during install; running {gw.firmware}")
        await self._report(job, REBOOTING)
        gw.firmware = job.offer.version
        await gw.restart()
        await self._wait_online()
        return gw.firmware

    async def _install_inverter_firmware(self, job: _Job) -> str:
        inverter, spec = job.inverter, job.type_spec
        assert inverter is not None and spec is not None and job.image is not None
        block = inverter.rm.firmware_transfer
        assert block is not None
        link = _ModbusLink(self.gw, inverter.address)
        await self._report(job, INSTALLING)
        version_word = inverter.rm.encode_value(spec.version_point, job.offer.version)[0]
        size = len(job.image)
        await link.write(
            block.command,
            [FirmwareTransfer.BEGIN, spec.code, size >> 16, size & 0xFFFF, version_word],
            block,
        )
        window = block.window_bytes
        for offset in range(0, size, window):
            piece = bytes(job.image[offset : offset + window])
            words = [
                (piece[i] << 8) | (piece[i + 1] if i + 1 < len(piece) else 0)
                for i in range(0, len(piece), 2)
            ]
            await link.write(
                block.offset, [offset >> 16, offset & 0xFFFF, len(piece), *words], block
            )
        job.image = None  # the inverter holds it now
        if job.fault is not None and job.fault.kind == POWER_LOSS and inverter.firmware_receiver:
            inverter.firmware_receiver.fail_next_install = True
        await link.write(block.command, [FirmwareTransfer.INSTALL], block)
        await self._report(job, REBOOTING)
        deadline = time.monotonic() + self.gw.options.ota_install_timeout_s
        while True:
            state, error, *_ = await link.read(block.input, block.input_registers)
            if state == FirmwareTransfer.DONE:
                break
            if state == FirmwareTransfer.FAILED:
                running = self._running_version(job)
                if error == 6:
                    raise JobFailed(f"power lost during install; running {running}")
                raise JobFailed(f"the inverter refused the image: {_error_text(error)}")
            if time.monotonic() > deadline:
                raise JobFailed("the inverter did not finish the install in time")
            await asyncio.sleep(INSTALL_POLL_S)
        p = inverter.rm.point(spec.version_point)
        words = await link.read(p.address, p.n_registers)
        version = str(inverter.rm.decode_point(spec.version_point, words))
        if version != job.offer.version:
            raise JobFailed(
                f"the inverter runs {version} after the install, not {job.offer.version}"
            )
        return version


def _range_chunks(window: int) -> int:
    """Chunks per request: half the window, so that two requests keep it full."""
    return max(1, min(MAX_RANGE_CHUNKS, window // 2))


def _runs(offsets: list[int], chunk: int, most: int) -> list[tuple[int, int]]:
    """Sorted chunk offsets as (start, count) runs of consecutive chunks, at most `most` each."""
    runs: list[tuple[int, int]] = []
    for offset in offsets:
        if runs and runs[-1][1] < most and runs[-1][0] + runs[-1][1] * chunk == offset:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((offset, 1))
    return runs


def _hasher() -> Any:
    return hashlib.sha256()


def _error_text(code: int) -> str:
    return FirmwareTransfer.ERRORS.get(code, f"error {code}")


class _ModbusLink:
    """FC16 writes and FC4 reads to one inverter: over the gateway's RS-485 line, or straight
    into the inverter's registers for a gateway without a line (light mode)."""

    def __init__(self, gateway: SimulatedGateway, address: int) -> None:
        self.gw = gateway
        self.address = address
        self._framer = FramerRTU(DecodePDU(False))

    async def write(self, start: int, words: list[int], block: FirmwareTransfer) -> None:
        code = await self._try(lambda: self._write_once(start, words))
        if code is not None:
            error = (await self.read(block.error, 1))[0]
            raise JobFailed(
                f"the inverter refused the transfer (Modbus exception {code}): {_error_text(error)}"
            )

    async def read(self, start: int, count: int) -> list[int]:
        result = await self._try(lambda: self._read_once(start, count))
        assert isinstance(result, list)
        return result

    async def _try(self, attempt):
        from simulator.bus import BusError, BusTimeout

        for n in range(MODBUS_TRIES):
            try:
                return await attempt()
            except (BusTimeout, BusError) as exc:
                if n == MODBUS_TRIES - 1:
                    raise JobFailed(
                        f"the inverter at address {self.address} does not answer ({exc})"
                    ) from None
        return None

    async def _write_once(self, start: int, words: list[int]) -> int | None:
        line = self.gw.line
        if line is None:
            inverter = self.gw.inverters[self.address]
            refused = inverter.write_registers(start, words)
            return None if refused is None else int(refused)
        request = WriteMultipleRegistersRequest(address=start, registers=words, dev_id=self.address)
        pdu = await self._transact(request)
        if isinstance(pdu, ExceptionResponse) or pdu.isError():
            return pdu.exception_code
        return None

    async def _read_once(self, start: int, count: int) -> list[int]:
        line = self.gw.line
        if line is None:
            return self.gw.inverters[self.address].input.words(start, count)
        pdu = await self._transact(
            ReadInputRegistersRequest(address=start, count=count, dev_id=self.address)
        )
        if isinstance(pdu, ExceptionResponse) or pdu.isError():
            raise JobFailed(f"the inverter answered Modbus exception {pdu.exception_code}")
        return list(pdu.registers)

    async def _transact(self, request):
        from simulator.bus import BusError

        line = self.gw.line
        assert line is not None
        answer = await line.transact(self._framer.buildFrame(request))
        _, pdu = self._framer.handleFrame(answer, self.address, 0)
        if pdu is None:
            raise BusError("unreadable answer")
        return pdu


# --- The inverter's side -----------------------------------------------------------------------


class FirmwareReceiver:
    """The inverter's file-transfer block: takes an image over FC16 writes, checks its size,
    order and model, and installs it by setting the version register of its firmware type."""

    def __init__(self, inverter: SimulatedInverter, block: FirmwareTransfer) -> None:
        self.inverter = inverter
        self.block = block
        self.by_code = {t.code: t for t in inverter.rm.firmware_types.values()}
        self.install_s = 1.0  # real seconds an install takes (the gateway sets it from its scale)
        self.fail_next_install = False  # power lost during the next install (failure injection)
        self.installs = 0  # finished installs (for tests and stats)
        self._image: bytearray | None = None
        self._size = 0
        self._received = 0
        self._type: FirmwareTypeSpec | None = None
        self._version = ""
        self._install: asyncio.TimerHandle | None = None

    def owns(self, address: int, count: int) -> bool:
        b = self.block
        return address < b.holding + b.holding_registers and b.holding < address + count

    # ---- registers -----------------------------------------------------------------------

    def _holding(self, address: int, count: int = 1) -> list[int]:
        return self.inverter.holding.words(address, count)

    def _u32(self, address: int) -> int:
        hi, lo = self._holding(address, 2)
        return hi << 16 | lo

    def _set_state(self, state: int, error: int = 0) -> None:
        image = self.inverter.input
        off = self.block.input - image.base
        image.regs[off : off + 4] = [state, error, self._received >> 16, self._received & 0xFFFF]

    @property
    def state(self) -> int:
        return self.inverter.input.words(self.block.state, 1)[0]

    def write(self, address: int, values: list[int]) -> ExcCodes | None:
        """An FC6/FC16 write that touches the block (None = accepted)."""
        b = self.block
        if address < b.holding or address + len(values) > b.holding + b.holding_registers:
            return ExcCodes.ILLEGAL_ADDRESS
        image = self.inverter.holding
        image.regs[address - image.base : address - image.base + len(values)] = values
        if address <= b.command < address + len(values):
            command = self._holding(b.command)[0]
            if command == FirmwareTransfer.BEGIN:
                return self._begin()
            if command == FirmwareTransfer.INSTALL:
                return self._install_image()
            if command == FirmwareTransfer.ABORT:
                self._abort()
                return None
            return ExcCodes.ILLEGAL_VALUE
        if address <= b.length < address + len(values):
            return self._data(address + len(values))
        return None

    def _fail(self, error: int) -> ExcCodes:
        self._image = None
        self._set_state(FirmwareTransfer.FAILED, error)
        return ExcCodes.ILLEGAL_VALUE

    def _begin(self) -> ExcCodes | None:
        b = self.block
        if self._install is not None:
            return ExcCodes.DEVICE_BUSY
        self._received = 0
        spec = self.by_code.get(self._holding(b.type_code)[0])
        if spec is None:
            return self._fail(1)
        size = self._u32(b.size)
        if not 1 <= size <= INVERTER_MAX_IMAGE_BYTES:
            return self._fail(2)
        word = self._holding(b.version)[0]
        if word & 0xFF > 99:
            return self._fail(9)
        self._type = spec
        self._version = str(self.inverter.rm.decode_point(spec.version_point, [word]))
        self._size = size
        self._image = bytearray(size)
        self._set_state(FirmwareTransfer.RECEIVING)
        return None

    def _data(self, written_end: int) -> ExcCodes | None:
        b = self.block
        if self._image is None or self.state != FirmwareTransfer.RECEIVING:
            self._set_state(self.state, 8)
            return ExcCodes.ILLEGAL_VALUE
        offset, length = self._u32(b.offset), self._holding(b.length)[0]
        if not 1 <= length <= b.window_bytes or written_end < b.data + (length + 1) // 2:
            self._set_state(FirmwareTransfer.RECEIVING, 2)
            return ExcCodes.ILLEGAL_VALUE
        if offset > self._received:
            self._set_state(FirmwareTransfer.RECEIVING, 3)
            return ExcCodes.ILLEGAL_VALUE
        if offset + length > self._size:
            self._set_state(FirmwareTransfer.RECEIVING, 2)
            return ExcCodes.ILLEGAL_VALUE
        words = self._holding(b.data, (length + 1) // 2)
        data = b"".join(w.to_bytes(2, "big") for w in words)[:length]
        self._image[offset : offset + length] = data
        self._received = max(self._received, offset + length)
        self._set_state(FirmwareTransfer.RECEIVING)
        return None

    def _install_image(self) -> ExcCodes | None:
        if self._image is None or self.state != FirmwareTransfer.RECEIVING:
            self._set_state(self.state, 8)
            return ExcCodes.ILLEGAL_VALUE
        if self._received < self._size:
            return self._fail(4)
        header = read_image_header(bytes(self._image[:1024]))
        model = (header or {}).get("model")
        if model and model.strip().upper() != self.inverter.model.upper():
            return self._fail(5)
        self._set_state(FirmwareTransfer.INSTALLING)
        self._install = asyncio.get_running_loop().call_later(self.install_s, self._finish)
        return None

    def _finish(self) -> None:
        self._install = None
        self._image = None
        if self.fail_next_install:
            self.fail_next_install = False
            log.info("%s: power lost during install", self.inverter.serial)
            self._set_state(FirmwareTransfer.FAILED, 6)
            return
        assert self._type is not None
        self.inverter.set_firmware_version(self._type.version_point, self._version)
        self.installs += 1
        self._set_state(FirmwareTransfer.DONE)

    def _abort(self) -> None:
        if self._install is not None:
            self._install.cancel()
            self._install = None
        self._image = None
        self._received = 0
        self._set_state(FirmwareTransfer.IDLE, 7)
