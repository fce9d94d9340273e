"""Per-gateway broker credentials: Mosquitto accepts our `$7$` hashes, and a gateway's
credentials reach only its own topics, on Mosquitto (password_file + acl_file) and on the
embedded amqtt broker (gateways.broker_auth)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from django.core.management import call_command
from paho.mqtt.enums import CallbackAPIVersion

from gateways import protocol
from gateways.broker_auth import (
    filter_covers,
    parse_acl_file,
    plugin_config,
    topic_matches,
)
from gateways.credentials import (
    ServiceAccount,
    acl_file_text,
    mosquitto_hash,
    provision_gateway,
    verify_mosquitto_hash,
    write_broker_files,
)
from gateways.models import Gateway
from tests import test_ingest
from tests.factories import CompanyFactory
from tests.test_ingest import free_port, needs_mosquitto, wait_for

mosquitto_factory = test_ingest.mosquitto_factory  # shared fixture

PORTAL = ServiceAccount("portal", "portal-secret-1")


class Peer:
    """A connected paho client that records what it receives."""

    def __init__(self, port, username=None, password=None, *, v311=False, client_id=None):
        broker = protocol.BrokerAddress(
            "127.0.0.1", port, username, password, mqtt_version=3 if v311 else 5
        )
        # Like protocol.make_client, but a refused peer must not keep retrying.
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"peer-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311 if v311 else mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.received: list[tuple[str, bytes]] = []
        self.result: dict = {}
        self.client.on_connect = lambda c, u, f, rc, p: self.result.setdefault("rc", rc)
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.result.setdefault(mid, rcs)
        try:
            protocol.connect_client(self.client, broker, persistent=False)
        except OSError:
            self.result["rc"] = "refused"
        self.client.loop_start()
        wait_for(lambda: "rc" in self.result, 5, "CONNACK")

    @property
    def connected(self) -> bool:
        rc = self.result.get("rc")
        return rc is not None and rc != "refused" and not rc.is_failure

    def subscribe(self, topic: str) -> None:
        _, mid = self.client.subscribe(topic, qos=1)
        wait_for(lambda: mid in self.result, 5, f"SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_hashes_match_mosquitto_passwd(tmp_path):
    ours = mosquitto_hash("s3cret!", salt=b"0123456789ab")
    assert ours.startswith("$7$101$") and verify_mosquitto_hash("s3cret!", ours)
    assert not verify_mosquitto_hash("wrong", ours)
    assert not verify_mosquitto_hash("s3cret!", "$6$rounds$junk")
    passwd = tmp_path / "passwd"
    with contextlib.suppress(FileNotFoundError):
        subprocess.run(
            ["mosquitto_passwd", "-c", "-b", str(passwd), "alice", "s3cret!"], check=True
        )
        theirs = passwd.read_text().strip().split(":", 1)[1]
        assert verify_mosquitto_hash("s3cret!", theirs)


def test_acl_text_has_service_accounts_and_gateway_patterns():
    text = acl_file_text([PORTAL])
    assert "user portal\ntopic readwrite mc/v1/#" in text
    assert "pattern write mc/v1/%u/telemetry" in text and "pattern read mc/v1/%u/cmd" in text
    rules = parse_acl_file(text)
    assert rules.allows("GW1", "GW1", "mc/v1/GW1/telemetry", "write")
    assert not rules.allows("GW1", "GW1", "mc/v1/GW2/telemetry", "write")
    assert not rules.allows("GW1", "GW1", "mc/v1/GW1/telemetry", "read")
    assert rules.allows_subscription("GW1", "GW1", "mc/v1/GW1/cmd")
    assert not rules.allows_subscription("GW1", "GW1", "mc/v1/+/cmd")
    assert rules.allows_subscription("portal", "ingest", "$share/ingest/mc/v1/+/telemetry")
    assert not rules.allows(None, "anon", "mc/v1/GW1/cmd", "read")
    assert topic_matches("mc/v1/+/status", "mc/v1/GW1/status")
    assert not topic_matches("mc/v1/+/status", "mc/v1/GW1/status/x")
    assert filter_covers("mc/v1/#", "mc/v1/+/telemetry") and not filter_covers("a/+", "a/#")


def _gateways(n: int = 3) -> list[Gateway]:
    company = CompanyFactory()
    return [
        Gateway.objects.create(serial_number=f"GWACL{i:04d}", company=company) for i in range(n)
    ]


def _check_isolation(port: int, secrets: dict[str, str], *, v311: bool) -> None:
    """Gateway A may use its own topics only; nothing it sends reaches B's topics."""
    a, b = sorted(secrets)[:2]
    portal = Peer(port, PORTAL.username, PORTAL.password, v311=v311)
    gw_a = Peer(port, a, secrets[a], v311=v311, client_id=a)
    gw_b = Peer(port, b, secrets[b], v311=v311, client_id=b)
    try:
        assert portal.connected and gw_a.connected and gw_b.connected
        portal.subscribe("mc/v1/#")
        gw_a.subscribe(f"mc/v1/{a}/cmd")
        for foreign in (f"mc/v1/{b}/cmd", "mc/v1/+/cmd", "mc/v1/#"):
            with contextlib.suppress(AssertionError):  # a refusal may also drop the session
                gw_a.subscribe(foreign)
        gw_b.subscribe(f"mc/v1/{b}/cmd")
        for kind in ("telemetry", "status", "reply", "cmd"):
            gw_a.publish(f"mc/v1/{b}/{kind}", b"from-A")
        gw_a.publish("elsewhere/topic", b"from-A")
        gw_a.publish(f"mc/v1/{a}/cmd", b"from-A")  # a gateway does not command itself
        portal.publish(f"mc/v1/{a}/cmd", b"from-portal")
        portal.publish(f"mc/v1/{b}/cmd", b"from-portal")
        gw_a.publish(f"mc/v1/{a}/telemetry", b"from-A-own")
        gw_a.publish(f"mc/v1/{a}/status", b"marker")
        wait_for(lambda: (f"mc/v1/{a}/status", b"marker") in portal.received, 5, "the marker")
        wait_for(lambda: gw_b.received, 5, "B's command")
        time.sleep(0.3)
        from_a = [t for t, p in portal.received if p.startswith(b"from-A")]
        assert from_a == [f"mc/v1/{a}/telemetry"], portal.received
        # (Overlapping subscriptions may deliver a message more than once.)
        assert set(gw_a.received) == {(f"mc/v1/{a}/cmd", b"from-portal")}
        assert gw_b.received == [(f"mc/v1/{b}/cmd", b"from-portal")]
        # Wrong secrets, someone else's name and anonymous clients do not get in.
        for user, password in ((a, secrets[b]), (b, secrets[a]), (None, None), (a, "")):
            intruder = Peer(port, user, password, v311=v311)
            assert not intruder.connected, user
            intruder.close()
    finally:
        for peer in (portal, gw_a, gw_b):
            peer.close()


