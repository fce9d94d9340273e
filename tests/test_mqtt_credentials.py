"""Credentials tooling that cannot break the running stack.

`mqtt_credentials write` keeps the service accounts of the files it replaces (the demo's
`portal` with its rights on every topic), removes one only when told (`--drop-service`),
refuses bad input with a message, and writes nothing then. No broker password reaches the
simulator's output or logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from gateways.credentials import ServiceAccount, provision_gateway, write_broker_files
from gateways.models import Gateway
from matricloud.demo import PORTAL_USER, prepare_demo_devices
from simulator.cli import add_arguments, hide_password
from simulator.control import CONTROL_TOPIC
from tests.factories import CompanyFactory
from tests.mqtt_peer import Peer
from tests.services import Mosquitto, needs_mosquitto, wait_for

SECRET = "s3cret-Broker-pw"


@pytest.fixture
def data_dir(tmp_path, settings) -> Path:
    """A data directory the command's default paths point into (MATRICLOUD_DATA_DIR)."""
    settings.DATA_DIR = tmp_path
    settings.MQTT_PASSWORD_FILE = str(tmp_path / "mosquitto" / "passwd")
    settings.MQTT_ACL_FILE = str(tmp_path / "mosquitto" / "acl")
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    return tmp_path


def write(*args: str) -> str:
    out = StringIO()
    call_command("mqtt_credentials", "write", *args, stdout=out)
    return out.getvalue()


def reload(broker: Mosquitto, *args: str) -> str:
    """`write` with --sighup, returning once Mosquitto has read the files again."""
    reloads = broker.log().count("Reloading config")
    output = write(*args, "--sighup", str(broker.proc.pid))
    wait_for(lambda: broker.log().count("Reloading config") > reloads, 10, "the reload")
    return output


def check_rights(port: int, portal_password: str, gateways: dict[str, str]) -> None:
    """The portal reads telemetry and drives the simulator; a gateway only its own topics."""
    a, b = sorted(gateways)[:2]
    portal = Peer(port, PORTAL_USER, portal_password)
    gw_a = Peer(port, a, gateways[a], client_id=a)
    try:
        assert portal.connected and gw_a.connected
        assert portal.subscribe("mc/v1/+/telemetry") and portal.subscribe(CONTROL_TOPIC)
        gw_a.subscribe(CONTROL_TOPIC)  # Mosquitto grants it, and then delivers nothing
        gw_a.subscribe(f"mc/v1/{b}/cmd")
        gw_a.publish(f"mc/v1/{b}/telemetry", b"from-A")
        gw_a.publish(CONTROL_TOPIC, b"from-A")
        gw_a.publish(f"mc/v1/{a}/telemetry", b"marker")
        portal.publish(f"mc/v1/{b}/cmd", b"from-portal")
        portal.publish(CONTROL_TOPIC, b'{"action": "status"}')
        wait_for(lambda: (f"mc/v1/{a}/telemetry", b"marker") in portal.received, 5, "telemetry")
        wait_for(lambda: (CONTROL_TOPIC, b'{"action": "status"}') in portal.received, 5, "control")
        time.sleep(0.3)  # what should not arrive would have by now
        assert not [m for m in portal.received if m[1] == b"from-A"]
        assert gw_a.received == []
    finally:
        portal.close()
        gw_a.close()


@needs_mosquitto
@pytest.mark.django_db
def test_write_after_the_demo_keeps_the_portal_account(data_dir, mosquitto_factory, settings):
    call_command("seed_demo", stdout=StringIO())
    passwd, acl = data_dir / "mosquitto" / "passwd", data_dir / "mosquitto" / "acl"
    devices = prepare_demo_devices(data_dir, "mqtt://127.0.0.1:1883", enforce_acl=True)
    broker = mosquitto_factory(f"password_file {passwd}\nacl_file {acl}", anonymous=False)
    portal_password = (data_dir / "portal-mqtt.secret").read_text().strip()
    gateways = json.loads(devices.credentials_file.read_text())
    check_rights(broker.port, portal_password, gateways)

    # As docs/operations.md shows it, with MQTT_URL anonymous: the portal stays.
    output = reload(broker)
    assert f"({len(gateways) + 1} users)" in output and "service accounts: portal" in output
    assert "user portal\ntopic readwrite #\n" in acl.read_text()
    check_rights(broker.port, portal_password, gateways)

    # With MQTT_URL as the portal's account: its rights stay "#", not only mc/v1/#.
    settings.MQTT_URL = f"mqtt://portal:{portal_password}@127.0.0.1:{broker.port}?version=311"
    before = passwd.read_text().splitlines()[1]
    reload(broker)
    assert "user portal\ntopic readwrite #\n\n" in acl.read_text()
    assert passwd.read_text().splitlines()[1] == before  # same password, same hash
    check_rights(broker.port, portal_password, gateways)

    # Another account comes and goes; the portal stays throughout.
    reload(broker, "--service", "ops:ops-secret-1")
    ops = Peer(broker.port, "ops", "ops-secret-1")
    assert ops.connected and ops.subscribe("mc/v1/+/status")
    ops.close()
    output = reload(broker, "--drop-service", "ops")
    assert "dropped service accounts: ops" in output
    refused = Peer(broker.port, "ops", "ops-secret-1")
    assert not refused.connected
    refused.close()
    check_rights(broker.port, portal_password, gateways)


