"""The README contract without a browser: demo data, production settings, embedded services."""

import os
import secrets
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
import redis
from django.core.management import call_command

from accounts.models import Company, CompanyType, Role, User
from matricloud import stack

BASE_DIR = Path(__file__).resolve().parent.parent
DEMO_PASSWORD = "Demo-pass1!"

EXPECTED_COMPANIES = {
    # name: (type, country, superior)
    "MatriCloud": (CompanyType.PLATFORM, "DE", None),
    "Helios Distribution": (CompanyType.DISTRIBUTOR, "IT", "MatriCloud"),
    "SunFix Installers": (CompanyType.INSTALLER, "DE", "Helios Distribution"),
    "Nordlicht Energie": (CompanyType.DISTRIBUTOR, "DE", "MatriCloud"),
}
EXPECTED_USERS = {
    # email: (role, company)
    "admin@matricloud.example": (Role.ADMIN, "MatriCloud"),
    "admin@helios.example": (Role.ADMIN, "Helios Distribution"),
    "om@sunfix.example": (Role.OM, "SunFix Installers"),
    "owner@sunfix.example": (Role.OWNER, "SunFix Installers"),
    "admin@nordlicht.example": (Role.ADMIN, "Nordlicht Energie"),
}


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


# --- seed_demo ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_seed_demo_creates_the_documented_tree_and_logins():
    output = seed()

    companies = {
        c.name: (c.type, c.country.code, c.superior.name if c.superior else None)
        for c in Company.objects.select_related("superior")
    }
    assert companies == EXPECTED_COMPANIES
    users = {u.email: (u.role, u.company.name) for u in User.objects.select_related("company")}
    assert users == EXPECTED_USERS
    for user in User.objects.all():
        assert user.check_password(DEMO_PASSWORD), user.email
        assert user.is_active
    platform_admin = User.objects.get(email="admin@matricloud.example")
    assert platform_admin.is_staff and platform_admin.is_superuser
    assert not User.objects.filter(is_superuser=True).exclude(pk=platform_admin.pk).exists()
    # The tree paths are right: SunFix sits below Helios, Nordlicht beside it.
    sunfix = Company.objects.get(name="SunFix Installers")
    assert sunfix.is_below(Company.objects.get(name="Helios Distribution"))
    assert not sunfix.is_below(Company.objects.get(name="Nordlicht Energie"))
    for name in EXPECTED_COMPANIES:
        assert f"company {name}" in output
    for email in EXPECTED_USERS:
        assert f"user {email}" in output


@pytest.mark.django_db
def test_seed_demo_twice_creates_nothing_and_keeps_changed_passwords():
    seed()
    owner = User.objects.get(email="owner@sunfix.example")
    owner.set_password("Changed-pass2?")
    owner.save()
    company_ids = set(Company.objects.values_list("pk", flat=True))
    user_ids = set(User.objects.values_list("pk", flat=True))

    output = seed()

    assert "nothing created" in output
    assert "created" not in output.replace("nothing created", "")
    assert set(Company.objects.values_list("pk", flat=True)) == company_ids
    assert set(User.objects.values_list("pk", flat=True)) == user_ids
    owner.refresh_from_db()
    assert owner.check_password("Changed-pass2?")
    assert not owner.check_password(DEMO_PASSWORD)


@pytest.mark.django_db
def test_seed_demo_adds_only_what_is_missing():
    seed()
    User.objects.filter(email="om@sunfix.example").delete()

    output = seed()

    assert output.strip() == "created user om@sunfix.example (om, SunFix Installers)"
    assert User.objects.count() == len(EXPECTED_USERS)


# --- production settings --------------------------------------------------------------------


def production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        DJANGO_SETTINGS_MODULE="matricloud.settings_production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="portal.example",
    )
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("extra", [{}, {"DJANGO_DEBUG": "1"}], ids=["plain", "debug-asked-for"])
def test_production_settings_pass_the_deployment_checklist(extra):
    """docs/operations.md: `check --deploy` with the variables production needs says nothing,
    silences nothing, and DJANGO_DEBUG cannot turn debug on in production."""
    result = manage("check", "--deploy", env=production_env(**extra))

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNINGS" not in output and "ERRORS" not in output
    assert "System check identified no issues (0 silenced)." in output


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = production_env()
    del env["DJANGO_SECRET_KEY"]

    result = manage("check", env=env)

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