@needs_mosquitto
@pytest.mark.django_db
def test_mosquitto_keeps_each_gateway_to_its_own_topics(mosquitto_factory, tmp_path, capsys):
    gateways = _gateways()
    call_command("mqtt_credentials", "provision", *[g.serial_number for g in gateways[:2]])
    secrets = dict(line.split(" ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert set(secrets) == {g.serial_number for g in gateways[:2]}
    passwd, acl = tmp_path / "auth" / "passwd", tmp_path / "auth" / "acl"
    call_command(
        "mqtt_credentials",
        "write",
        "--password-file",
        str(passwd),
        "--acl-file",
        str(acl),
        "--service",
        f"{PORTAL.username}:{PORTAL.password}",
        "--no-url-account",
    )
    assert "(3 users)" in capsys.readouterr().out
    broker = mosquitto_factory(
        f"password_file {passwd}\nacl_file {acl}", anonymous=False, name="auth"
    )
    _check_isolation(broker.port, secrets, v311=False)

    # A new gateway and a revoked secret take effect with a SIGHUP, without a restart.
    a, c = gateways[0], gateways[2]
    old_secret = secrets[a.serial_number]
    new_secret = provision_gateway(a)
    c_secret = provision_gateway(c)
    write_broker_files(passwd, acl, [PORTAL])
    broker.reload()
    time.sleep(0.5)
    for user, password, ok in (
        (a.serial_number, old_secret, False),
        (a.serial_number, new_secret, True),
        (c.serial_number, c_secret, True),
    ):
        peer = Peer(broker.port, user, password)
        assert peer.connected is ok, (user, ok)
        peer.close()


@contextlib.contextmanager
def amqtt_broker(password_file, acl_file):
    """The embedded broker with our plugins, on its own event loop in a thread."""
    from amqtt.broker import Broker

    port = free_port()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": plugin_config(password_file, acl_file),
    }
    state: dict = {}
    ready = threading.Event()

    async def main():
        broker = Broker(config)
        await broker.start()
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await broker.shutdown()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(10), "amqtt did not start"
    try:
        yield port
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)


@pytest.mark.django_db
def test_embedded_amqtt_enforces_the_same_files(tmp_path):
    gateways = _gateways(2)
    secrets = {g.serial_number: provision_gateway(g) for g in gateways}
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    write_broker_files(passwd, acl, [PORTAL])
    with amqtt_broker(passwd, acl) as port:
        _check_isolation(port, secrets, v311=True)
