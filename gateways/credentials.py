"""Broker credentials: one secret per gateway, and the Mosquitto password and ACL files.

A gateway signs in as its serial number with a random secret. We store only a hash in the
format `mosquitto_passwd` 2.x writes (`$7$` = PBKDF2-HMAC-SHA512: `$7$<iterations>$<salt
b64>$<hash b64>`), so the password file is written straight from the database and the
plaintext is shown once, when the gateway is provisioned.

The ACL file gives every gateway its own topics through `pattern` rules with `%u` (Mosquitto
2.0.x substitutes %u in acl_file patterns, not in dynamic-security) and gives each service
account (ingest, the portal backend, the demo's simulator control) its own `user` block. The
embedded broker of `make run` enforces the same two files.

`write_broker_files` is the one writer of both files (`mqtt_credentials write` and the demo
run use it). Gateways always come from the database. Service accounts are the `user` blocks of
the files being replaced: each keeps its hash and its topic rules, so a rewrite never locks out
a client of the running stack; an account is removed only when named in `drop`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from devices.protocol import SERIAL_RE, TOPIC_ROOT, gateway_acl_patterns

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
PASSWORD_HEADER = (
    "# Written by `manage.py mqtt_credentials write` from the database and the ACL file."
)
ACL_HEADER = (
    "# Written by `manage.py mqtt_credentials write`: `user` blocks (service accounts) are\n"
    "# kept with their rules until dropped (--drop-service NAME); the rest is rewritten."
)
ACCESS = ("read", "write", "readwrite", "deny")


class BrokerFilesError(ValueError):
    """The files cannot be written as asked; the message says why and what to do."""


@dataclass(frozen=True)
class ServiceAccount:
    """A backend client (ingest, web, worker) with access to every gateway's topics."""

    username: str
    password: str = field(repr=False)
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
            raise BrokerFilesError("a service account is given as user:password")
        _check_username(user)
        return cls(user, password)

    def entry(self) -> ServiceEntry:
        return ServiceEntry(self.username, mosquitto_hash(self.password), self.rules())

    def rules(self) -> tuple[tuple[str, str], ...]:
        return ((self.access, self.topic),)


@dataclass(frozen=True)
class ServiceEntry:
    """A service account as the files hold it: its password hash and its topic rules."""

    username: str
    password_hash: str = field(repr=False)
    rules: tuple[tuple[str, str], ...] = ()  # (access, topic filter) as in `topic` lines


@dataclass(frozen=True)
class WrittenFiles:
    users: int  # lines of the password file
    service_accounts: tuple[str, ...]
    dropped: tuple[str, ...]  # service accounts removed on request
    removed: tuple[str, ...]  # other users of the old password file: gone from the database


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
    service_accounts: Iterable[ServiceAccount | ServiceEntry] = (),
    gateways: Iterable[Gateway] | None = None,
) -> str:
    """`username:hash` lines for every service account and every provisioned gateway."""
    lines = [PASSWORD_HEADER]
    for entry in _entries(service_accounts):
        lines.append(f"{entry.username}:{entry.password_hash}")
    if gateways is None:
        from gateways.models import Gateway

        gateways = Gateway.objects.exclude(mqtt_password_hash="").order_by("serial_number")
    for gw in gateways:
        if gw.mqtt_password_hash:
            lines.append(f"{gw.mqtt_username}:{gw.mqtt_password_hash}")
    return "\n".join(lines) + "\n"


def acl_file_text(service_accounts: Iterable[ServiceAccount | ServiceEntry] = ()) -> str:
    """Service accounts get their own rules; every other user only its own gateway topics."""
    lines = [ACL_HEADER, ""]
    for entry in _entries(service_accounts):
        lines.append(f"user {entry.username}")
        lines += [f"topic {access} {topic}" for access, topic in entry.rules]
        lines.append("")
    lines.append("# Every gateway signs in as its serial number (%u) and may use only its topics.")
    lines += [f"pattern {access} {pattern}" for access, pattern in gateway_acl_patterns()]
    return "\n".join(lines) + "\n"


def read_service_accounts(password_file: Path | str, acl_file: Path | str) -> list[ServiceEntry]:
    """The service accounts of existing files: every `user` block of the ACL file that has a
    line in the password file, with its hash and its `topic` rules. Missing files hold none."""
    hashes = {}
    for line in _read(Path(password_file)).splitlines():
        user, sep, hashed = line.strip().partition(":")
        if sep and not user.startswith("#"):
            hashes[user] = hashed
    rules: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None  # rules before any `user` line: anonymous
    for line in _read(Path(acl_file)).splitlines():
        word, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if word == "user":
            current = rules.setdefault(rest, [])
        elif word == "topic" and current is not None:
            access, _, topic = rest.partition(" ")
            if access not in ACCESS:  # Mosquitto reads "topic <filter>" as readwrite
                access, topic = "readwrite", rest
            current.append((access, topic.strip()))
    return [
        ServiceEntry(user, hashes[user], tuple(user_rules))
        for user, user_rules in rules.items()
        if user in hashes
    ]