# --- embedded services ----------------------------------------------------------------------


def test_embedded_redis_starts_answers_on_a_unix_url_and_stops(tmp_path):
    service = stack.EmbeddedRedis(tmp_path / "redis.db").start()
    try:
        assert service.url.startswith("unix:///")
        client = redis.Redis.from_url(service.url)
        assert client.ping()
        client.set("contract", "ok")
        assert client.get("contract") == b"ok"
        client.close()
        socket_file = service.socket_file
        assert socket_file.is_socket()
    finally:
        service.stop()
    assert not socket_file.exists()
    assert (tmp_path / "redis.db").exists(), "SHUTDOWN SAVE keeps the data for the next run"


def test_stack_starts_nothing_for_services_given_by_url(monkeypatch, tmp_path):
    urls = {
        "DATABASE_URL": "postgresql://postgres@db.example:5432/matricloud",
        "REDIS_URL": "redis://cache.example:6379/0",
        "MQTT_URL": "mqtt://broker.example:1883",
    }
    for var, url in urls.items():
        monkeypatch.setenv(var, url)
    monkeypatch.setenv("MATRICLOUD_DATA_DIR", str(tmp_path))

    services = stack.Stack()
    exported = services.start()

    assert services.services == []
    assert exported == urls
    assert services.external == urls
    services.stop()


def test_celery_gets_the_socket_spelling_of_a_unix_redis_url():
    from matricloud.settings import _celery_redis_url

    assert _celery_redis_url("unix:///tmp/x/redis.socket") == "redis+socket:///tmp/x/redis.socket"
    assert _celery_redis_url("redis://127.0.0.1:6379/5") == "redis://127.0.0.1:6379/5"


def test_embedded_mqtt_broker_relays_a_qos1_message_and_stops(tmp_path):
    import threading

    import paho.mqtt.client as mqtt

    broker = stack.EmbeddedMqtt(port=stack.free_port(), logfile=tmp_path / "mqtt.log").start()
    received = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, userdata, message: message.payload == b"hello" and received.set()
    try:
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}?version=311"
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        client.subscribe("mc/v1/TEST0001/status", qos=1)
        client.publish("mc/v1/TEST0001/status", b"hello", qos=1, retain=True)
        assert received.wait(10)
    finally:
        client.loop_stop()
        client.disconnect()
        broker.stop()
    assert stack.port_is_free("127.0.0.1", broker.port)


def test_a_killed_embedded_broker_is_restarted_on_its_port_by_the_launcher(tmp_path, caplog):
    import signal
    import time

    import paho.mqtt.client as mqtt

    from matricloud.__main__ import RestartBudget, keep_alive

    broker = stack.EmbeddedMqtt(port=stack.free_port(), logfile=tmp_path / "mqtt.log").start()
    try:
        budget = RestartBudget(limit=1)
        assert keep_alive(broker, budget)  # running: nothing to do
        os.kill(broker._proc.pid, signal.SIGKILL)
        broker._proc.wait(5)
        with caplog.at_level("INFO", logger="matricloud"):
            assert keep_alive(broker, budget)
        assert "was killed by SIGKILL: restarting it" in caplog.text
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", broker.port)  # the same port: MQTT_URL still holds
        client.disconnect()
        os.kill(broker._proc.pid, signal.SIGKILL)
        broker._proc.wait(5)
        time.sleep(0.1)
        assert not keep_alive(broker, budget), "a broker that keeps dying stops the run"
        assert "too many restarts" in caplog.text
    finally:
        broker.stop()


def test_ctrl_c_stops_the_embedded_services_broker_included(tmp_path):
    import signal

    port = stack.free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in stack.SERVICE_URLS},
        "MATRICLOUD_DATA_DIR": str(tmp_path / "data"),
        "MATRICLOUD_MQTT_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "matricloud", "services"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        while not any("MQTT_URL" in line for line in lines) and proc.poll() is None:
            lines.append(proc.stdout.readline())
        mqtt_url = next((line for line in lines if "MQTT_URL" in line), "".join(lines))
        assert f"127.0.0.1:{port}" in mqtt_url
        assert not stack.port_is_free("127.0.0.1", port)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stack.port_is_free("127.0.0.1", port), "the broker outlived the launcher"