@pytest.mark.django_db
def test_drop_service_removes_only_that_account(data_dir):
    gateway = Gateway.objects.create(serial_number="GWCRED0001", company=CompanyFactory())
    provision_gateway(gateway)
    ops = ServiceAccount("ops", "ops-secret-1", topic="mcsim/#", access="read")
    write_broker_files(data_dir / "mosquitto/passwd", data_dir / "mosquitto/acl", [ops])
    write("--service", "portal:portal-secret")
    output = write("--drop-service", "portal")
    assert "dropped service accounts: portal" in output and "service accounts: ops" in output
    passwd = (data_dir / "mosquitto/passwd").read_text()
    acl = (data_dir / "mosquitto/acl").read_text()
    assert "portal" not in passwd and "portal" not in acl
    assert passwd.count("\nops:$7$") == 1 and "GWCRED0001:$7$" in passwd
    assert "user ops\ntopic read mcsim/#\n" in acl


@pytest.fixture
def files_with_portal(data_dir, db) -> tuple[Path, Path]:
    gateway = Gateway.objects.create(serial_number="GWCRED0001", company=CompanyFactory())
    provision_gateway(gateway)
    passwd, acl = data_dir / "mosquitto/passwd", data_dir / "mosquitto/acl"
    write_broker_files(passwd, acl, [ServiceAccount(PORTAL_USER, SECRET, topic="#")])
    return passwd, acl


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service", "portal"], "a service account is given as user:password"),
        (["--service", ":pw"], "a service account is given as user:password"),
        (["--service", "ops:"], "a service account is given as user:password"),
        (["--service", "o ps:pw"], "'o ps' cannot be a broker username"),
        (["--service", "$SYS:pw"], "'$SYS' cannot be a broker username"),
        (["--service", "ops:a", "--service", "ops:b"], "'ops' is given twice"),
        (["--service", "GWCRED0001:pw"], "GWCRED0001 have the name of a gateway"),
        (["--drop-service", "nobody"], "no service account 'nobody'"),
        (["--drop-service", "portal", "--service", "portal:x"], "both given and to be dropped"),
        (["--password-file", "."], "cannot read ."),
        (["--pid-file", "/nonexistent/mosquitto.pid"], "cannot read a pid from"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(files_with_portal, args, message):
    before = [path.read_text() for path in files_with_portal]
    with pytest.raises(CommandError, match=message.replace("$", r"\$")):
        write(*args)
    assert [path.read_text() for path in files_with_portal] == before


def test_dropping_the_user_of_mqtt_url_needs_no_url_account(files_with_portal, settings):
    settings.MQTT_URL = f"mqtt://portal:{SECRET}@127.0.0.1:1883"
    with pytest.raises(CommandError, match="'portal' is the user of MQTT_URL: add --no-url"):
        write("--drop-service", "portal")
    assert "dropped service accounts: portal" in write(
        "--drop-service", "portal", "--no-url-account"
    )


def test_a_gateway_named_like_a_kept_account_is_refused(files_with_portal):
    Gateway.objects.create(serial_number=PORTAL_USER, company=CompanyFactory())
    with pytest.raises(CommandError, match="portal have the name of a gateway.*--drop-service"):
        write()


def test_simulator_start_line_and_logs_hide_the_broker_password(
    mosquitto_factory, caplog, monkeypatch
):
    broker = mosquitto_factory()  # no password file: any credentials are accepted
    url = f"mqtt://portal:{SECRET}@127.0.0.1:{broker.port}"
    caplog.set_level(logging.DEBUG)
    out = StringIO()
    call_command("simulate", "--gateways", "2", "--mqtt-url", url, "--duration", "0.5", stdout=out)
    output = out.getvalue()
    assert f"→ mqtt://portal:***@127.0.0.1:{broker.port}" in output
    assert "2/2 gateways online" in output
    assert SECRET not in output and SECRET not in caplog.text

    monkeypatch.setenv("MQTT_URL", url)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert SECRET not in parser.format_help()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://portal:p%40ss@h:1883?version=311", "mqtt://portal:***@h:1883?version=311"),
        ("mqtt://portal:@h:1883", "mqtt://portal:***@h:1883"),
        ("mqtt://portal@h:1883", "mqtt://portal@h:1883"),
        ("mqtt://h:1883", "mqtt://h:1883"),
    ],
)
def test_hide_password(url, shown):
    assert hide_password(url) == shown
