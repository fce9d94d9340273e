"""Register maps: shipped files, guide/public addresses, codec round trips, write validation
and rejection of bad map files. No database is needed."""

import copy
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client.mixin import ModbusClientMixin

from devices.registermap import (
    FAULT_LEVELS,
    FIRMWARE_TYPE_NAMES,
    MAP_DIR,
    MAX_BLOCK_REGISTERS,
    FirmwareTypeSpec,
    RegisterMap,
    RegisterMapError,
    RegisterValueError,
    UnknownModelError,
    check_all,
    format_address,
    list_models,
    load_fault_codes,
    main,
    parse_address,
)

MODELS = ["ECH6K-SML-EU", "ECH10K-TH-EU", "ECH20K-TH-EU"]
TH_MODELS = ["ECH10K-TH-EU", "ECH20K-TH-EU"]
DT = ModbusClientMixin.DATATYPE


@pytest.fixture(params=MODELS)
def rm(request) -> RegisterMap:
    return RegisterMap.for_model(request.param)


def _default_blocks(m: RegisterMap) -> dict[tuple[str, int], list[int]]:
    """The poll blocks as a fresh simulator would answer them."""
    layout = m.raw_block_layout()
    blocks = {}
    for b in m.poll_blocks:
        seg = next(
            s for s in layout[b.table] if s.start <= b.start and b.end <= s.start + len(s.values)
        )
        blocks[(b.table, b.start)] = seg.values[b.start - seg.start : b.end - seg.start]
    return blocks


# ---- shipped maps ------------------------------------------------------------------------


def test_every_shipped_map_loads_and_lists_its_models():
    assert set(MODELS) <= set(list_models())
    lines = check_all()
    assert len(lines) == len(MODELS)
    for model in MODELS:
        assert any(f" {model} " in line for line in lines)


def test_for_model_is_cached_case_insensitive_and_rejects_unknown_models():
    assert RegisterMap.for_model("ech10k-th-eu") is RegisterMap.for_model("ECH10K-TH-EU")
    with pytest.raises(UnknownModelError, match="ECH6K-SML-EU"):
        RegisterMap.for_model("ECH99K-XX")


