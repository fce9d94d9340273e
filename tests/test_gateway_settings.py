"""Gateway settings (guide §6.3.2.2): what a `config` command may change, and the reasons it
gives when it may not. The portal checks with this before sending; the simulated gateway
applies the same rules."""

from __future__ import annotations

import pytest

from devices.gateway_settings import ConfigError, apply_config, default_config

CURRENT = default_config([("ECH10K-TH-EU", 1)], upload_interval_s=60)


def test_a_change_reports_only_the_keys_that_changed():
    new, changed = apply_config(
        CURRENT,
        {
            "upload_interval_s": 300,
            "serial_port": {"baud_rate": 19200, "parity": "even", "protocol": "ModbusRTU"},
            "baud_rate": {"port_type": "RS232", "baud_rate": 115200},
            "forwarding": "none",
        },
    )
    assert changed == ["upload_interval_s", "serial_port", "baud_rate"]
    assert new["serial_port"] == {
        "port": 0,
        "baud_rate": 19200,
        "parity": "even",
        "stop_bits": 1,
        "protocol": "ModbusRTU",
    }
    assert new["baud_rate"] == {"port_type": "RS232", "baud_rate": 115200}
    assert CURRENT["upload_interval_s"] == 60  # the current settings are not modified


def test_protocol_entries_take_known_models_and_unique_addresses():
    new, _ = apply_config(
        CURRENT,
        {
            "protocols": [
                {"protocol": "ech6k-sml-eu", "address": 2},
                {"protocol": "ECH20K-TH-EU", "address": 3},
            ]
        },
    )
    assert new["protocols"] == [
        {"protocol": "ECH6K-SML-EU", "address": 2},
        {"protocol": "ECH20K-TH-EU", "address": 3},
    ]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"colour": "red"}, "unknown setting(s): colour"),
        ({"upload_interval_s": 0}, "upload_interval_s must be an integer 1..3600"),
        ({"upload_interval_s": "60"}, "upload_interval_s must be an integer"),
        ({"forwarding": "udp"}, "forwarding must be one of none, serial, tcp"),
        ({"serial_port": {"baud_rate": 1234}}, "serial_port.baud_rate must be one of"),
        ({"serial_port": {"parity": "mark"}}, "serial_port.parity must be one of"),
        ({"serial_port": {"stop_bits": 3}}, "serial_port.stop_bits must be an integer 1..2"),
        ({"serial_port": {"protocol": "Profibus"}}, "serial_port.protocol must be one of"),
        ({"serial_port": {"speed": 9600}}, "unknown setting(s) in serial_port: speed"),
        ({"tcp_forwarding": {"enabled": "yes"}}, "tcp_forwarding.enabled must be true or false"),
        ({"tcp_forwarding": {"port": 70000}}, "tcp_forwarding.port must be an integer 1..65535"),
        ({"tcp_forwarding": {"protocol": "HTTP"}}, "tcp_forwarding.protocol must be one of"),
        ({"baud_rate": {"port_type": "CAN"}}, "baud_rate.port_type must be one of RS485, RS232"),
        ({"protocols": []}, "protocols must be a non-empty list"),
        ({"protocols": [{"protocol": "XYZ", "address": 1}]}, "unknown protocol 'XYZ'"),
        (
            {"protocols": [{"protocol": "ECH10K-TH-EU", "address": 1}] * 2},
            "Modbus address 1 is listed twice",
        ),
        ({"protocols": [{"protocol": "ECH10K-TH-EU", "address": 248}]}, "1..247"),
    ],
)
def test_invalid_settings_are_refused_with_the_reason(params, reason):
    with pytest.raises(ConfigError) as refused:
        apply_config(CURRENT, params)
    assert reason in str(refused.value)