def write_broker_files(
    password_file: Path | str,
    acl_file: Path | str,
    service_accounts: Iterable[ServiceAccount] = (),
    *,
    drop: Iterable[str] = (),
) -> WrittenFiles:
    """Rewrite both files: every provisioned gateway from the database, the service accounts
    of the files being replaced (minus `drop`) and `service_accounts`.

    A given account that already exists keeps its rules and gains the given one; its hash
    changes only when the password does. Both files are written atomically (readers never
    see half a file). Raises BrokerFilesError when the files would be wrong.
    """
    from gateways.models import Gateway

    password_file, acl_file = Path(password_file), Path(acl_file)
    given = _unique(service_accounts)
    drop = set(drop)
    kept = {e.username: e for e in read_service_accounts(password_file, acl_file)}
    for name in sorted(drop):
        if name in given:
            raise BrokerFilesError(f"service account {name!r} is both given and to be dropped")
        if name not in kept:
            known = ", ".join(sorted(kept)) or "none"
            raise BrokerFilesError(
                f"no service account {name!r} in {acl_file} to drop (there are: {known})"
            )
    entries = [e for name, e in kept.items() if name not in drop]
    entries = [_merge(e, given.pop(e.username)) if e.username in given else e for e in entries]
    entries += [account.entry() for account in given.values()]

    gateways = list(Gateway.objects.exclude(mqtt_password_hash="").order_by("serial_number"))
    names = [e.username for e in entries]
    clashes = sorted(
        Gateway.objects.filter(serial_number__in=names).values_list("serial_number", flat=True)
    )
    if clashes:
        raise BrokerFilesError(
            f"service account(s) {', '.join(clashes)} have the name of a gateway: a gateway "
            "would sign in with a service account's rights. Rename the account, or drop it "
            "(--drop-service NAME)"
        )
    old_users = set(_password_users(password_file))
    passwords = password_file_text(entries, gateways)
    _atomic_write_all({password_file: passwords, acl_file: acl_file_text(entries)})
    now = {line.split(":", 1)[0] for line in passwords.splitlines()[1:]}
    return WrittenFiles(
        users=len(now),
        service_accounts=tuple(names),
        dropped=tuple(sorted(drop)),
        removed=tuple(sorted(old_users - now - drop)),
    )


def reload_mosquitto(pid: int) -> None:
    """SIGHUP: Mosquitto re-reads password_file and acl_file, clients stay connected."""
    os.kill(pid, signal.SIGHUP)


def _entries(accounts: Iterable[ServiceAccount | ServiceEntry]) -> list[ServiceEntry]:
    entries = [a.entry() if isinstance(a, ServiceAccount) else a for a in accounts]
    for entry in entries:
        _check_username(entry.username)
    return entries


def _unique(accounts: Iterable[ServiceAccount]) -> dict[str, ServiceAccount]:
    """By name; the same name twice is fine only with the same password and rights."""
    out: dict[str, ServiceAccount] = {}
    for account in accounts:
        _check_username(account.username)
        if not account.password:
            raise BrokerFilesError(f"service account {account.username!r} has no password")
        seen = out.setdefault(account.username, account)
        if seen != account:
            raise BrokerFilesError(
                f"service account {account.username!r} is given twice with different "
                "passwords or rights (with --service and as the user of MQTT_URL?)"
            )
    return out


def _merge(existing: ServiceEntry, account: ServiceAccount) -> ServiceEntry:
    """Rights only grow (the running stack may rely on them); the hash follows the password."""
    hashed = existing.password_hash
    if not verify_mosquitto_hash(account.password, hashed):
        hashed = mosquitto_hash(account.password)
    rules = list(existing.rules)
    for rule in account.rules():
        if not any(_covers(old, rule) for old in rules):
            rules.append(rule)
    return ServiceEntry(existing.username, hashed, tuple(rules))


def _covers(outer: tuple[str, str], inner: tuple[str, str]) -> bool:
    """Conservative: equal filters, or a `…/#` prefix (anything else adds a redundant line)."""
    grants = {"read": {"read"}, "write": {"write"}, "readwrite": {"read", "write"}}
    if outer[0] == "deny" or not grants.get(inner[0], {"deny"}) <= grants[outer[0]]:
        return False
    topic, other = outer[1], inner[1]
    return topic == other or (topic.endswith("#") and other.startswith(topic[:-1]))


def _check_username(name: str) -> None:
    if not name or any(c in name for c in ":\n\r #") or name.startswith("$"):
        raise BrokerFilesError(f"{name!r} cannot be a broker username")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeError) as exc:
        raise BrokerFilesError(
            f"cannot read {path} ({exc}): its service accounts would be lost. "
            "Fix the file or its permissions, or pass another path"
        ) from exc


def _password_users(path: Path) -> list[str]:
    return [
        line.split(":", 1)[0]
        for line in _read(path).splitlines()
        if ":" in line and not line.startswith("#")
    ]


def _atomic_write_all(files: dict[Path, str]) -> None:
    """Every file to a temporary name first, then renamed: a full disk changes nothing."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            staged.append((_stage(path, text), path))
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def _stage(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # Readable by the broker's group, not by everyone (hashes are still secrets).
        os.chmod(tmp, 0o640)
        _keep_group(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _keep_group(tmp: Path, path: Path) -> None:
    """The broker reads the file through its group: the new file keeps the old one's."""
    try:
        gid = path.stat().st_gid
    except FileNotFoundError:
        return  # a new file: the directory's group (set-group-ID directories pass theirs on)
    if tmp.stat().st_gid != gid:
        try:
            os.chown(tmp, -1, gid)
        except OSError as exc:
            raise BrokerFilesError(
                f"cannot give the new {path.name} the group of the old one ({gid}): {exc}. "
                "The broker could not read it; run as a member of that group"
            ) from exc