def test_check_command_prints_one_summary_line_per_model(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == len(MODELS)
    assert all(
        re.search(r"\d+ points, \d+ telemetry, \d+ holding, \d+ poll blocks", o) for o in out
    )


def test_at_least_80_telemetry_points_per_model(rm):
    assert len(rm.telemetry_keys()) >= 80
    decoded = rm.decode_blocks(_default_blocks(rm))
    assert set(rm.telemetry_keys()) <= set(decoded)
    assert len(decoded) >= 80


def test_poll_blocks_cover_every_telemetry_point_and_fit_one_read(rm):
    for b in rm.poll_blocks:
        assert 1 <= b.count <= MAX_BLOCK_REGISTERS
    for key in rm.telemetry_keys():
        p = rm.point(key)
        assert any(
            b.table == p.table and b.start <= p.address and p.address + p.n_registers <= b.end
            for b in rm.poll_blocks
        ), key
    assert set(rm.telemetry_keys()) <= rm.polled_keys()


def test_no_two_points_share_a_register(rm):
    for table in ("input", "holding"):
        used: dict[int, str] = {}
        for p in rm.points.values():
            if p.table != table:
                continue
            for a in range(p.address, p.address + p.n_registers):
                assert a not in used, (p.key, used.get(a))
                used[a] = p.key


def test_only_holding_registers_are_writable(rm):
    for p in rm.points.values():
        if p.writable:
            assert p.table == "holding", p.key
    assert all(p.table == "holding" for p in rm.writable_points())
    assert rm.writable_points()


@pytest.mark.parametrize(
    ("key", "name", "address", "display", "unit"),
    [
        ("grid_power_kw", "Grid_Power", 0x0700, "[0X0700/1792]", "kW"),
        ("grid_total_buy_energy", "Grid_TotalBuyEnergy", 0x0706, "[0X0706/1798]", "kWh"),
        ("grid_total_sell_energy", "Grid_TotalSellEnergy", 0x0708, "[0X0708/1800]", "kWh"),
    ],
)
def test_guide_addresses_are_where_the_guide_shows_them(rm, key, name, address, display, unit):
    p = rm.point(key)
    assert (p.name, p.group, p.table, p.address, p.unit) == (
        name,
        "ABF Info",
        "input",
        address,
        unit,
    )
    assert p.origin == "guide"
    assert format_address(p.address) == p.display_address == display
    assert not p.writable


@pytest.mark.parametrize("model", TH_MODELS)
@pytest.mark.parametrize(
    ("address", "type_", "scale", "unit"),
    [
        (0x0600, "u16", 0.1, "V"),
        (0x0601, "s16", 0.1, "A"),
        (0x0603, "u16", 1, "%"),
        (0x0701, "s16", 1, "W"),
        (0x0709, "u16", 1, "W"),
        (0x082F, "u16", 0.01, "A"),
        (0x0830, "u16", 0.01, "A"),
        (0x0831, "u16", 0.01, "A"),
    ],
)
def test_evcc_public_addresses_are_where_the_facts_say(model, address, type_, scale, unit):
    p = RegisterMap.for_model(model).point_at("input", address)
    assert p is not None and p.address == address
    assert (p.type, p.scale, p.unit, p.origin) == (type_, scale, unit, "public")
    assert p.telemetry


def test_evcc_semantics_decode_battery_grid_and_currents():
    m = RegisterMap.for_model("ECH10K-TH-EU")
    values = m.decode_blocks(
        {
            ("input", 0x0600): [4096, (-155) & 0xFFFF, 0, 77],
            ("input", 0x0700): [(-250) & 0xFFFF, (-2500) & 0xFFFF],
            ("input", 0x0709): [6400],
            ("input", 0x082F): [1234, 1300, 1299],
        }
    )
    assert values["batt_voltage"] == 409.6
    assert values["batt_current"] == -15.5  # charging
    assert values["batt_soc"] == 77
    assert values["grid_power_kw"] == -2.5 and values["abf_grid_power"] == -2500
    assert values["pv_power"] == 6400
    assert [values[f"grid_current_l{i}"] for i in (1, 2, 3)] == [12.34, 13.0, 12.99]


def test_phase_and_mppt_points_follow_the_family():
    sml = RegisterMap.for_model("ECH6K-SML-EU")
    th = RegisterMap.for_model("ECH10K-TH-EU")
    assert "grid_voltage_l1" in sml.points and "grid_voltage_l2" not in sml.points
    assert {"grid_voltage_l3", "grid_current_l3", "eps_power_l3"} <= set(th.points)
    assert "pv2_power" in sml.points and "pv3_power" not in sml.points
    assert "pv3_power" in th.points


def test_per_model_overrides_apply():
    ten = RegisterMap.for_model("ECH10K-TH-EU")
    twenty = RegisterMap.for_model("ECH20K-TH-EU")
    assert (ten.rated_power_w, twenty.rated_power_w) == (10000, 20000)
    assert ten.point("batt_max_charge_current").range == (0, 25)
    assert twenty.point("batt_max_charge_current").range == (0, 50)
    assert twenty.encode_write("batt_max_charge_current", 40)[1] == [400]
    with pytest.raises(RegisterValueError, match="from 0 to 25 A"):
        ten.encode_write("batt_max_charge_current", 40)
    assert ten.default_value("model_name") == "ECH10K-TH-EU"
    assert twenty.default_value("rated_power") == 20000


def test_guide_names_ranges_and_options(rm):
    by_name = {p.name: p for p in rm.points.values()}
    for name, unit in [
        ("Batt_SOC", "%"),
        ("Batt_SOH", "%"),
        ("DchgLimitCurr", "A"),
        ("ChgLimitCurr", "A"),
        ("Batt_Temp", "°C"),
    ]:
        assert by_name[name].unit == unit and by_name[name].telemetry
    common = [p.name for p in rm.points_in_group("Common Info")]
    assert {"LCDBootVersion", "InputRegNum", "ProVersion"} <= set(common)
    tou = {p.name: p for p in rm.points_in_group("TOU")}
    assert (tou["BatFromGridPower"].range, tou["BatFromGridPower"].step) == ((0, 10), 0.1)
    assert (tou["FeedbackGridPower"].range, tou["FeedbackGridPower"].step) == ((0, 12), 0.1)
    for name in ("AntiFeedbackGridEn", "GridChgEn", "BatFromGridStartTime", "BatFromGridEndTime"):
        assert tou[name].writable
    modes = {o.label for o in rm.point("work_mode").enum}
    assert modes == {
        "PV Mode",
        "Self-Consumption",
        "Full Feed-In",
        "Emergency Charging",
        "Forced Off-Grid",
        "TOU Mode",
    }
    assert [o.key for o in rm.point("smart_load_mode").enum] == [
        "off",
        "manual",
        "battery_energy",
        "time_control",
        "surplus_pv",
    ]
    assert len([p for p in rm.points_in_group("TOU") if p.key.endswith("_weekdays")]) >= 4


def test_reference_layout_is_flagged_per_point(rm):
    for key in ("work_mode", "power_switch", "tou_bat_from_grid_power", "smart_load_mode"):
        assert rm.point(key).is_reference
    for p in rm.fault_words() + rm.points_in_group("Firmware"):
        assert p.is_reference
    assert "REFERENCE LAYOUT" in rm.spec.source.reference


def test_running_status_gives_running_standby_fault(rm):
    assert rm.device_status({"run_status": "on_grid"}) == "running"
    assert rm.device_status({"run_status": "waiting"}) == "standby"
    assert rm.device_status({"run_status": "fault"}) == "fault"
    assert rm.device_status({"run_status": "shutdown"}) == "off"
    assert rm.device_status({}) is None


def test_every_point_default_round_trips(rm):
    for p in rm.points.values():
        value = rm.default_value(p.key)
        assert rm.decode_point(p.key, rm.encode_value(p.key, value)) == value, p.key


def test_raw_block_layout_serves_poll_blocks_and_every_point(rm):
    layout = rm.raw_block_layout()
    values = rm.decode_blocks(_default_blocks(rm))
    for key in rm.telemetry_keys():
        assert values[key] == rm.default_value(key), key
    for p in rm.points.values():
        assert any(
            s.start <= p.address and p.address + p.n_registers <= s.start + len(s.values)
            for s in layout[p.table]
        ), p.key
    assert all(0 <= w <= 0xFFFF for segs in layout.values() for s in segs for w in s.values)


# ---- search ------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["0x0700", "0X700", "1792", "[0X0700/1792]", "grid_power"])
def test_quick_search_finds_grid_power_by_address_or_name(query):
    m = RegisterMap.for_model("ECH10K-TH-EU")
    assert "grid_power_kw" in [p.key for p in m.search(query)]


def test_search_by_words_group_and_inside_32_bit_points():
    m = RegisterMap.for_model("ECH6K-SML-EU")
    assert [p.key for p in m.search("totalbuy", group="ABF Info")] == ["grid_total_buy_energy"]
    assert "batt_soc" in [p.key for p in m.search("batt soc")]
    assert m.search("0x0A03")[0].key == "pv_energy_total"  # second word of a u32
    assert m.search("no such thing") == []
    assert m.groups()[0] == "ABF Info"
    assert {p.group for p in m.points_in_group("tou")} == {"TOU"}


def test_address_helpers():
    assert format_address(0x0700) == "[0X0700/1792]"
    assert format_address(0x082F) == "[0X082F/2095]"
    for text in ("0x0700", "0X0700", "1792", "[0X0700/1792]", 1792):
        assert parse_address(text) == 1792
    with pytest.raises(ValueError):
        parse_address("0x10000")


# ---- fault codes -------------------------------------------------------------------------


def test_fault_codes_cover_the_guide_and_map_to_existing_bits(rm):
    faults = load_fault_codes()
    assert 30 <= len(faults) <= 60
    guide = {
        "Warn0070": ("Low Batt volt", "common"),
        "Warn0040": ("Low Batt", "common"),
        "Fault0201": ("BMS Comm Fault", "important"),
        "Protect0080": ("Grid Undervolt", "important"),
        "Protect0110": ("Grid Underfreq", "important"),
        "Protect0120": ("Utility Loss", "important"),
    }
    for code, (text, level) in guide.items():
        fc = rm.fault_code(code)
        assert (fc.text, fc.level, fc.origin) == (text, level, "guide")
        assert rm.fault_for_bit(fc.word, fc.bit) is fc
        word = rm.point(fc.word)
        assert word.fault_word == fc.kind and fc.bit < 16 * word.n_registers
    assert {c.level for c in faults} <= set(FAULT_LEVELS)
    assert rm.fault_code("Warn9999") is None


def test_fault_codes_follow_the_documented_numbering():
    for c in load_fault_codes():
        n = int(c.word.rsplit("_", 1)[1])
        number = int(c.code[-4:])
        if c.kind == "fault":
            assert number == 100 * n + c.bit + 1, c.code
        else:
            assert number == 10 * (16 * (n - 1) + c.bit + 1), c.code


def test_fault_words_decode_to_active_codes():
    m = RegisterMap.for_model("ECH10K-TH-EU")
    protect = m.fault_code("Protect0080")
    words = m.encode_value(protect.word, ["Protect0080", "Protect0120"])
    assert m.decode_point(protect.word, words) == ["Protect0080", "Protect0120"]
    assert m.decode_point("fault_word_2", [0x8001]) == ["Fault0201", "fault_word_2:bit15"]
    decoded = m.decode_blocks({("input", 0x0B10): [1 << 6, 0, 0, 1, 0, 0]})
    assert decoded["warn_word_1"] == ["Warn0070"]
    assert decoded["fault_word_2"] == ["Fault0201"]
    assert decoded["protect_word_1"] == []


# ---- codec round trips (synthetic map covering every type) ----------------------------------

CODEC_POINTS = [
    {"key": "p_u16", "type": "u16", "address": 0x10, "range": [0, 65535]},
    {"key": "p_s16", "type": "s16", "address": 0x11, "scale": 0.1, "range": [-3276.8, 3276.7]},
    {"key": "p_u32_big", "type": "u32", "address": 0x12, "range": [0, 4294967295]},
    {
        "key": "p_u32_little",
        "type": "u32",
        "address": 0x14,
        "word_order": "little",
        "range": [0, 4294967295],
    },
    {
        "key": "p_s32_big",
        "type": "s32",
        "address": 0x16,
        "scale": 0.01,
        "range": [-21474836.48, 21474836.47],
    },
    {
        "key": "p_s32_little",
        "type": "s32",
        "address": 0x18,
        "word_order": "little",
        "range": [-2147483648, 2147483647],
    },
    {"key": "p_string", "type": "string", "address": 0x1A, "count": 4},
    {
        "key": "p_flags",
        "type": "bits",
        "address": 0x1E,
        "flags": [{"bit": b, "key": f"f{b}", "label": f"Flag {b}"} for b in range(16)],
    },
    {
        "key": "p_flags32",
        "type": "bits",
        "address": 0x20,
        "count": 2,
        "word_order": "little",
        "flags": [{"bit": b, "key": f"g{b}", "label": f"Flag {b}"} for b in range(32)],
    },
    {
        "key": "p_enum",
        "type": "s16",
        "address": 0x22,
        "enum": [
            {"value": -1, "key": "minus_one", "label": "Minus one"},
            {"value": 0, "key": "zero", "label": "Zero"},
            {"value": 7, "key": "seven", "label": "Seven"},
        ],
    },
    {"key": "p_time", "type": "u16", "address": 0x23, "format": "hhmm"},
    {"key": "p_version", "type": "u16", "address": 0x24, "format": "version"},
    {"key": "p_step", "type": "u16", "address": 0x25, "scale": 0.1, "range": [0, 10], "step": 0.5},
    {"key": "p_readonly", "type": "u16", "address": 0x26, "access": "read"},
]


def _base_map() -> dict:
    points = []
    for spec in CODEC_POINTS:
        p = {
            "name": spec["key"].upper(),
            "group": "Test",
            "table": "holding",
            "access": "read_write",
            **spec,
        }
        points.append(p)
    points += [
        {
            "key": "in_u16",
            "name": "In_U16",
            "group": "Test",
            "table": "input",
            "address": 0x0100,
            "type": "u16",
        },
        {
            "key": "warn_word_1",
            "name": "Warn_Word1",
            "group": "Fault",
            "table": "input",
            "address": 0x0101,
            "type": "bits",
            "fault_word": "warn",
        },
        {
            "key": "fault_word_1",
            "name": "Fault_Word1",
            "group": "Fault",
            "table": "input",
            "address": 0x0102,
            "type": "bits",
            "fault_word": "fault",
        },
    ]
    return {
        "schema": "matricloud.regmap/1",
        "vendor": "Test",
        "family": "TEST",
        "version": "0.1",
        "phases": 1,
        "mppt_count": 1,
        "models": [{"name": "TEST-1", "rated_power_w": 1000}],
        "source": {"public": ["nothing"], "reference": "all of it"},
        "fault_codes": "codes.yaml",
        "groups": ["Test", "Fault"],
        "poll_blocks": [{"table": "input", "start": 0x0100, "count": 3}],
        "points": points,
    }


def _base_codes() -> dict:
    return {
        "schema": "matricloud.faultcodes/1",
        "vendor": "Test",
        "version": "0.1",
        "source": "test",
        "codes": [
            {"code": "Warn0010", "level": "common", "text": "W", "word": "warn_word_1", "bit": 0},
            {"code": "Fault0101", "level": "urgent", "text": "F", "word": "fault_word_1", "bit": 0},
        ],
    }


def _write(folder: Path, data: dict, codes: dict | None = None) -> Path:
    path = folder / "test-map.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (folder / "codes.yaml").write_text(
        yaml.safe_dump(codes or _base_codes(), sort_keys=False), encoding="utf-8"
    )
    return path


