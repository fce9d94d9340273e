"""A minimal cloud side of firmware delivery for simulator tests, without Django: it offers jobs
on a gateway's `cmd` topic, serves chunks from bytes it holds, and records every chunk request,
state report, reply and status message it sees."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices import ota, protocol
from devices.protocol import Command, ProtocolError, Reply, StatusMessage


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when it arrived
    serial: str
    message: ota.ChunkRequest | ota.StateReport


class OtaPeer:
    """Serves images by job id; `fail(job, why)` makes its next responses carry an error."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.images: dict[str, bytes] = {}
        self.errors: dict[str, str] = {}
        self.held: set[str] = set()
        self.seen: list[Seen] = []
        self.replies: dict[str, Reply] = {}
        self.status: dict[str, StatusMessage] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"otapeer-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.max_inflight_messages_set(100)
        self.client.connect(host, port)
        self.client.subscribe(
            [
                (ota.cloud_request_filter(), 1),
                (f"{protocol.TOPIC_ROOT}/+/{protocol.REPLY}", 1),
                (f"{protocol.TOPIC_ROOT}/+/{protocol.STATUS}", 1),
            ]
        )
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise TimeoutError("the test broker did not confirm the subscription")

    # ---- serving -----------------------------------------------------------------------------

    def serve(self, job: str, image: bytes) -> None:
        self.images[job] = image

    def fail(self, job: str, error: str) -> None:
        """Answer the job's next chunk requests with this error (the job is over)."""
        self.held.discard(job)
        self.errors[job] = error

    def hold(self, job: str) -> None:
        """Record the job's chunk requests but answer none of them."""
        self.held.add(job)

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if message.topic.endswith("/" + protocol.REPLY):
            try:
                reply = Reply.decode(message.payload)
            except ProtocolError:
                return
            with self._lock:
                self.replies[reply.id] = reply
            return
        if message.topic.endswith("/" + protocol.STATUS):
            if message.payload:
                serial, _ = protocol.parse_topic(message.topic)
                with self._lock:
                    self.status[serial] = StatusMessage.decode(message.payload)
            return
        serial, _direction, job = ota.parse_job_topic(message.topic)
        request = ota.decode_request(message.payload)
        with self._lock:
            self.seen.append(Seen(now, serial, request))
        if isinstance(request, ota.ChunkRequest) and job not in self.held:
            self._answer(serial, job, request)

    def _answer(self, serial: str, job: str, request: ota.ChunkRequest) -> None:
        """One response per chunk of the requested range, in order (or one with the error)."""
        image = self.images.get(job)
        topic = ota.job_topic(serial, ota.RES, job)
        if job in self.errors:
            error = self.errors[job]
        elif image is None:
            error = "unknown job"
        elif request.offset + request.length > len(image):
            error = "offset past the end"
        else:
            for offset, length in request.pieces():
                response = ota.ChunkResponse(job, offset, image[offset : offset + length])
                self.client.publish(topic, response.encode(), qos=1)
            return
        response = ota.ChunkResponse(job, request.offset, error=error)
        self.client.publish(topic, response.encode(), qos=1)

    # ---- offers ------------------------------------------------------------------------------

    def offer(
        self, serial: str, offer: ota.Offer, *, command_id: str | None = None, timeout: float = 10.0
    ) -> Reply:
        """Send the `ota` command and wait for the gateway's reply (to this command id)."""
        command = self.send(serial, offer, command_id=command_id)
        return self.wait(lambda: self.replies.get(command.id), timeout, "the reply to the offer")

    def send(self, serial: str, offer: ota.Offer, *, command_id: str | None = None) -> Command:
        """Publish the `ota` command without waiting (a random command id unless given)."""
        command = Command("ota", offer.to_params(), int((time.time() + 60) * 1000))
        if command_id:
            command = Command(command.op, command.params, command.deadline_ms, command_id)
        self.client.publish(protocol.topic(serial, protocol.CMD), command.encode(), qos=1)
        return command

    # ---- what was seen -----------------------------------------------------------------------

    def requests(self, job: str) -> list[Seen]:
        with self._lock:
            return [
                s
                for s in self.seen
                if isinstance(s.message, ota.ChunkRequest) and s.message.job == job
            ]

    def reports(self, job: str) -> list[ota.StateReport]:
        with self._lock:
            return [
                s.message
                for s in self.seen
                if isinstance(s.message, ota.StateReport) and s.message.job == job
            ]

    def final(self, job: str, timeout: float = 15.0) -> ota.StateReport:
        """The job's first final report (succeeded or failed)."""

        def final_report():
            return next((r for r in self.reports(job) if r.state in ota.FINAL_STATES), None)

        return self.wait(final_report, timeout, f"the end of job {job}")

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def new_job() -> str:
    return f"job-{uuid.uuid4().hex[:16]}"
