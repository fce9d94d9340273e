"""Running remote operations: publish the checked command, wait for the reply, record it.

The record is the queue: `queued → sent → succeeded | failed | expired`, and every change of
state is one conditional UPDATE (`WHERE state = …`), so a late or repeated reply, a second
worker or a re-delivered task changes nothing. A worker waits a short while for the reply on its
own MQTT session; whatever it does not see (it died, the gateway answered late) is finished by
the sweep from the reply ingest stored, or expired at the deadline.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from devices import modbus_frames, protocol
from devices.registermap import RegisterMap, display_value
from gateways.models import Gateway, GatewayStatus
from inverters.models import GatewayReply
from maintenance.models import OperationKind, OperationState, RemoteOperation

log = logging.getLogger("maintenance.dispatch")

Q = OperationState
# Operations whose reply carries the settings the gateway runs with: they become
# `Gateway.settings`, so the portal shows what the gateway reported, not what was sent.
SETTINGS_KINDS = (OperationKind.GATEWAY_CONFIG, OperationKind.GATEWAY_READ)


# --- the worker's MQTT session ----------------------------------------------------------------


class ReplyWaiter:
    """One MQTT session per worker process: publishes commands and hands each reply to the
    caller waiting for its id. Subscribed to every gateway's reply topic before the first
    command leaves, so no answer can overtake the subscription."""

    def __init__(self, broker: protocol.BrokerAddress) -> None:
        self.broker = broker
        client_id = f"mc-worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.client = protocol.make_client(client_id[:64], broker, persistent=False)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list]] = {}
        protocol.connect_client(self.client, broker, persistent=False)
        self.client.loop_start()
        if not self._ready.wait(10):
            self.close()
            raise ConnectionError(f"MQTT broker {broker.host}:{broker.port} did not answer")

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(f"{protocol.TOPIC_ROOT}/+/{protocol.REPLY}", qos=protocol.QOS)

    def _on_subscribe(self, _client, _userdata, _mid, _reason_codes, _properties) -> None:
        self._ready.set()

    def _on_message(self, _client, _userdata, message) -> None:
        try:
            reply = protocol.Reply.decode(message.payload)
        except protocol.ProtocolError:
            return  # ingest counts and stores bad replies
        with self._lock:
            slot = self._waiting.get(reply.id)
        if slot is not None:
            slot[1].append(reply)
            slot[0].set()

    def send(self, serial: str, command: protocol.Command) -> threading.Event:
        """Publish `command`; the returned event is set when its reply arrives."""
        event: threading.Event = threading.Event()
        with self._lock:
            self._waiting[command.id] = (event, [])
        # No wait for the PUBACK: the reply is the acknowledgement that matters, and a command
        # the broker never took ends expired like any other unanswered one.
        self.client.publish(
            protocol.topic(serial, protocol.CMD), command.encode(), qos=protocol.QOS
        )
        return event

    def take(self, command_id: str) -> protocol.Reply | None:
        with self._lock:
            slot = self._waiting.pop(command_id, None)
        return slot[1][0] if slot and slot[1] else None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


_waiter: ReplyWaiter | None = None
_waiter_pid: int | None = None
_waiter_lock = threading.Lock()


def reply_waiter() -> ReplyWaiter:
    """This process's session (a forked worker child opens its own)."""
    global _waiter, _waiter_pid
    with _waiter_lock:
        if _waiter is None or _waiter_pid != os.getpid():
            _waiter = ReplyWaiter(protocol.BrokerAddress.from_url(settings.MQTT_URL))
            _waiter_pid = os.getpid()
        return _waiter


def close_reply_waiter() -> None:
    global _waiter
    with _waiter_lock:
        if _waiter is not None and _waiter_pid == os.getpid():
            _waiter.close()
        _waiter = None


# --- state changes ----------------------------------------------------------------------------


def execute(operation_id: int) -> str:
    """Send a queued operation if its gateway is online, then wait briefly for the answer.

    Returns what happened: `sent`, `finished`, `waiting` (gateway offline, or the broker out of
    reach: stays queued for the sweep), `expired`, or `skipped` (not queued any more, or another
    worker has it).
    """
    try:
        waiter = reply_waiter()  # before the claim: a broker outage leaves the row queued
    except OSError as exc:
        log.warning("operation %s stays queued: MQTT broker unreachable (%s)", operation_id, exc)
        return "waiting"
    operation = _claim(operation_id)
    if operation is None:
        return _not_claimed(operation_id)
    command = protocol.Command(
        op=operation.command["op"],
        params=operation.command["params"],
        deadline_ms=int(operation.deadline.timestamp() * 1000),
        id=operation.command_id,
    )
    arrived = waiter.send(operation.gateway_serial, command)
    wait_s = min(
        settings.REMOTE_OPERATION_REPLY_WAIT_S,
        (operation.deadline - timezone.now()).total_seconds(),
    )
    arrived.wait(max(wait_s, 0))
    reply = waiter.take(operation.command_id)
    if reply is None:
        return "sent"  # the sweep finishes it from the stored reply, or expires it
    complete(operation, reply)
    return "finished"


