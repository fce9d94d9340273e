"""Broker credentials: one secret per gateway, and the Mosquitto password and ACL files.

A gateway signs in as its serial number with a random secret. We store only a hash in the
format `mosquitto_passwd` 2.x writes (`$7$` = PBKDF2-HMAC-SHA512: `$7$<iterations>$<salt
b64>$<hash b64>`), so the password file is written straight from the database and the
plaintext is shown once, when the gateway is provisioned.

The ACL file gives every gateway its own topics through `pattern` rules with `%u` (Mosquitto
2.0.x substitutes %u in acl_file patterns, not in dynamic-security) and gives the service
accounts (ingest, the portal backend) readwrite on the whole namespace. The embedded amqtt
broker enforces the same two files through `gateways.broker_auth`.

After writing the files, send SIGHUP to Mosquitto (`mqtt_credentials write --sighup PID`): it
re-reads both without dropping connections.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import signal
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from gateways.protocol import SERIAL_RE, TOPIC_ROOT, gateway_acl_patterns

if TYPE_CHECKING:
    from gateways.models import Gateway

# Django models are imported inside the functions that need them: the embedded broker's
# plugins (gateways.broker_auth) verify hashes with this module without setting Django up.

HASH_PREFIX = "$7$"
# mosquitto_passwd 2.0 writes 101 iterations. The secrets are 192 random bits, so stretching
# would only cost broker CPU when thousands of gateways reconnect at once.
HASH_ITERATIONS = 101
SALT_BYTES = 12
SECRET_BYTES = 24


@dataclass(frozen=True)
class ServiceAccount:
    """A backend client (ingest, web, worker) with access to every gateway's topics."""

    username: str
    password: str
    topic: str = f"{TOPIC_ROOT}/#"
    access: str = "readwrite"

    @classmethod
    def from_url(cls, url: str) -> ServiceAccount | None:
        """The user:password of an MQTT URL such as settings.MQTT_URL (None if anonymous)."""
        parsed = urlparse(url)
        if not parsed.username:
            return None
        return cls(unquote(parsed.username), unquote(parsed.password or ""))

    @classmethod
    def parse(cls, text: str) -> ServiceAccount:
        """`user:password` from the command line."""
        user, sep, password = text.partition(":")
        if not sep or not user or not password:
            raise ValueError("a service account is given as user:password")
        return cls(user, password)


def generate_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def mosquitto_hash(
    password: str, *, salt: bytes | None = None, iterations: int = HASH_ITERATIONS
) -> str:
    """A password-file hash exactly as `mosquitto_passwd` 2.x writes it."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return (
        f"{HASH_PREFIX}{iterations}${base64.b64encode(salt).decode()}$"
        f"{base64.b64encode(digest).decode()}"
    )


def verify_mosquitto_hash(password: str, encoded: str) -> bool:
    """Check a password against a `$7$` hash (what Mosquitto does on CONNECT)."""
    try:
        _, kind, iterations, salt_b64, digest_b64 = encoded.split("$")
        if kind != "7":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(digest_b64, validate=True)
        rounds = int(iterations)
    except (ValueError, TypeError):
        return False
    if not 1 <= rounds <= 10_000_000:
        return False
    actual = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds, len(expected))
    return hmac.compare_digest(actual, expected)


def provision_gateway(gateway: Gateway) -> str:
    """Give a gateway a new secret; returns the plaintext, which is not stored anywhere.

    The old secret stops working once the password file is rewritten and Mosquitto reloaded.
    """
    from gateways.models import Gateway

    if not SERIAL_RE.match(gateway.serial_number):
        raise ValueError(f"{gateway.serial_number!r} cannot be an MQTT username")
    secret = generate_secret()
    hashed = mosquitto_hash(secret)
    Gateway.objects.filter(pk=gateway.pk).update(mqtt_password_hash=hashed)
    gateway.mqtt_password_hash = hashed
    return secret


def password_file_text(
    service_accounts: Iterable[ServiceAccount] = (), gateways: Iterable[Gateway] | None = None
) -> str:
    """`username:hash` lines for every provisioned gateway and every service account."""
    lines = ["# Written by `manage.py mqtt_credentials write`; edits are overwritten."]
    seen: set[str] = set()
    for account in service_accounts:
        _check_username(account.username)
        lines.append(f"{account.username}:{mosquitto_hash(account.password)}")
        seen.add(account.username)
    if gateways is None:
        from gateways.models import Gateway

        gateways = Gateway.objects.exclude(mqtt_password_hash="").order_by("serial_number")
    rows = gateways
    for gw in rows:
        if gw.mqtt_password_hash and gw.serial_number not in seen:
            lines.append(f"{gw.mqtt_username}:{gw.mqtt_password_hash}")
    return "\n".join(lines) + "\n"


def acl_file_text(service_accounts: Iterable[ServiceAccount] = ()) -> str:
    """Service accounts get the namespace; every other user only its own gateway topics."""
    lines = ["# Written by `manage.py mqtt_credentials write`; edits are overwritten.", ""]
    for account in service_accounts:
        _check_username(account.username)
        lines += [f"user {account.username}", f"topic {account.access} {account.topic}", ""]
    lines.append("# Every gateway signs in as its serial number (%u) and may use only its topics.")
    lines += [f"pattern {access} {pattern}" for access, pattern in gateway_acl_patterns()]
    return "\n".join(lines) + "\n"


def write_broker_files(
    password_file: Path | str,
    acl_file: Path | str,
    service_accounts: Iterable[ServiceAccount] = (),
) -> int:
    """Write both files atomically (readers never see half a file); returns the user count."""
    accounts = list(service_accounts)
    passwords = password_file_text(accounts)
    _atomic_write(Path(password_file), passwords)
    _atomic_write(Path(acl_file), acl_file_text(accounts))
    return sum(1 for line in passwords.splitlines() if line and not line.startswith("#"))


def reload_mosquitto(pid: int) -> None:
    """SIGHUP: Mosquitto re-reads password_file and acl_file, clients stay connected."""
    os.kill(pid, signal.SIGHUP)


def _check_username(name: str) -> None:
    if not name or any(c in name for c in ":\n\r #") or name.startswith("$"):
        raise ValueError(f"{name!r} cannot be a broker username")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # Readable by the broker's group, not by everyone (hashes are still secrets).
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