@pytest.fixture(scope="module")
def codec(tmp_path_factory) -> RegisterMap:
    return RegisterMap.from_file(_write(tmp_path_factory.mktemp("codec"), _base_map()))


LIMITS = {"u16": (0, 0xFFFF), "s16": (-0x8000, 0x7FFF), "u32": (0, 2**32 - 1)}
LIMITS["s32"] = (-(2**31), 2**31 - 1)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_numeric_round_trip_property(codec, data):
    key = data.draw(
        st.sampled_from(
            ["p_u16", "p_s16", "p_u32_big", "p_u32_little", "p_s32_big", "p_s32_little"]
        )
    )
    p = codec.point(key)
    raw = data.draw(st.integers(*LIMITS[p.type]))
    dtype = {"u16": DT.UINT16, "s16": DT.INT16, "u32": DT.UINT32, "s32": DT.INT32}[p.type]
    words = ModbusClientMixin.convert_to_registers(raw, dtype, word_order=p.word_order or "big")
    value = codec.decode_point(key, words)
    assert codec.encode_write(key, value) == (p.address, words)
    assert value == pytest.approx(raw * p.scale)
    # the same value typed as text in a form encodes the same way
    assert codec.encode_write(key, str(value))[1] == words


def test_word_order_is_explicit(codec):
    assert codec.encode_write("p_u32_big", 0x12345678)[1] == [0x1234, 0x5678]
    assert codec.encode_write("p_u32_little", 0x12345678)[1] == [0x5678, 0x1234]
    assert codec.encode_write("p_s32_little", -2)[1] == [0xFFFE, 0xFFFF]
    assert codec.decode_point("p_s32_big", [0xFFFF, 0xFF38]) == -2.0
    assert codec.decode_point("p_s16", [0xFF85]) == -12.3


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=8
    ).map(lambda s: s.rstrip(" "))
)
def test_string_round_trip_property(codec, text):
    words = codec.encode_write("p_string", text)[1]
    assert len(words) == 4
    assert codec.decode_point("p_string", words) == text
    if text:
        oracle = ModbusClientMixin.convert_to_registers(text, DT.STRING)
        assert words[: len(oracle)] == oracle


