"""The simulator's control channel: fault injection and settings from outside the process.

A running fleet (started with control on, the CLI default) subscribes to the MQTT topic
`mcsim/control` on its broker and answers on `mcsim/control/result`. Requests are JSON:

    {"id": "any", "action": "fault",       "inverter": "SN", "code": "Protect0080"}
    {"id": "any", "action": "clear_fault", "inverter": "SN", "code": "Protect0080"}
    {"id": "any", "action": "clear_all",   "inverter": "SN"}
    {"id": "any", "action": "set",         "inverter": "SN", "key": "work_mode", "value": "tou"}
    {"id": "any", "action": "status",      "inverter": "SN"}
    {"id": "any", "action": "reboot",      "gateway": "GWSN"}
    {"id": "any", "action": "ota_fault",   "gateway": "GWSN", "fault": "corrupt_chunk"}
    {"id": "any", "action": "ota_fault",   "gateway": "GWSN", "fault": "power_loss"}
    {"id": "any", "action": "ota_fault",   "gateway": "GWSN", "fault": "offline",
                                           "at_pct": 50, "seconds": 5}
    {"id": "any", "action": "ota_fault",   "inverter": "SN", "fault": "power_loss"}
    {"id": "any", "action": "ota_fault",   "gateway": "GWSN", "fault": null}
    {"id": "any", "action": "ota_status",  "gateway": "GWSN"}

`ota_fault` arms a one-shot failure for the gateway's next firmware job (with `inverter`: the
next job for that inverter; it is armed on the inverter's gateway). `corrupt_chunk` flips a
byte of one received chunk (the SHA-256 check fails, the old firmware keeps running);
`power_loss` cuts the power during the install (the device comes back on the old version and
reports "power lost during install; running <old version>"; a gateway really restarts);
`offline` drops the gateway's connection when it holds `at_pct` % of the image, for `seconds`
(then it reconnects and resumes). `"fault": null` disarms. The result lists what is armed:
`{"gateway": "GWSN", "armed": {"gateway": {"kind": "offline", "at_pct": 50.0, "seconds": 5.0}}}`
(keys: `gateway` or an inverter serial). `ota_status` answers
`{"gateway": "GWSN", "firmware": "10.00", "job": {"job": …, "state": …, "received": n} | null,
"armed": {…}}`; an inverter's `status` carries its `firmware` versions by type.

Results: `{"id": ..., "ok": true, "result": {...}}` or `{"id": ..., "ok": false, "error": "..."}`.
A process that does not hold the inverter stays silent, so several simulators can share a broker.
The topic lies outside the device namespace `mc/v1/…`: it is a test instrument, not part of the
device protocol; on a broker with ACLs give it its own user.

`send_control()` is the client side (`manage.py simulate --fault SN:CODE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from devices.protocol import QOS, BrokerAddress, connect_client, make_client
from devices.registermap import RegisterValueError
from simulator.ota import OtaFault

if TYPE_CHECKING:
    from simulator.fleet import Fleet

CONTROL_TOPIC = "mcsim/control"
RESULT_SUFFIX = "/result"

log = logging.getLogger("simulator.control")


class ControlChannel:
    def __init__(self, fleet: Fleet, *, topic: str | None = None) -> None:
        self.fleet = fleet
        self.topic = topic or CONTROL_TOPIC
        self.client = None

    def start(self) -> None:
        broker = self.fleet.broker
        client_id = f"mcsim-control-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.client = make_client(client_id, broker, persistent=False)
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=QOS)
        self.client.on_message = self._on_message
        assert self.fleet.hub is not None
        self.fleet.hub.attach(self.client)
        try:
            connect_client(self.client, broker, persistent=False)
        except OSError as exc:
            log.warning("control channel not connected: %s", exc)

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            with contextlib.suppress(Exception):
                self.client.loop_write()
            if self.fleet.hub is not None:
                self.fleet.hub.detach(self.client)

    def _on_message(self, client, _userdata, message) -> None:
        try:
            request = json.loads(message.payload)
            if not isinstance(request, dict):
                raise ValueError("a control request is a JSON object")
        except ValueError as exc:
            client.publish(self.topic + RESULT_SUFFIX, json.dumps({"ok": False, "error": str(exc)}))
            return
        result = execute(self.fleet, request)
        if result is None:
            return  # not ours
        result["id"] = request.get("id")
        client.publish(self.topic + RESULT_SUFFIX, json.dumps(result), qos=QOS)


def execute(fleet: Fleet, request: dict) -> dict | None:
    """Carry out one control request; None when this fleet does not hold the device."""
    action = request.get("action")
    if action == "reboot":
        gw = fleet.gateways.get(str(request.get("gateway")))
        if gw is None:
            return None
        asyncio.get_running_loop().create_task(gw.restart())
        return {"ok": True, "result": {"gateway": gw.serial}}
    if action in ("ota_fault", "ota_status"):
        return _ota(fleet, action, request)
    serial = str(request.get("inverter"))
    inverter = fleet.inverters.get(serial)
    if inverter is None:
        return None
    try:
        if action == "fault":
            inverter.inject_fault(str(request.get("code")))
        elif action == "clear_fault":
            inverter.clear_fault(str(request.get("code")))
        elif action == "clear_all":
            for code in list(inverter.physics.injected):
                inverter.clear_fault(code)
        elif action == "set":
            inverter.write(str(request.get("key")), request.get("value"))
        elif action != "status":
            return {"ok": False, "error": f"unknown action {action!r}"}
    except (KeyError, RegisterValueError) as exc:
        message = exc.message if isinstance(exc, RegisterValueError) else str(exc.args[0])
        return {"ok": False, "error": message}
    values = inverter.values()
    faults = sorted(inverter.physics.faults)
    status = {
        "run_status": values.get("run_status"),
        "soc": values.get("batt_soc"),
        "firmware": inverter.firmware_versions(),
    }
    return {"ok": True, "result": {"inverter": serial, "faults": faults, **status}}


def _ota(fleet: Fleet, action: str, request: dict) -> dict | None:
    """Firmware-job failure injection and state (see the module docstring)."""
    inverter_serial = request.get("inverter")
    if inverter_serial is not None:
        gw = next(
            (
                g
                for g in fleet.gateways.values()
                if any(i.serial == inverter_serial for i in g.inverters.values())
            ),
            None,
        )
    else:
        gw = fleet.gateways.get(str(request.get("gateway")))
    if gw is None:
        return None
    if action == "ota_fault":
        try:
            fault = None if request.get("fault") is None else OtaFault.from_request(request)
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        gw.ota.arm(fault, inverter_serial)
    job = gw.ota.job
    result: dict[str, Any] = {
        "gateway": gw.serial,
        "armed": {key: f.to_dict() for key, f in gw.ota.faults.items()},
    }
    if action == "ota_status":
        result["firmware"] = gw.firmware
        result["job"] = (
            None if job is None else {"job": job.id, "state": job.state, "received": job.received}
        )
    return {"ok": True, "result": result}


def send_control(
    mqtt_url: str, request: dict[str, Any], *, topic: str | None = None, timeout: float = 5.0
) -> dict | None:
    """Publish one control request and wait for the first result with its id (None: nobody)."""
    broker = BrokerAddress.from_url(mqtt_url)
    topic = topic or CONTROL_TOPIC
    request = {**request, "id": request.get("id") or uuid.uuid4().hex}
    got: dict = {}
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(_c, _u, message):
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(body, dict) and body.get("id") == request["id"]:
            if body.get("ok") or not got:
                got.update(body)
            if body.get("ok"):
                done.set()

    client = make_client(f"mcsim-ctl-{uuid.uuid4().hex[:8]}", broker, persistent=False)
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(topic + RESULT_SUFFIX, qos=QOS)
    connect_client(client, broker, persistent=False)
    client.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise TimeoutError(f"no subscription on {broker.host}:{broker.port}")
        client.publish(topic, json.dumps(request), qos=QOS)
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            done.wait(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    return got or None