def _claim(operation_id: int) -> RemoteOperation | None:
    """queued → sent in one statement, if the gateway is online and the deadline ahead."""
    claimed = list(
        RemoteOperation.objects.raw(
            "UPDATE gateways_remoteoperation o SET state = %s, sent_at = now() "
            "FROM gateways_gateway g WHERE o.id = %s AND o.state = %s AND o.deadline > now() "
            "AND g.id = o.gateway_id AND g.status = %s "
            "RETURNING o.*, g.serial_number AS gateway_serial",
            [Q.SENT, operation_id, Q.QUEUED, GatewayStatus.ONLINE],
        )
    )
    return claimed[0] if claimed else None


def _not_claimed(operation_id: int) -> str:
    operation = RemoteOperation.objects.filter(pk=operation_id).select_related("gateway").first()
    if operation is None or operation.state != Q.QUEUED:
        return "skipped"
    if operation.deadline <= timezone.now():
        _finish(operation, Q.EXPIRED, _("The gateway stayed offline until the deadline."))
        return "expired"
    return "waiting"  # the sweep dispatches it again once the gateway is online


def complete(operation: RemoteOperation, reply: protocol.Reply) -> bool:
    """Record the outcome of `reply`; False (and no change) unless the operation was `sent`."""
    outcome = _outcome(operation, reply)
    now = timezone.now()
    finished = RemoteOperation.objects.filter(pk=operation.pk, state=Q.SENT)
    if operation.kind not in SETTINGS_KINDS or outcome["state"] != Q.SUCCEEDED:
        return bool(finished.update(finished_at=now, **outcome))
    # The gateway's new settings and the record change together.
    with transaction.atomic():
        if not finished.update(finished_at=now, **outcome):
            return False
        settings_now = outcome["after"].get("settings") or {}
        updates: dict[str, Any] = {"settings": settings_now}
        if "upload_interval_s" in settings_now:
            updates["upload_interval_s"] = settings_now["upload_interval_s"]
        Gateway.objects.filter(pk=operation.gateway_id).update(**updates)
    return True