@settings(max_examples=200, deadline=None)
@given(
    bits=st.sets(st.integers(0, 15)),
    bits32=st.sets(st.integers(0, 31)),
)
def test_bits_round_trip_property(codec, bits, bits32):
    keys = [f"f{b}" for b in sorted(bits)]
    words = codec.encode_write("p_flags", keys)[1]
    assert words == [sum(1 << b for b in bits)]
    assert codec.decode_point("p_flags", words) == keys
    keys32 = [f"g{b}" for b in sorted(bits32)]
    words32 = codec.encode_write("p_flags32", keys32)[1]
    mask = sum(1 << b for b in bits32)
    assert words32 == [mask & 0xFFFF, mask >> 16]  # little word order
    assert codec.decode_point("p_flags32", words32) == keys32


@settings(max_examples=200, deadline=None)
@given(hour=st.integers(0, 23), minute=st.integers(0, 59), major=st.integers(0, 99))
def test_time_version_and_enum_round_trip(codec, hour, minute, major):
    text = f"{hour:02d}:{minute:02d}"
    assert codec.encode_write("p_time", text)[1] == [hour * 100 + minute]
    assert codec.decode_point("p_time", [hour * 100 + minute]) == text
    version = f"{major:02d}.{minute:02d}"
    assert codec.decode_point("p_version", codec.encode_write("p_version", version)[1]) == version


