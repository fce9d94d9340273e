"""The settings a gateway keeps (guide §6.3.2.2) and how a `config` command changes them.

Shape (also what the portal stores in `Gateway.settings`; every key optional in a command):

    {
      "protocols": [{"protocol": "ECH10K-TH-EU", "address": 1}, ...],
      "upload_interval_s": 60,
      "forwarding": "none",                     # none | serial | tcp
      "serial_port": {"port": 0, "baud_rate": 9600, "parity": "none",
                      "stop_bits": 1, "protocol": "ModbusRTU"},
      "tcp_forwarding": {"enabled": false, "port": 502, "protocol": "ModbusTCP"},
      "baud_rate": {"port_type": "RS485", "baud_rate": 9600}
    }

A `config` command may also carry `"restart": false` (the guide's Restart Flag); the default is
a restart, which takes the kit offline for 10–20 s.
"""

from __future__ import annotations

import copy
from typing import Any

from devices.registermap import list_models

BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
PARITIES = ("none", "odd", "even")
FORWARDING = ("none", "serial", "tcp")
SERIAL_PROTOCOLS = ("ModbusRTU", "ModbusASCII", "Transparent")
TCP_PROTOCOLS = ("ModbusTCP", "ModbusRTU", "Transparent")
PORT_TYPES = ("RS485", "RS232")
MIN_INTERVAL_S, MAX_INTERVAL_S = 1, 3600


class ConfigError(ValueError):
    """A config command that cannot be applied; the text says why."""


def default_config(protocols: list[tuple[str, int]], upload_interval_s: int = 60) -> dict:
    return {
        "protocols": [{"protocol": model, "address": address} for model, address in protocols],
        "upload_interval_s": upload_interval_s,
        "forwarding": "none",
        "serial_port": {
            "port": 0,
            "baud_rate": 9600,
            "parity": "none",
            "stop_bits": 1,
            "protocol": "ModbusRTU",
        },
        "tcp_forwarding": {"enabled": False, "port": 502, "protocol": "ModbusTCP"},
        "baud_rate": {"port_type": "RS485", "baud_rate": 9600},
    }


def apply_config(current: dict, params: dict) -> tuple[dict, list[str]]:
    """The new settings and the keys that changed; ConfigError if anything is invalid."""
    new = copy.deepcopy(current)
    known = {"protocols", "upload_interval_s", "forwarding", "serial_port", "tcp_forwarding"}
    known |= {"baud_rate", "restart"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    if "protocols" in params:
        new["protocols"] = _protocols(params["protocols"])
    if "upload_interval_s" in params:
        new["upload_interval_s"] = _int(
            params["upload_interval_s"], "upload_interval_s", MIN_INTERVAL_S, MAX_INTERVAL_S
        )
    if "forwarding" in params:
        if params["forwarding"] not in FORWARDING:
            raise ConfigError(f"forwarding must be one of {', '.join(FORWARDING)}")
        new["forwarding"] = params["forwarding"]
    if "serial_port" in params:
        sp = _object(params["serial_port"], "serial_port", new["serial_port"])
        merged = {**new["serial_port"], **sp}
        _int(merged["port"], "serial_port.port", 0, 15)
        _baud(merged["baud_rate"], "serial_port.baud_rate")
        if merged["parity"] not in PARITIES:
            raise ConfigError(f"serial_port.parity must be one of {', '.join(PARITIES)}")
        _int(merged["stop_bits"], "serial_port.stop_bits", 1, 2)
        _choice(merged["protocol"], "serial_port.protocol", SERIAL_PROTOCOLS)
        new["serial_port"] = merged
    if "tcp_forwarding" in params:
        tf = _object(params["tcp_forwarding"], "tcp_forwarding", new["tcp_forwarding"])
        tf = {**new["tcp_forwarding"], **tf}
        if not isinstance(tf["enabled"], bool):
            raise ConfigError("tcp_forwarding.enabled must be true or false")
        _int(tf["port"], "tcp_forwarding.port", 1, 65535)
        _choice(tf["protocol"], "tcp_forwarding.protocol", TCP_PROTOCOLS)
        new["tcp_forwarding"] = tf
    if "baud_rate" in params:
        br = params["baud_rate"]
        br = (
            {"baud_rate": br} if isinstance(br, int) else _object(br, "baud_rate", new["baud_rate"])
        )
        merged = {**new["baud_rate"], **br}
        _baud(merged["baud_rate"], "baud_rate.baud_rate")
        _choice(merged["port_type"], "baud_rate.port_type", PORT_TYPES)
        new["baud_rate"] = merged
    changed = [k for k in new if new[k] != current.get(k)]
    return new, changed


def _protocols(value: Any) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise ConfigError("protocols must be a non-empty list of {protocol, address}")
    models = {m.upper(): m for m in list_models()}
    out, seen = [], set()
    for entry in value:
        entry = _object(entry, "protocol entry")
        model = str(entry.get("protocol", "")).upper()
        if model not in models:
            raise ConfigError(f"unknown protocol {entry.get('protocol')!r}")
        address = _int(entry.get("address"), "protocol address", 1, 247)
        if address in seen:
            raise ConfigError(f"Modbus address {address} is listed twice")
        seen.add(address)
        out.append({"protocol": models[model], "address": address})
    return out


def _object(value: Any, name: str, known: dict | None = None) -> dict:
    """`value` as a settings object; with `known`, only the keys `known` has."""
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be an object")
    if known is not None:
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s) in {name}: {', '.join(map(str, unknown))}")
    return value


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}")
    return value


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer {lo}..{hi}")
    return value


def _baud(value: Any, name: str) -> int:
    if value not in BAUD_RATES:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, BAUD_RATES))}")
    return value
