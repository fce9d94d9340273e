"""A test MQTT client that records what a broker lets it receive (ACL and credential tests)."""

from __future__ import annotations

import contextlib
import socket
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.services import wait_for


class Peer:
    """A connected MQTT 3.1.1 paho client that records what it receives."""

    def __init__(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        *,
        client_id: str | None = None,
        persistent: bool = False,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        # Like protocol.make_client, but a refused peer must not keep retrying.
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"peer-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
            reconnect_on_failure=False,
        )
        if username:
            self.client.username_pw_set(username, password)
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.received: list[tuple[str, bytes]] = []
        self.result: dict = {}
        self.client.on_connect = lambda c, u, f, rc, p: self.result.setdefault("rc", rc)
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.result.setdefault(mid, rcs)
        try:
            self.client.connect("127.0.0.1", port, keepalive=30)
        except OSError:
            self.result["rc"] = "refused"
        self.client.loop_start()
        wait_for(lambda: "rc" in self.result, 5, "CONNACK")

    @property
    def connected(self) -> bool:
        rc = self.result.get("rc")
        return rc is not None and rc != "refused" and not rc.is_failure

    def subscribe(self, topic: str) -> bool:
        """True when the broker granted the subscription."""
        _, mid = self.client.subscribe(topic, qos=1)
        with contextlib.suppress(AssertionError):  # a refusal may also drop the connection
            wait_for(lambda: mid in self.result, 5, f"SUBACK for {topic}")
        codes = self.result.get(mid)
        return bool(codes) and not codes[0].is_failure

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Vanish without DISCONNECT, as a gateway losing power does: its will is sent."""
        sock = self.client.socket()
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.client.loop_stop()