def test_enum_round_trip_including_negative_values(codec):
    for key, raw in [("minus_one", -1), ("zero", 0), ("seven", 7)]:
        words = codec.encode_write("p_enum", key)[1]
        assert words == [raw & 0xFFFF]
        assert codec.decode_point("p_enum", words) == key
    assert codec.encode_write("p_enum", "Seven")[1] == [7]  # by English label
    assert codec.encode_write("p_enum", 7)[1] == [7]  # by raw value
    assert codec.decode_point("p_enum", [3]) == 3  # unlisted raw value is kept


# ---- write validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tou_bat_from_grid_power", 10.5, "out of range; enter a value from 0 to 10 kW"),
        ("tou_bat_from_grid_power", -1, "out of range"),
        ("tou_feedback_grid_power", 12.1, "from 0 to 12 kW"),
        ("tou_bat_from_grid_power", 3.25, "not a multiple of the step 0.1 kW"),
        ("tou_bat_from_grid_power", "abc", "is not a number"),
        ("grid_power_kw", 1, "[0X0700/1792] is an input register and cannot be written"),
        ("batt_soc", 50, "input register"),
        ("work_mode", "turbo", "is not an option of WorkMode; choose one of: Self-Consumption"),
        ("work_mode", 42, "not an option"),
        ("tou_bat_from_grid_start", "25:00", "HH:MM"),
        ("tou1_weekdays", ["mon", "funday"], "'funday' is not a choice"),
        ("smart_load_soc_on", 101, "from 10 to 100 %"),
    ],
)
def test_write_validation_explains_the_problem(key, value, message):
    m = RegisterMap.for_model("ECH10K-TH-EU")
    with pytest.raises(RegisterValueError) as exc:
        m.encode_write(key, value)
    assert message in str(exc.value)
    assert exc.value.key == key