def _finish(operation: RemoteOperation, state: str, error: str) -> bool:
    changed = RemoteOperation.objects.filter(pk=operation.pk, state=operation.state).update(
        state=state, error=error[:500], finished_at=timezone.now()
    )
    return bool(changed)


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Beat, every few seconds: finish `sent` operations from replies ingest stored, expire
    what passed its deadline (sending what is ready is the task's part: `ready_to_send`)."""
    now = now or timezone.now()
    counts = {"completed": 0, "expired": 0}
    answered = RemoteOperation.objects.filter(state=Q.SENT).filter(
        Exists(
            GatewayReply.objects.filter(
                gateway_id=OuterRef("gateway_id"), command_id=OuterRef("command_id")
            )
        )
    )
    for operation in answered:
        stored = GatewayReply.objects.filter(
            gateway_id=operation.gateway_id, command_id=operation.command_id
        ).first()
        if stored is None:
            continue
        reply = protocol.Reply(stored.command_id, stored.ok, stored.result, stored.error or None)
        counts["completed"] += complete(operation, reply)
        GatewayReply.objects.filter(pk=stored.pk).update(consumed_at=now)
    counts["expired"] += RemoteOperation.objects.filter(state=Q.SENT, deadline__lte=now).update(
        state=Q.EXPIRED,
        error=_("No answer from the gateway before the deadline."),
        finished_at=now,
    )
    counts["expired"] += RemoteOperation.objects.filter(state=Q.QUEUED, deadline__lte=now).update(
        state=Q.EXPIRED,
        error=_("The gateway stayed offline until the deadline."),
        finished_at=now,
    )
    return counts


def ready_to_send(gateway_ids: list[int] | None = None, limit: int = 1000) -> list[int]:
    """Queued operations, before their deadline, whose gateway is online (or one of
    `gateway_ids`, which just announced themselves): what a worker should send now."""
    waiting = RemoteOperation.objects.filter(
        state=OperationState.QUEUED, deadline__gt=timezone.now()
    )
    if gateway_ids is None:
        waiting = waiting.filter(gateway__status=GatewayStatus.ONLINE)
    else:
        waiting = waiting.filter(gateway_id__in=gateway_ids)
    return list(waiting.values_list("pk", flat=True)[:limit])


# --- reading the answer -----------------------------------------------------------------------


def _outcome(operation: RemoteOperation, reply: protocol.Reply) -> dict[str, Any]:
    """Fields of the finished record: state, error, before/after, result."""
    fields: dict[str, Any] = {
        "state": Q.SUCCEEDED,
        "error": "",
        "before": operation.before,
        "after": operation.after,
        "result": reply.result,
    }
    if not reply.ok:
        if reply.error == "expired":
            fields.update(
                state=Q.EXPIRED, error=_("The gateway received the command after its deadline.")
            )
        else:
            fields.update(
                state=Q.FAILED,
                error=(_("Gateway error: %(error)s") % {"error": reply.error or "?"})[:500],
            )
        return fields
    try:
        if operation.command.get("op") == "modbus":
            fields.update(_modbus_outcome(operation, reply.result))
        elif operation.kind in SETTINGS_KINDS:
            new_settings = reply.result.get("settings")
            if not isinstance(new_settings, dict):
                raise ValueError("config reply without settings")
            fields["after"] = {"settings": new_settings}
    except Exception:  # a malformed answer costs this operation, never the worker
        log.exception("cannot read the reply to operation %s", operation.pk)
        fields.update(state=Q.FAILED, error=_("The gateway's answer does not match the command."))
    return fields


def _modbus_outcome(operation: RemoteOperation, result: dict) -> dict[str, Any]:
    command = operation.command
    steps = command["steps"]
    requests = command["params"]["frames"]
    answers = result.get("frames")
    device_id = command.get("device_id")
    out: dict[str, Any] = {"result": {}}
    if not isinstance(answers, list) or len(answers) != len(steps):
        out.update(state=Q.FAILED, error=_("The gateway's answer does not match the command."))
        return out
    rm = RegisterMap.for_model(command["model"])
    values: dict[str, dict[str, dict]] = {"read": {}, "before": {}, "after": {}}
    words_after: dict[str, list[int]] = {}
    errors: list[str] = []
    for step, request_b64, answer in zip(steps, requests, answers, strict=True):
        registers, error = _parse(step, request_b64, answer, device_id, rm)
        if error:
            errors.append(error)
            continue
        if step["role"] == "write":
            continue
        for key in step["keys"]:
            p = rm.point(key)
            offset = p.address - step["address"]
            words = list(registers[offset : offset + p.n_registers])
            value = rm.decode_point(key, words)
            values[step["role"]][key] = {
                "name": p.name,
                "address": p.display_address,
                "value": value,
                "unit": p.unit,
                "display": display_value(rm, key, value),
            }
            if step["role"] == "after":
                words_after[key] = words
    if operation.kind == OperationKind.READ:
        out["result"] = {"values": values["read"]}
    else:
        out["before"] = {"values": values["before"]}
        out["after"] = {"values": values["after"]}
        if not errors:
            for key, expected in command.get("expected", {}).items():
                if words_after.get(key) != expected:
                    p = rm.point(key)
                    shown = values["after"].get(key, {}).get("display", "?")
                    errors.append(
                        _("Read-back of %(name)s shows %(value)s, not the value written.")
                        % {"name": p.name, "value": shown}
                    )
    if errors:
        out.update(state=Q.FAILED, error=" ".join(dict.fromkeys(errors))[:500])
    return out


def _parse(
    step: dict, request_b64: str, answer: Any, device_id: int, rm: RegisterMap
) -> tuple[tuple[int, ...], str]:
    """The registers of one transaction's answer, or the reason there are none."""
    if not isinstance(answer, dict):
        return (), _("The gateway's answer does not match the command.")
    if "error" in answer:
        return (), _("No answer from the inverter at address %(address)s: %(error)s") % {
            "address": device_id,
            "error": str(answer["error"])[:200],
        }
    try:
        frame = base64.b64decode(str(answer.get("frame", "")), validate=True)
        parsed = modbus_frames.parse_response(frame, base64.b64decode(request_b64))
    except (binascii.Error, ValueError) as exc:
        return (), _("Invalid answer from the inverter: %(reason)s") % {"reason": exc}
    if parsed.is_exception:
        names = ", ".join(rm.point(k).name for k in step["keys"])
        if step["role"] == "write":
            text = _("The inverter refused the write of %(names)s: %(exception)s")
        else:
            text = _("The inverter refused the read of %(names)s: %(exception)s")
        return (), text % {"names": names, "exception": parsed.exception_name}
    if step["role"] != "write" and len(parsed.registers) != step["count"]:
        return (), _("The inverter answered %(got)d registers instead of %(want)d.") % {
            "got": len(parsed.registers),
            "want": step["count"],
        }
    return parsed.registers, ""


def wait_until_finished(operation: RemoteOperation, timeout: float = 30) -> RemoteOperation:
    """Poll the record until it leaves queued/sent (scripts and benchmarks)."""
    end = time.monotonic() + timeout
    while True:
        operation.refresh_from_db()
        if operation.is_finished or time.monotonic() > end:
            return operation
        time.sleep(0.005)
