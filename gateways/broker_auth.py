"""amqtt plugins that enforce the Mosquitto password and ACL files (the embedded broker).

The demo run (`make run`) uses amqtt instead of Mosquitto. These plugins read the very files
`gateways.credentials.write_broker_files` writes for Mosquitto, so a gateway's credentials and
topic rights are the same on both brokers:

    from gateways.broker_auth import plugin_config
    Broker({"listeners": {...}, "plugins": plugin_config(password_file, acl_file)})

Supported ACL syntax is what we write (and Mosquitto 2.0 reads): `user <name>`, `topic
[read|write|readwrite|deny] <filter>` (for that user; before any `user` line: anonymous
clients), `pattern [...] <filter>` with %u (username) and %c (client id) for every client.
`deny` wins. Both files are re-read when they change on disk (Mosquitto needs a SIGHUP).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from gateways.credentials import verify_mosquitto_hash

logger = logging.getLogger(__name__)

READ, WRITE = "read", "write"
_ACCESS = {"read": {READ}, "write": {WRITE}, "readwrite": {READ, WRITE}, "deny": set()}


def plugin_config(password_file: str | Path, acl_file: str | Path) -> dict[str, dict[str, Any]]:
    """The `plugins` section of an amqtt broker config using both files."""
    return {
        f"{__name__}.PasswordFileAuthPlugin": {"password_file": str(password_file)},
        f"{__name__}.AclFileTopicPlugin": {"acl_file": str(acl_file)},
    }


class _Reloading:
    """A file parsed again whenever its mtime or size changes."""

    def __init__(self, path: str, parse) -> None:
        self.path = path
        self.parse = parse
        self._stamp: tuple[float, int] | None = None
        self.value = parse("")

    def get(self):
        try:
            st = os.stat(self.path)
        except OSError:
            logger.warning("cannot read %s: every client is refused", self.path)
            self._stamp, self.value = None, self.parse("")
            return self.value
        stamp = (st.st_mtime, st.st_size)
        if stamp != self._stamp:
            self.value = self.parse(Path(self.path).read_text(encoding="utf-8"))
            self._stamp = stamp
        return self.value


def parse_password_file(text: str) -> dict[str, str]:
    users = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            user, hashed = line.split(":", 1)
            users[user] = hashed
    return users


@dataclass
class Rule:
    access: set[str]
    topic: str
    deny: bool = False


@dataclass
class AclRules:
    anonymous: list[Rule] = field(default_factory=list)
    users: dict[str, list[Rule]] = field(default_factory=dict)
    patterns: list[Rule] = field(default_factory=list)

    def rules_for(self, username: str | None, client_id: str | None) -> list[Rule]:
        own = self.users.get(username, []) if username else self.anonymous
        out = list(own)
        for rule in self.patterns:
            topic = _substitute(rule.topic, username, client_id)
            if topic is not None:
                out.append(Rule(rule.access, topic, rule.deny))
        return out

    def allows(self, username, client_id, topic: str, access: str) -> bool:
        """A publish (write) to, or delivery (read) of, a concrete topic."""
        rules = self.rules_for(username, client_id)
        if any(r.deny and topic_matches(r.topic, topic) for r in rules):
            return False
        return any(access in r.access and topic_matches(r.topic, topic) for r in rules)

    def allows_subscription(self, username, client_id, topic_filter: str) -> bool:
        """Only filters inside a readable filter: no wildcard reaches another gateway."""
        topic_filter = _strip_share(topic_filter)
        rules = self.rules_for(username, client_id)
        if any(r.deny and filters_overlap(r.topic, topic_filter) for r in rules):
            return False
        return any(READ in r.access and filter_covers(r.topic, topic_filter) for r in rules)


def parse_acl_file(text: str) -> AclRules:
    rules = AclRules()
    current: list[Rule] = rules.anonymous
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word == "user":
            current = rules.users.setdefault(rest, [])
        elif word in ("topic", "pattern"):
            access, _, topic = rest.partition(" ")
            if access not in _ACCESS:  # "topic <filter>" means readwrite
                access, topic = "readwrite", rest
            rule = Rule(_ACCESS[access], topic.strip(), deny=access == "deny")
            (rules.patterns if word == "pattern" else current).append(rule)
        else:
            logger.warning("ignoring ACL line %r", raw)
    return rules


def _strip_share(topic_filter: str) -> str:
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        return parts[2] if len(parts) == 3 else ""
    return topic_filter


def _substitute(topic: str, username: str | None, client_id: str | None) -> str | None:
    """%u/%c stand for a whole level; a rule naming an absent value applies to no one."""
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if level == "%u":
            if not username or any(c in username for c in "/+#"):
                return None
            levels[i] = username
        elif level == "%c":
            if not client_id or any(c in client_id for c in "/+#"):
                return None
            levels[i] = client_id
    return "/".join(levels)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching of a concrete topic against a filter."""
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def filter_covers(outer: str, inner: str) -> bool:
    """Every topic `inner` can match is matched by `outer`."""
    o, n = outer.split("/"), inner.split("/")
    for i, level in enumerate(o):
        if level == "#":
            return True
        if i >= len(n):
            return False
        if n[i] == "#":
            return False
        if level == "+":
            continue
        if n[i] == "+" or n[i] != level:
            return False
    return len(o) == len(n)


def filters_overlap(a: str, b: str) -> bool:
    """Some topic matches both filters."""
    x, y = a.split("/"), b.split("/")
    for i in range(max(len(x), len(y))):
        p = x[i] if i < len(x) else None
        q = y[i] if i < len(y) else None
        if p == "#" or q == "#":
            return True
        if p is None or q is None:
            return False
        if p != "+" and q != "+" and p != q:
            return False
    return True


class PasswordFileAuthPlugin(BaseAuthPlugin):
    """CONNECT with a username and password that the Mosquitto password file accepts."""

    @dataclass
    class Config:
        password_file: str = ""
        allow_anonymous: bool = False

    def __init__(self, context) -> None:
        super().__init__(context)
        self._users = _Reloading(self.config.password_file, parse_password_file)

    async def authenticate(self, *, session) -> bool:
        if session is None:
            return False
        if not session.username:
            return bool(self.config.allow_anonymous)
        hashed = self._users.get().get(session.username)
        ok = hashed is not None and verify_mosquitto_hash(session.password or "", hashed)
        if not ok:
            logger.info("refused MQTT login of %r", session.username)
        return ok


class AclFileTopicPlugin(BaseTopicPlugin):
    """Publish, subscribe and delivery checked against the Mosquitto ACL file."""

    @dataclass
    class Config:
        acl_file: str = ""

    def __init__(self, context) -> None:
        super().__init__(context)
        self._rules = _Reloading(self.config.acl_file, parse_acl_file)

    async def topic_filtering(self, *, session=None, topic=None, action=None) -> bool:
        if not topic:
            return False
        rules: AclRules = self._rules.get()
        username = getattr(session, "username", None)
        client_id = getattr(session, "client_id", None)
        if action == Action.SUBSCRIBE:
            return rules.allows_subscription(username, client_id, topic)
        access = WRITE if action == Action.PUBLISH else READ
        return rules.allows(username, client_id, topic, access)