def test_valid_writes_of_the_mode_and_tou_forms():
    m = RegisterMap.for_model("ECH6K-SML-EU")
    assert m.encode_write("work_mode", "tou") == (m.point("work_mode").address, [2])
    assert m.encode_write("tou_bat_from_grid_power", 3.5)[1] == [35]
    assert m.encode_write("tou_bat_from_grid_power", "10")[1] == [100]
    assert m.encode_write("tou_feedback_grid_power", 0.3)[1] == [3]
    assert m.encode_write("tou_bat_from_grid_start", "22:30")[1] == [2230]
    assert m.encode_write("power_switch", "off")[1] == [0]
    assert m.encode_write("power_factor_setpoint", -0.95)[1] == [(-95) & 0xFFFF]


def test_read_only_holding_and_raw_that_does_not_fit(codec):
    with pytest.raises(RegisterValueError, match="read-only"):
        codec.encode_write("p_readonly", 1)
    with pytest.raises(RegisterValueError, match="does not fit the register"):
        codec.encode_value("in_u16", 70000)
    with pytest.raises(RegisterValueError, match="finer than the register resolution"):
        codec.encode_write("p_s16", 1.25)
    with pytest.raises(RegisterValueError, match="not a multiple of the step 0.5"):
        codec.encode_write("p_step", 0.7)
    with pytest.raises(RegisterValueError, match="at most 8 characters"):
        codec.encode_write("p_string", "123456789")


def test_constraints_check_pairs_of_settings():
    m = RegisterMap.for_model("ECH10K-TH-EU")
    assert m.check_constraints({"smart_load_soc_on": 90, "smart_load_soc_off": 60}) == []
    problems = m.check_constraints({"smart_load_soc_on": 50, "smart_load_soc_off": 60})
    assert problems == ["The switch-on SOC must be above the switch-off SOC (hysteresis)."]


def test_decode_rejects_words_that_are_not_registers(codec):
    with pytest.raises(ValueError, match="0..65535"):
        codec.decode_blocks({("input", 0x0100): [70000]})
    with pytest.raises(ValueError, match="needs 2 register"):
        codec.decode_point("p_u32_big", [1])


# ---- bad map files -----------------------------------------------------------------------


def _points(d: dict) -> dict[str, dict]:
    return {p["key"]: p for p in d["points"]}


def _overlap(d):
    _points(d)["p_u16"]["address"] = 0x13  # inside p_u32_big (0x12-0x13)


def _duplicate(d):
    d["points"].append(copy.deepcopy(_points(d)["in_u16"]) | {"address": 0x0200})


def _rw_on_input(d):
    _points(d)["in_u16"]["access"] = "read_write"


def _bad_type(d):
    _points(d)["p_u16"]["type"] = "float32"


def _outside_block(d):
    _points(d)["in_u16"]["address"] = 0x0300


def _big_block(d):
    d["poll_blocks"][0]["count"] = 126


def _unknown_group(d):
    _points(d)["p_u16"]["group"] = "Nowhere"


def _no_range(d):
    del _points(d)["p_u16"]["range"]


def _range_too_big(d):
    _points(d)["p_u16"]["range"] = [0, 70000]


def _word_order_on_u16(d):
    _points(d)["p_u16"]["word_order"] = "little"


def _bad_default(d):
    _points(d)["p_step"]["default"] = 11


def _unknown_field(d):
    _points(d)["p_u16"]["scael"] = 0.1


def _override_unknown(d):
    d["models"][0]["overrides"] = {"nope": {"default": 1}}


def _bad_override(d):
    d["models"][0]["overrides"] = {"p_step": {"range": [5, 1]}}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_overlap, "address overlap in holding registers: p_u32_big [0X0012/18]"),
        (_duplicate, "duplicate key 'in_u16'"),
        (_rw_on_input, "access: read_write is only allowed on holding registers"),
        (_bad_type, "type: Input should be 'u16', 's16', 'u32', 's32', 'string' or 'bits'"),
        (_outside_block, "telemetry point in_u16 [0X0300/768] is not inside any input poll block"),
        (_big_block, "poll_blocks[0] › count: Input should be less than or equal to 125"),
        (_unknown_group, "group 'Nowhere' is not listed in groups"),
        (_no_range, "a writable numeric point needs range"),
        (_range_too_big, "does not fit u16"),
        (_word_order_on_u16, "word_order only applies to 32-bit values"),
        (_bad_default, "default 11 is invalid: P_STEP: 11 is out of range"),
        (_unknown_field, "scael: Extra inputs are not permitted"),
        (_override_unknown, "overrides: unknown point key 'nope'"),
        (_bad_override, "overrides › p_step: range minimum 5 is above its maximum 1"),
    ],
)
def test_bad_map_file_is_rejected_with_a_message_naming_the_problem(tmp_path, mutate, message):
    data = _base_map()
    mutate(data)
    with pytest.raises(RegisterMapError) as exc:
        RegisterMap.from_file(_write(tmp_path, data))
    text = str(exc.value)
    assert text.startswith("test-map.yaml:")
    assert message in text


