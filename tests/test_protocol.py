"""The protocol module: topics, envelopes round-trip, and any bytes decode or fail cleanly."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import protocol as p

GOOD_TS = 1_764_000_000_000


def test_topics_are_per_gateway_and_parse_back():
    assert p.topic("GW00012345", p.TELEMETRY) == "mc/v1/GW00012345/telemetry"
    assert p.parse_topic("mc/v1/GW00012345/reply") == ("GW00012345", "reply")
    with pytest.raises(p.ProtocolError):
        p.parse_topic("mc/v1/GW00012345/other")
    with pytest.raises(p.ProtocolError):
        p.parse_topic("mc/v1/+/telemetry")
    with pytest.raises(ValueError):
        p.topic("../etc", p.STATUS)


def test_telemetry_round_trip_keeps_every_register():
    block = p.Block("input", 0x0600, tuple(range(0, 65535, 600)))
    reading = p.DeviceReading(1, "INV0001", "ECH10K-TH-EU", (block,))
    failed = p.DeviceReading(2, "INV0002", "ECH6K-SML-EU", error="timeout")
    message = p.TelemetryMessage(7, GOOD_TS, (reading, failed))
    assert p.TelemetryMessage.decode(message.encode()) == message


def test_command_reply_and_status_round_trip():
    command = p.Command("modbus", {"frame": "AQMHAAAB"}, GOOD_TS)
    assert p.Command.decode(command.encode()) == command
    reply = p.Reply(command.id, False, {}, "Modbus exception 2 (ILLEGAL_DATA_ADDRESS)")
    assert p.Reply.decode(reply.encode()) == reply
    status = p.StatusMessage(True, "CPS WiFi Kit", "10.00", -61, GOOD_TS)
    assert p.StatusMessage.decode(status.encode()) == status


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"v": 2}', "unsupported protocol version"),
        (b'{"v":1,"seq":1,"ts":5,"d":[]}', "timestamp"),
        (b'{"v":1,"seq":1,"ts":1764000000000,"d":[]}', "no devices"),
        (
            b'{"v":1,"seq":1,"ts":1764000000000,"d":[{"a":1,"sn":"INV1","m":"X",'
            b'"b":[{"t":"i","s":1,"r":"AAE"}]}]}',
            "base64",
        ),
    ],
)
def test_malformed_telemetry_says_why(body, reason):
    with pytest.raises(p.ProtocolError, match=reason):
        p.TelemetryMessage.decode(body)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        ["v", "seq", "ts", "d", "a", "sn", "m", "b", "t", "s", "r", "err"]
                    ),
                    children,
                    max_size=6,
                )
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_any_payload_decodes_or_raises_protocol_error(payload):
    for decoder in (
        p.TelemetryMessage.decode,
        p.StatusMessage.decode,
        p.Reply.decode,
        p.Command.decode,
    ):
        try:
            decoder(payload)
        except p.ProtocolError:
            pass


def test_broker_url_selects_protocol_version_and_credentials():
    broker = p.BrokerAddress.from_url("mqtt://ingest:s%40cret@10.0.0.5:1884?version=311")
    assert (broker.host, broker.port, broker.username, broker.password) == (
        "10.0.0.5",
        1884,
        "ingest",
        "s@cret",
    )
    assert broker.mqtt_version == 3
    assert p.BrokerAddress.from_url("mqtt://127.0.0.1").mqtt_version == 5
