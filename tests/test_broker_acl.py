"""Per-gateway broker credentials and ACLs, one set of tests run against both brokers.

`mosquitto` is the production broker with the files `mqtt_credentials write` produces;
`embedded` is the broker of `make run` (aedes, `matricloud/mqtt_broker.mjs`) reading the very
same files. A gateway's credentials reach only its own topics — live, retained and last-will
messages included — and the portal's credentials do what ingest and the workers need.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command

from devices import protocol
from gateways.credentials import (
    ServiceAccount,
    acl_file_text,
    mosquitto_hash,
    provision_gateway,
    verify_mosquitto_hash,
    write_broker_files,
)
from gateways.models import Gateway
from matricloud import stack
from tests.factories import CompanyFactory
from tests.mqtt_peer import Peer
from tests.services import MOSQUITTO, SHIPPED_CONF, wait_for

PORTAL = ServiceAccount("portal", "portal-secret-1")
MAX_PAYLOAD = 1024 * 1024  # what deploy/mosquitto/mosquitto.conf and the launcher allow
SHIPPED_LIMIT = next(
    line for line in SHIPPED_CONF.read_text().splitlines()
    if line.startswith("max_packet_size ")
)  # fmt: skip


@dataclass
class Broker:
    kind: str
    port: int
    passwd: Path
    acl: Path
    _reload: object
    _log: object

    def reload(self) -> None:
        """Make the broker read the files again (Mosquitto: SIGHUP; aedes watches them)."""
        self._reload()
        time.sleep(1.2)

    def log(self) -> str:
        return self._log()


def _gateways(n: int = 3) -> list[Gateway]:
    company = CompanyFactory()
    return [
        Gateway.objects.create(serial_number=f"GWACL{i:04d}", company=company) for i in range(n)
    ]


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request, tmp_path, mosquitto_factory):
    passwd, acl = tmp_path / "auth" / "passwd", tmp_path / "auth" / "acl"
    write_broker_files(passwd, acl, [PORTAL])
    if request.param == "mosquitto":
        if not Path(MOSQUITTO).exists():
            pytest.skip("mosquitto is not installed")
        server = mosquitto_factory(
            f"password_file {passwd}\nacl_file {acl}\n{SHIPPED_LIMIT}",
            anonymous=False,
            name="auth",
        )
        yield Broker("mosquitto", server.port, passwd, acl, server.reload, server.log)
        return
    logfile = tmp_path / "mqtt.log"
    server = stack.EmbeddedMqtt(
        port=stack.free_port(), logfile=logfile, auth_dir=passwd.parent, max_payload=MAX_PAYLOAD
    ).start()
    try:
        yield Broker(
            "embedded", server.port, passwd, acl, lambda: None, lambda: logfile.read_text()
        )
    finally:
        server.stop()


def _provisioned(broker: Broker, n: int = 2) -> dict[str, str]:
    secrets = {g.serial_number: provision_gateway(g) for g in _gateways(n)}
    write_broker_files(broker.passwd, broker.acl, [PORTAL])
    broker.reload()
    return secrets


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


@pytest.mark.django_db
def test_a_gateway_reaches_only_its_own_topics(broker):
    secrets = _provisioned(broker)
    a, b = sorted(secrets)
    portal = Peer(broker.port, PORTAL.username, PORTAL.password)
    gw_a = Peer(broker.port, a, secrets[a], client_id=a)
    gw_b = Peer(broker.port, b, secrets[b], client_id=b)
    try:
        assert portal.connected and gw_a.connected and gw_b.connected
        assert portal.subscribe("mc/v1/#")
        assert gw_a.subscribe(f"mc/v1/{a}/cmd")
        for foreign in (f"mc/v1/{b}/cmd", "mc/v1/+/cmd", "mc/v1/#", "#", f"mc/v1/{b}/telemetry"):
            granted = gw_a.subscribe(foreign)
            # Mosquitto 2.0 grants any filter and filters each delivery; ours refuses it.
            assert broker.kind == "mosquitto" or not granted, foreign
        assert gw_b.subscribe(f"mc/v1/{b}/cmd")
        for kind in ("telemetry", "status", "reply", "cmd"):
            gw_a.publish(f"mc/v1/{b}/{kind}", b"from-A")
        gw_a.publish("elsewhere/topic", b"from-A")
        gw_a.publish(f"mc/v1/{a}/cmd", b"from-A")  # a gateway does not command itself
        portal.publish(f"mc/v1/{a}/cmd", b"from-portal")
        portal.publish(f"mc/v1/{b}/cmd", b"from-portal")
        portal.publish(f"mc/v1/{b}/telemetry", b"from-portal")  # B cannot read its own
        gw_a.publish(f"mc/v1/{a}/telemetry", b"from-A-own")
        gw_a.publish(f"mc/v1/{a}/status", b"marker")
        wait_for(lambda: (f"mc/v1/{a}/status", b"marker") in portal.received, 5, "the marker")
        wait_for(lambda: gw_b.received, 5, "B's command")
        time.sleep(0.3)
        from_a = [t for t, p in portal.received if p.startswith(b"from-A")]
        assert from_a == [f"mc/v1/{a}/telemetry"], portal.received
        assert set(gw_a.received) == {(f"mc/v1/{a}/cmd", b"from-portal")}
        assert gw_b.received == [(f"mc/v1/{b}/cmd", b"from-portal")]
    finally:
        for peer in (portal, gw_a, gw_b):
            peer.close()
    if broker.kind == "embedded":
        log = broker.log()
        assert f"refused subscription of {a} user {a}" in log and f"to mc/v1/{b}/cmd" in log
        assert f"refused publish of {a} user {a}" in log


@pytest.mark.django_db
def test_a_gateway_reaches_only_its_own_firmware_jobs(broker):
    """A cannot subscribe to or receive B's chunks, nor ask or report on B's jobs."""
    secrets = _provisioned(broker)
    a, b = sorted(secrets)
    portal = Peer(broker.port, PORTAL.username, PORTAL.password)
    gw_a = Peer(broker.port, a, secrets[a], client_id=a)
    gw_b = Peer(broker.port, b, secrets[b], client_id=b)
    try:
        assert portal.subscribe("mc/v1/+/ota/req/+")
        assert gw_a.subscribe(f"mc/v1/{a}/ota/res/#")
        assert gw_b.subscribe(f"mc/v1/{b}/ota/res/#")
        for foreign in (f"mc/v1/{b}/ota/res/#", f"mc/v1/{b}/ota/res/JOBB0001", "mc/v1/+/ota/#"):
            granted = gw_a.subscribe(foreign)
            assert broker.kind == "mosquitto" or not granted, foreign
        gw_a.publish(f"mc/v1/{b}/ota/req/JOBB0001", b"A-asks-for-B")
        gw_a.publish(f"mc/v1/{b}/ota/res/JOBB0001", b"A-answers-B")  # not the cloud
        gw_a.publish(f"mc/v1/{a}/ota/res/JOBA0001", b"A-answers-itself")
        portal.publish(f"mc/v1/{b}/ota/res/JOBB0001", b"chunk-for-B")
        gw_a.publish(f"mc/v1/{a}/ota/req/JOBA0001", b"A-asks-own")
        wait_for(lambda: (f"mc/v1/{a}/ota/req/JOBA0001", b"A-asks-own") in portal.received, 5, "A")
        wait_for(lambda: gw_b.received, 5, "B's chunk")
        time.sleep(0.3)
        assert portal.received == [(f"mc/v1/{a}/ota/req/JOBA0001", b"A-asks-own")]
        assert gw_a.received == []
        assert gw_b.received == [(f"mc/v1/{b}/ota/res/JOBB0001", b"chunk-for-B")]
    finally:
        for peer in (portal, gw_a, gw_b):
            peer.close()
    if broker.kind == "embedded":
        log = broker.log()
        assert f"to mc/v1/{b}/ota/res/#" in log and f"refused publish of {a} user {a}" in log


@pytest.mark.django_db
def test_wrong_credentials_do_not_get_in(broker):
    secrets = _provisioned(broker)
    a, b = sorted(secrets)
    for user, password in ((a, secrets[b]), (b, secrets[a]), (None, None), (a, ""), ("x", "y")):
        intruder = Peer(broker.port, user, password)
        assert not intruder.connected, user
        intruder.close()
    if broker.kind == "embedded":
        assert "refused connection of " in broker.log() and "wrong password" in broker.log()


@pytest.mark.django_db
def test_retained_messages_of_other_gateways_are_withheld(broker):
    """A new client must not get retained messages that match *another* client's subscription
    (the portal's broad one exists while A connects)."""
    secrets = _provisioned(broker, 3)
    a, b, c = sorted(secrets)
    portal = Peer(broker.port, PORTAL.username, PORTAL.password, client_id="portal-live")
    gw_b = Peer(broker.port, b, secrets[b], client_id=b)
    gw_c = Peer(broker.port, c, secrets[c], client_id=c)
    try:
        assert portal.subscribe("mc/v1/+/status") and portal.subscribe("mc/v1/+/cmd")
        gw_b.publish(f"mc/v1/{b}/status", b"B-retained", retain=True)
        portal.publish(f"mc/v1/{c}/cmd", b"C-retained-cmd", retain=True)
        wait_for(lambda: len(portal.received) >= 2, 5, "the retained messages live")
        gw_a = Peer(broker.port, a, secrets[a], client_id=a)
        assert gw_a.subscribe(f"mc/v1/{a}/cmd")
        for foreign in ("mc/v1/+/status", f"mc/v1/{c}/cmd"):
            assert not gw_a.subscribe(foreign) or broker.kind == "mosquitto", foreign
        # A new portal session does get them: the messages are there to be leaked.
        late = Peer(broker.port, PORTAL.username, PORTAL.password)
        assert late.subscribe("mc/v1/#")
        wait_for(lambda: len(late.received) >= 2, 5, "retained messages for the portal")
        time.sleep(0.5)
        assert gw_a.received == []
        assert gw_c.received == []  # C subscribed to nothing
        gw_a.close()
        late.close()
    finally:
        for peer in (portal, gw_b, gw_c):
            peer.close()


@pytest.mark.django_db
def test_last_wills_reach_only_readers(broker):
    secrets = _provisioned(broker, 3)
    a, b, c = sorted(secrets)
    portal = Peer(broker.port, PORTAL.username, PORTAL.password)
    gw_a = Peer(broker.port, a, secrets[a], client_id=a)
    try:
        assert portal.subscribe("mc/v1/+/status") and gw_a.subscribe(f"mc/v1/{a}/cmd")
        # B's will is its own offline status; C's names A's command topic, which it may not.
        gw_b = Peer(broker.port, b, secrets[b], client_id=b, will=(f"mc/v1/{b}/status", b"B-gone"))
        gw_c = Peer(broker.port, c, secrets[c], client_id=c, will=(f"mc/v1/{a}/cmd", b"C-will"))
        if gw_c.connected:  # Mosquitto may refuse the CONNECT for such a will instead
            gw_c.drop()
        gw_b.drop()
        wait_for(lambda: (f"mc/v1/{b}/status", b"B-gone") in portal.received, 10, "B's will")
        time.sleep(0.5)
        assert gw_a.received == []
    finally:
        portal.close()
        gw_a.close()


@pytest.mark.django_db
def test_portal_account_serves_ingest_and_workers_with_qos1_sessions(broker):
    """Ingest's persistent session gets telemetry sent while it was away; workers command."""
    secrets = _provisioned(broker, 1)
    (a,) = secrets
    ingest = Peer(
        broker.port, PORTAL.username, PORTAL.password, client_id="ingest", persistent=True
    )
    gw = Peer(broker.port, a, secrets[a], client_id=a)
    try:
        for kind in ("telemetry", "status", "reply"):
            assert ingest.subscribe(f"mc/v1/+/{kind}")
        assert gw.subscribe(f"mc/v1/{a}/cmd")
        ingest.close()
        for n in range(20):
            gw.publish(f"mc/v1/{a}/telemetry", f"sample-{n}".encode())
        time.sleep(0.5)
        ingest = Peer(
            broker.port, PORTAL.username, PORTAL.password, client_id="ingest", persistent=True
        )
        wait_for(lambda: len(ingest.received) >= 20, 10, "the queued telemetry")
        assert [p for _, p in ingest.received] == [f"sample-{n}".encode() for n in range(20)]
        worker = Peer(broker.port, PORTAL.username, PORTAL.password)
        worker.publish(f"mc/v1/{a}/cmd", b'{"id": "1"}')
        wait_for(lambda: gw.received, 5, "the command")
        gw.publish(f"mc/v1/{a}/reply", b'{"id": "1"}')
        wait_for(lambda: any(t.endswith("/reply") for t, _ in ingest.received), 5, "the reply")
        worker.close()
    finally:
        ingest.close()
        gw.close()


@pytest.mark.django_db
def test_oversized_and_malformed_packets_leave_other_clients_alone(broker):
    secrets = _provisioned(broker, 2)
    a, b = sorted(secrets)
    portal = Peer(broker.port, PORTAL.username, PORTAL.password)
    gw_a = Peer(broker.port, a, secrets[a], client_id=a)
    gw_b = Peer(broker.port, b, secrets[b], client_id=b)
    try:
        assert portal.subscribe("mc/v1/+/telemetry")
        gw_a.publish(f"mc/v1/{a}/telemetry", b"x" * (10 * 1024 * 1024))
        # A packet that is no MQTT at all, and a CONNECT with a broken length.
        for junk in (b"\xff\xff\xff\xff\xff" * 10, b"\x10\xff\xff\xff\xff\x7f" + b"\0" * 64):
            with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw:
                raw.sendall(junk)
                raw.settimeout(5)
                with contextlib.suppress(OSError):
                    assert raw.recv(16) == b""  # the broker hangs up
        gw_b.publish(f"mc/v1/{b}/telemetry", b"still-flowing")
        wait_for(lambda: (f"mc/v1/{b}/telemetry", b"still-flowing") in portal.received, 10, "B")
        time.sleep(0.5)
        assert all(len(p) < MAX_PAYLOAD for _, p in portal.received)
    finally:
        for peer in (portal, gw_a, gw_b):
            peer.close()
    if broker.kind == "embedded":
        assert "bytes > 1048576" in broker.log()


@pytest.mark.django_db
def test_new_and_revoked_secrets_take_effect_without_a_restart(broker, capsys):
    gateways = _gateways()
    call_command("mqtt_credentials", "provision", *[g.serial_number for g in gateways[:2]])
    secrets = dict(line.split(" ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert set(secrets) == {g.serial_number for g in gateways[:2]}
    call_command(
        "mqtt_credentials",
        "write",
        "--password-file",
        str(broker.passwd),
        "--acl-file",
        str(broker.acl),
        "--service",
        f"{PORTAL.username}:{PORTAL.password}",
        "--no-url-account",
    )
    assert "(3 users)" in capsys.readouterr().out
    broker.reload()
    a, c = gateways[0], gateways[2]
    old_secret = secrets[a.serial_number]
    new_secret = provision_gateway(a)
    c_secret = provision_gateway(c)
    write_broker_files(broker.passwd, broker.acl, [PORTAL])
    broker.reload()
    for user, password, ok in (
        (a.serial_number, old_secret, False),
        (a.serial_number, new_secret, True),
        (c.serial_number, c_secret, True),
    ):
        peer = Peer(broker.port, user, password)
        assert peer.connected is ok, (user, ok)
        peer.close()


def test_protocol_session_settings_work_on_the_embedded_broker(tmp_path):
    """The portal's own client settings (protocol.make_client) on the anonymous test broker."""
    server = stack.EmbeddedMqtt(port=stack.free_port(), logfile=tmp_path / "mqtt.log").start()
    try:
        address = protocol.BrokerAddress.from_url(server.url)
        client = protocol.make_client("session-check", address)
        got: list[bytes] = []
        client.on_message = lambda c, u, m: got.append(m.payload)
        protocol.connect_client(client, address)
        client.loop_start()
        client.subscribe("mc/v1/+/status", qos=1)
        time.sleep(0.2)
        client.publish("mc/v1/GW1/status", b"on", qos=1)
        wait_for(lambda: got == [b"on"], 5, "the message")
        client.disconnect()
        client.loop_stop()
    finally:
        server.stop()