def test_point_is_named_in_schema_errors(tmp_path):
    data = _base_map()
    _rw_on_input(data)
    with pytest.raises(RegisterMapError, match=r"points\[\d+\] \(in_u16\)"):
        RegisterMap.from_file(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bit": 16}, "refers to bit 16 of warn_word_1, which has only 16 bits"),
        ({"word": "warn_word_9"}, "refers to 'warn_word_9' bit 0, but this map has no fault word"),
        ({"word": "in_u16"}, "no fault word with that key"),
        ({"word": "fault_word_1", "bit": 3}, "is a warn code but fault_word_1 is a fault word"),
    ],
)
def test_unknown_fault_bit_is_rejected(tmp_path, change, message):
    codes = _base_codes()
    codes["codes"][0] |= change
    with pytest.raises(RegisterMapError) as exc:
        RegisterMap.from_file(_write(tmp_path, _base_map(), codes))
    assert "unknown fault bit" in str(exc.value) or "is a warn code" in str(exc.value)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"code": "Fault0101"}, "duplicate fault code 'Fault0101'"),
        ({"word": "fault_word_1", "code": "Warn0011"}, "duplicate fault word bit"),
        ({"level": "critical"}, "'urgent', 'important', 'common' or 'prompt'"),
        ({"code": "Alarm0001"}, "String should match pattern"),
    ],
)
def test_bad_fault_code_file_is_rejected(tmp_path, change, message):
    codes = _base_codes()
    codes["codes"][0] |= change
    with pytest.raises(RegisterMapError) as exc:
        RegisterMap.from_file(_write(tmp_path, _base_map(), codes))
    assert "codes.yaml" in str(exc.value) and message in str(exc.value)


def test_yaml_1_1_traps_are_avoided(tmp_path):
    """`off` stays a string and `22:00` is not a sexagesimal number."""
    data = _base_map()
    _points(data)["p_time"]["default"] = "TIME_PLACEHOLDER"
    path = _write(tmp_path, data)
    text = path.read_text().replace("key: zero", "key: off").replace("label: Zero", "label: Off")
    path.write_text(text.replace("TIME_PLACEHOLDER", "22:00"), encoding="utf-8")
    assert "default: 22:00\n" in path.read_text()
    m = RegisterMap.from_file(path)
    assert m.encode_write("p_enum", "off")[1] == [0]
    assert m.default_value("p_time") == "22:00"


def test_check_command_reports_a_bad_file(tmp_path, capsys):
    data = _base_map()
    _duplicate(data)
    assert main(["check", str(_write(tmp_path, data))]) == 1
    assert "duplicate key 'in_u16'" in capsys.readouterr().err


def test_shipped_files_are_found_relative_to_the_module():
    assert MAP_DIR == Path(__file__).resolve().parents[1] / "devices" / "registermaps"
    assert {p.name for p in MAP_DIR.glob("*.yaml")} >= {
        "ech-sml-eu.yaml",
        "ech-th-eu.yaml",
        "fault-codes.yaml",
    }


# ---- user-visible texts ------------------------------------------------------------------

#: Provenance and implementation remarks belong in a point's or model's `note`, never in
#: the texts installers read on the Parameters page or in the alarm details.
MAINTAINER_WORDS = re.compile(
    r"guide|sample value|evcc|public fact|reference layout|as shown in|table 6-|origin"
    r"|\[0x|\b[us](?:16|32)\b|rollup",
    re.IGNORECASE,
)


def _user_texts(m: RegisterMap) -> list[tuple[str, str]]:
    texts = [(f"model {m.model_name}", m.model.description)]
    for p in m.points.values():
        texts.append((p.key, p.description))
        texts += [(f"{p.key} option {o.key}", o.label) for o in p.enum or ()]
        texts += [(f"{p.key} flag {f.key}", f.label) for f in p.flags or ()]
    texts += [(f"constraint {c.left} {c.op} {c.right}", c.message) for c in m.spec.constraints]
    return texts


@pytest.mark.parametrize(
    "text",
    [
        "Number of input registers the firmware reports (guide sample value 60).",
        "Battery voltage. Public fact: evcc template chint-ech-hybrid (tested on ECH10K-TH-EU).",
        "Address as shown in the guide's Settings page [0X0700/1792].",
        "Operating mode (Table 6-3).",
        "Firmware version; the address is the reference layout.",
        "Use grid_import_energy_total (0.1 kWh, u32) for rollups.",
        "Lifetime PV yield (counter used for energy rollups).",
    ],
)
def test_maintainer_words_are_recognised(text):
    assert MAINTAINER_WORDS.search(text)


