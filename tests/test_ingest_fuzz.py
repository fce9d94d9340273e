"""1,000 malformed uploads generated with hypothesis: every one is rejected and counted, none
stops ingest, and good uploads are stored afterwards."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from devices import protocol
from devices.registermap import RegisterMap
from inverters.telemetry import RejectedMessage, sample_counts
from tests.ingest_helpers import (
    SML,
    TH,
    make_fleet,
    now_ms,
    publisher,
    reading,
    running_ingest,
    settled,
    telemetry,
)
from tests.services import needs_mosquitto, wait_for

N = 1000
GW, INV = "GWFUZZ00000", "GWFUZZ00000I1"  # what make_fleet(prefix="GWFUZZ") creates


def _valid_body(ts_ms: int) -> dict:
    rm = RegisterMap.for_model(TH)
    blocks = [
        {"t": "i", "s": b.start, "r": protocol.pack_registers([0] * b.count)}
        for b in rm.poll_blocks
        if b.interval_s < 3600
    ]
    return {"v": 1, "seq": 1, "ts": ts_ms, "d": [{"a": 1, "sn": INV, "m": TH, "b": blocks}]}


def _b64(words: list[int]) -> str:
    return base64.b64encode(struct.pack(f">{len(words)}H", *words)).decode()


NOT_INT = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.floats(), st.lists(st.none()))
NOT_BOOL = st.one_of(
    st.none(), st.integers(), st.text(max_size=5), st.floats(), st.lists(st.none())
)
NOT_ID = st.one_of(
    st.none(), st.booleans(), st.integers(), st.just(""), st.text(min_size=65, max_size=70)
)
BAD_BASE64 = st.one_of(
    st.text(alphabet="!@#$%^&*() ", min_size=1, max_size=12),
    st.binary(min_size=1, max_size=9)
    .filter(lambda b: len(b) % 2)
    .map(lambda b: base64.b64encode(b).decode()),
    st.just("===="),
    NOT_INT,
)
# (path, bad value): each one alone makes the upload invalid.
MUTATIONS = st.one_of(
    st.tuples(st.just(("v",)), st.one_of(st.sampled_from([0, 2, "1"]), st.none())),
    st.tuples(st.just(("seq",)), st.one_of(NOT_INT, st.integers(max_value=-1))),
    st.tuples(
        st.just(("ts",)),
        st.one_of(
            NOT_INT,
            st.integers(max_value=946684799999),
            st.integers(min_value=4102444800000),
            st.just(946684800000),  # valid for the protocol, far outside retention
        ),
    ),
    st.tuples(st.just(("d",)), st.one_of(st.just([]), st.just({}), NOT_INT)),
    st.tuples(
        st.just(("d", 0, "a")),
        st.one_of(NOT_INT, st.integers(max_value=0), st.integers(min_value=248)),
    ),
    st.tuples(
        st.just(("d", 0, "sn")),
        st.one_of(
            NOT_INT,
            st.text(max_size=3),
            st.from_regex(r"\A[A-Z0-9]{6,12}\Z").filter(lambda s: s != INV),  # unknown inverter
        ),
    ),
    st.tuples(
        st.just(("d", 0, "m")),
        st.one_of(st.just(""), st.just("X" * 40), st.sampled_from([SML, "NO-SUCH-MODEL"])),
    ),
    st.tuples(st.just(("d", 0, "b")), st.one_of(st.just([]), st.just({}), NOT_INT)),
    st.tuples(st.just(("d", 0, "b", 0, "t")), st.one_of(st.sampled_from(["x", "input", 1]))),
    st.tuples(
        st.just(("d", 0, "b", 0, "s")),
        st.one_of(st.sampled_from([-1, 70000, "1536", True, 1.5, 0x0601, 0x2000])),
    ),
    st.tuples(st.just(("d", 0, "b", 0, "r")), BAD_BASE64),
    st.tuples(  # well-formed words, wrong block size
        st.just(("d", 0, "b", 0, "r")),
        st.lists(st.integers(0, 65535), min_size=1, max_size=125)
        .filter(lambda w: len(w) != 38 and len(w) != 22)
        .map(_b64),
    ),
)


def _mutate(body: dict, path: tuple, value) -> dict:
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


@st.composite
def malformed(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["bytes", "json", "mutation", "gateway", "status", "reply"]))
    telemetry_topic = protocol.topic(GW, protocol.TELEMETRY)
    if kind == "bytes":
        return telemetry_topic, draw(st.binary(max_size=200))
    if kind == "json":
        value = draw(
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c),
                max_leaves=10,
            )
        )
        return telemetry_topic, json.dumps(value).encode()
    body = _valid_body(now_ms() - 1000)
    if kind == "gateway":  # a perfectly good upload from a gateway nobody registered
        serial = draw(st.from_regex(r"\A[A-Z0-9]{4,16}\Z").filter(lambda s: s != GW))
        return protocol.topic(serial, protocol.TELEMETRY), json.dumps(body).encode()
    if kind == "status":
        bad = draw(
            st.one_of(
                st.fixed_dictionaries({"v": st.just(1), "online": NOT_BOOL}),
                st.fixed_dictionaries(
                    {
                        "v": st.just(1),
                        "online": st.booleans(),
                        "signal_dbm": st.one_of(st.integers(min_value=1), st.text(max_size=3)),
                    }
                ),
            )
        )
        return protocol.topic(GW, protocol.STATUS), json.dumps(bad).encode()
    if kind == "reply":
        bad = draw(
            st.one_of(
                st.fixed_dictionaries({"v": st.just(1), "id": NOT_ID, "ok": st.booleans()}),
                st.fixed_dictionaries({"v": st.just(1), "id": st.just("c1"), "ok": NOT_BOOL}),
                st.fixed_dictionaries(
                    {"v": st.just(1), "id": st.just("c1"), "ok": st.just(True), "result": NOT_INT}
                ),
            )
        )
        return protocol.topic(GW, protocol.REPLY), json.dumps(bad).encode()
    path, value = draw(MUTATIONS)
    return telemetry_topic, json.dumps(_mutate(body, path, value)).encode()


def generate(n: int) -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []

    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(malformed())
    def collect(message):
        found.append(message)

    collect()
    return found


@needs_mosquitto
@pytest.mark.django_db(transaction=True)
def test_a_thousand_malformed_uploads_are_rejected_and_ingest_goes_on(mosquitto, clean_samples):
    [(gateway, [inverter])] = make_fleet(prefix="GWFUZZ")
    assert (gateway.serial_number, inverter.serial_number) == (GW, INV)
    messages = generate(N)
    while len(messages) < N:  # hypothesis may stop early on a small space; it does not here
        messages += generate(N - len(messages))
    messages = messages[:N]
    with running_ingest(mosquitto.broker, batch_size=500) as service:
        with publisher(mosquitto.broker) as pub:
            for topic, payload in messages:
                pub.publish(topic, payload)
        wait_for(settled(service, N), 60, f"{N} malformed messages")
        assert service.counters.rejected == N and service.counters.samples == 0
        assert RejectedMessage.objects.count() == N
        # The loop keeps storing good uploads afterwards.
        with publisher(mosquitto.broker) as pub:
            pub.telemetry(gateway, telemetry(7, now_ms(), reading(inverter)))
        wait_for(settled(service, N + 1), 15, "the good upload")
    assert sample_counts([inverter.id]) == 1
    reasons = set(RejectedMessage.objects.values_list("reason", flat=True))
    assert any("not JSON" in r for r in reasons) and any("unknown gateway" in r for r in reasons)
    assert any("not a poll block" in r for r in reasons) and any("base64" in r for r in reasons)
