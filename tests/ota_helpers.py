"""Firmware delivery in tests: releases stored through Django's storage, tasks and targets made
with the ORM, the delivery service in a thread, a spy on the chunks the cloud sends, and a
storage that counts what is read."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage

from devices import ota, protocol
from gateways.models import Gateway
from inverters.models import Inverter
from tests.services import wait_for
from upgrades.delivery import DeliveryService, run_in_thread
from upgrades.models import (
    DeviceKind,
    FirmwareRelease,
    ReleaseModel,
    TaskState,
    UpgradeTarget,
    UpgradeTask,
)

GATEWAY_MODEL = "CPS WiFi Kit"


def store_release(
    kind: str, firmware_type: str, model: str, version: str, data: bytes
) -> FirmwareRelease:
    """A release whose file goes through the default storage, as an upload's does."""
    release = FirmwareRelease(
        kind=kind,
        firmware_type=firmware_type,
        version=version,
        file_name=f"{model}-{version}.bin",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    release.file.save("image.bin", ContentFile(data), save=False)
    release.save()
    ReleaseModel.objects.create(
        release=release, kind=kind, firmware_type=firmware_type, model=model, version=version
    )
    return release


def make_task(release: FirmwareRelease, company, model: str) -> UpgradeTask:
    return UpgradeTask.objects.create(
        company=company,
        kind=release.kind,
        release=release,
        firmware_type=release.firmware_type,
        model=model,
        state=TaskState.RUNNING,
        waves=[100],
    )


def make_target(
    task: UpgradeTask, gateway: Gateway, inverter: Inverter | None = None
) -> UpgradeTarget:
    return UpgradeTarget.objects.create(
        task=task,
        gateway=gateway,
        inverter=inverter,
        modbus_address=inverter.modbus_address if inverter else None,
    )


def gateway_target(
    gateway: Gateway, data: bytes, version: str = "2.00", model: str = GATEWAY_MODEL
) -> UpgradeTarget:
    release = store_release(DeviceKind.GATEWAY, "gateway", model, version, data)
    return make_target(make_task(release, gateway.company, model), gateway)


@contextlib.contextmanager
def running_delivery(broker: protocol.BrokerAddress, **kwargs):
    """DeliveryService in a thread of this process, stopped when the block ends."""
    kwargs.setdefault("client_id", f"test-ota-{uuid.uuid4().hex[:6]}")
    kwargs.setdefault("log_interval", 3600)
    kwargs.setdefault("progress_interval", 0.2)
    service = DeliveryService(broker, **kwargs)
    thread = run_in_thread(service)
    try:
        wait_for(service.connected.is_set, 10, "the delivery service to connect")
        time.sleep(0.2)  # its SUBACK
        yield service
    finally:
        service.stop()
        thread.join(20)
        assert not thread.is_alive(), "delivery did not stop"


class CountingStorage(FileSystemStorage):
    """A file system storage that records the size of every read of an opened file."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[int] = []
        self.opened = 0

    def _open(self, name, mode="rb"):
        file = super()._open(name, mode)
        self.opened += 1
        raw_read = file.file.read
        reads = self.reads

        def counted_read(size=-1):
            data = raw_read(size)
            reads.append(len(data))
            return data

        file.file = _ReadCounter(file.file, counted_read)
        return file


class _ReadCounter:
    def __init__(self, inner, read) -> None:
        self._inner = inner
        self.read = read

    def __getattr__(self, name):
        return getattr(self._inner, name)


@dataclass
class Served:
    serial: str
    job: str
    offset: int
    size: int
    error: str | None
    at: float  # time.monotonic() when it arrived


class ResponseSpy:
    """Everything the cloud sends on any gateway's `ota/res/#` (a broker without ACLs)."""

    def __init__(self, broker: protocol.BrokerAddress) -> None:
        self.served: list[Served] = []
        self.client = protocol.make_client(f"spy-{uuid.uuid4().hex[:6]}", broker, persistent=False)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        protocol.connect_client(self.client, broker, persistent=False)
        self.client.loop_start()
        self.client.subscribe(f"{protocol.TOPIC_ROOT}/+/ota/res/+", qos=1)
        assert subscribed.wait(5)

    def _on_message(self, client, userdata, msg) -> None:
        serial, _, job = ota.parse_job_topic(msg.topic)
        response = ota.ChunkResponse.decode(msg.payload)
        self.served.append(
            Served(
                serial, job, response.offset, len(response.data), response.error, time.monotonic()
            )
        )

    def offsets(self, job: str) -> list[int]:
        return [s.offset for s in self.served if s.job == job and not s.error]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