@pytest.mark.parametrize("model", list_models())
def test_user_visible_map_texts_carry_no_maintainer_notes(model):
    m = RegisterMap.for_model(model)
    found = [f"{where}: {text}" for where, text in _user_texts(m) if MAINTAINER_WORDS.search(text)]
    assert found == [], "move these remarks to `note`"


def test_user_visible_fault_code_texts_carry_no_maintainer_notes():
    found = [
        f"{c.code}: {text}"
        for c in load_fault_codes()
        for text in (c.text, c.description)
        if MAINTAINER_WORDS.search(text)
    ]
    assert found == [], "fault codes are shown in the alarm list and details"


def test_provenance_is_kept_in_the_notes():
    th = RegisterMap.for_model("ECH10K-TH-EU")
    assert "[0X0700/1792]" in th.point("grid_power_kw").note
    assert "evcc" in th.point("batt_voltage").note and "evcc" in th.model.note
    assert "rollups" in th.point("grid_total_sell_energy").note
    sml = RegisterMap.for_model("ECH6K-SML-EU")
    assert "assumed for this family" in sml.point("batt_soc").note
    assert th.point("batt_power").note == ""


# ---- firmware transfer ------------------------------------------------------------------------


def test_every_model_lists_its_firmware_types_with_their_version_points(rm):
    types = rm.firmware_types
    assert set(types) == {"dsp", "slave_dsp", "lcd", "arc"}
    assert set(types) <= set(FIRMWARE_TYPE_NAMES)
    assert types["dsp"] == FirmwareTypeSpec("dsp", 1, "dsp_version")
    for spec in types.values():
        assert rm.point(spec.version_point).format == "version"
    assert "trip_board" not in types and "senergy_master_dsp" not in types


def test_the_transfer_block_is_served_and_lies_on_no_point(rm):
    block = rm.firmware_transfer
    assert (block.command, block.data, block.state) == (0x1100, 0x1108, 0x0D00)
    assert block.length + 1 == block.data  # offset, length and data in one FC16 write
    assert block.data + block.data_registers - block.offset <= 123
    for table, start, count in (
        ("holding", block.holding, block.holding_registers),
        ("input", block.input, block.input_registers),
    ):
        assert all(rm.point_at(table, a) is None for a in range(start, start + count))
        assert any(
            s.start <= start and start + count <= s.start + len(s.values)
            for s in rm.raw_block_layout()[table]
        )
    assert not [p for p in rm.search("0x1100")]  # not a point: not on the Settings page


def _with_transfer(d, **changes):
    d["points"].append(
        {
            "key": "in_version",
            "name": "In_Version",
            "group": "Test",
            "table": "input",
            "address": 0x0110,
            "type": "u16",
            "format": "version",
            "telemetry": False,
        }
    )
    d["firmware_transfer"] = {
        "holding": 0x0200,
        "input": 0x0300,
        "types": {"dsp": {"code": 1, "version_point": "in_version"}},
    } | changes


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"holding": 0x0010}, "the holding block [0X0010/16]+128 overlaps point p_u16"),
        ({"input": 0x00FF}, "the input block [0X00FF/255]+4 overlaps point in_u16"),
        (
            {"types": {"boot": {"code": 1, "version_point": "in_version"}}},
            "'boot' is not a firmware type",
        ),
        (
            {"types": {"dsp": {"code": 1, "version_point": "p_version"}}},
            "version_point 'p_version' is not an input point with format: version",
        ),
        (
            {
                "types": {
                    "dsp": {"code": 1, "version_point": "in_version"},
                    "lcd": {"code": 1, "version_point": "in_version"},
                }
            },
            "types › lcd: duplicate code 1",
        ),
        ({"data_registers": 121}, "less than or equal to 120"),
    ],
)
def test_a_bad_transfer_block_is_rejected(tmp_path, changes, message):
    data = _base_map()
    _with_transfer(data, **changes)
    with pytest.raises(RegisterMapError) as exc:
        RegisterMap.from_file(_write(tmp_path, data))
    assert message in str(exc.value)


def test_a_map_without_a_transfer_block_has_no_firmware_types(codec, tmp_path):
    assert codec.firmware_transfer is None and codec.firmware_types == {}
    data = _base_map()
    _with_transfer(data)
    rm = RegisterMap.from_file(_write(tmp_path, data))
    assert rm.firmware_types == {"dsp": FirmwareTypeSpec("dsp", 1, "in_version")}
