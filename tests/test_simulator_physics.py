"""Simulator physics: sun, counters, battery limits, modes, power switch and faults."""

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from devices.registermap import RegisterMap, load_fault_codes
from simulator.clock import SimClock
from simulator.environment import Site
from simulator.inverter import SimulatedInverter
from simulator.physics import InverterPhysics

ROME = Site(41.903, 12.496, "Europe/Rome", "Rome")
SACRAMENTO = Site(38.582, -121.494, "America/Los_Angeles", "Sacramento")
MIDSUMMER = datetime(2026, 6, 21, tzinfo=UTC).timestamp()


def physics(model="ECH10K-TH-EU", site=ROME, start=MIDSUMMER, **kw):
    kw.setdefault("seed", 7)
    return InverterPhysics(RegisterMap.for_model(model), site, start_ts=start, **kw)


def run(p, seconds, step=60.0):
    """Advance in steps, yielding the simulated time after each one."""
    end = p.t + seconds
    while p.t < end:
        p.advance(min(end, p.t + step))
        yield p.t


@pytest.mark.parametrize("site", [ROME, SACRAMENTO], ids=["rome", "sacramento"])
def test_pv_is_zero_at_night_and_peaks_at_solar_noon(site):
    p = physics(site=site, weather_variability=0, load_variability=0)
    samples = [(t, p.flows.pv_avail, p.flows.pv) for t in run(p, 86400)]
    # Solar noon (UTC) follows the longitude: 12:00 − lon/15 h, −1.7 min equation of time.
    noon = MIDSUMMER + (12 - site.longitude / 15) * 3600 + 1.7 * 60
    peak_t, peak_w, _ = max(samples, key=lambda s: s[1])
    assert abs(peak_t - noon) < 20 * 60
    assert peak_w > 0.5 * p.pv_kwp * 1000
    for t, avail, used in samples:
        hours_from_noon = abs((t - noon + 43200) % 86400 - 43200) / 3600
        if hours_from_noon > 9:  # midsummer night at 38–42° N
            assert avail == 0 and used == 0


def test_energy_counters_never_decrease_and_today_resets_at_local_midnight():
    p = physics(model="ECH6K-SML-EU", site=SACRAMENTO, start=MIDSUMMER - 3 * 86400)
    keys = [k for k in p.values() if k.endswith("_energy_total")] + ["total_run_time"]
    last = p.values()
    last_day = datetime.fromtimestamp(p.t, ZoneInfo(SACRAMENTO.time_zone)).date()
    resets = 0
    for _ in run(p, 3 * 86400, step=300):
        values = p.values()
        for key in keys:
            assert values[key] >= last[key], key
        day = datetime.fromtimestamp(p.t, ZoneInfo(SACRAMENTO.time_zone)).date()
        if day != last_day:
            resets += 1
            assert values["pv_energy_today"] <= 0.5
        else:
            assert values["pv_energy_today"] >= last["pv_energy_today"]
        last, last_day = values, day
    assert resets == 3
    assert last["pv_energy_total"] > 0


@pytest.mark.parametrize(
    "holding",
    [
        {"work_mode": "self_consumption"},
        {"work_mode": "full_feed_in", "batt_max_charge_current": 6.5},
        {"work_mode": "emergency_charging", "emergency_charge_power": 10},
        {"work_mode": "forced_off_grid", "offgrid_return_soc": 15},
        {
            "work_mode": "tou",
            "tou1_mode": "discharge",
            "tou1_discharge_power": 20,
            "tou1_start": "17:00",
            "tou1_end": "23:59",
            "tou2_mode": "charge",
            "tou2_charge_power": 20,
            "tou2_start": "00:00",
            "tou2_end": "06:00",
            "tou2_weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "tou2_months": ["jun"],
            "batt_max_discharge_current": 12.5,
        },
    ],
    ids=["self", "feed_in", "emergency", "off_grid", "tou"],
)
def test_battery_stays_within_soc_and_current_limits(holding):
    p = physics(soc=50)
    for key, value in holding.items():
        p.apply_setting(key, value)
    for _ in run(p, 2 * 86400, step=120):
        values = p.values()
        assert 0 <= p.soc <= 100
        assert 0 <= values["batt_soc"] <= 100
        chg_limit, dis_limit = p.current_limits()
        current = values["batt_current"]
        assert -chg_limit - 0.05 <= current <= dis_limit + 0.05
        assert current >= -float(p.settings["batt_max_charge_current"]) - 0.05
        assert current <= float(p.settings["batt_max_discharge_current"]) + 0.05


def test_self_consumption_never_exports_from_the_battery():
    p = physics(soc=90)
    exported_from_battery = []
    discharging = 0
    for _ in run(p, 2 * 86400, step=60):
        f = p.flows
        if f.batt > 1:
            discharging += 1
            if f.grid < -1:
                exported_from_battery.append((p.t, f.batt, f.grid))
    assert discharging > 100
    assert exported_from_battery == []


@pytest.mark.parametrize(
    "tou",
    [
        {
            "tou_grid_charge_enable": "enabled",
            "tou_bat_from_grid_start": "01:00",
            "tou_bat_from_grid_end": "04:00",
            "tou_bat_from_grid_power": 3.0,
        },
        {"tou1_mode": "charge", "tou1_start": "01:00", "tou1_end": "04:00"}
        | {"tou1_charge_power": 3.0, "tou1_months": ["jan"]},
    ],
    ids=["bat_from_grid_window", "charge_slot"],
)
def test_tou_grid_charging_raises_soc_in_its_window(tou):
    start = datetime(2026, 1, 14, 0, 0, tzinfo=ZoneInfo("Europe/Rome")).timestamp()
    p = physics(start=start, soc=30, weather_variability=0)
    for key, value in {"work_mode": "tou", **tou}.items():
        p.apply_setting(key, value)
    list(run(p, 3600 + 60))  # to 01:01, still self-consumption before the window
    before = p.soc
    imports = []
    for _ in run(p, 3 * 3600 - 120):
        imports.append(p.flows.grid - p.flows.load)
        assert p.flows.pv == 0
        assert p.flows.batt < 0  # charging
    after = p.soc
    # 3 kW for about 3 h into 20.48 kWh (× SOH): roughly +40 % SOC
    assert after > before + 30
    assert min(imports) > 2900  # the charging power comes from the grid
    list(run(p, 3600))  # 05:00: the window is over, the battery covers the house again
    assert p.flows.batt >= 0


def test_power_off_means_no_output_and_status_off():
    noon = MIDSUMMER + 10 * 3600
    p = physics(start=noon, weather_variability=0)
    assert p.flows.pv > 1000
    p.apply_setting("power_switch", "off")
    list(run(p, 600))
    values = p.values()
    assert values["pv_power"] == 0 and values["inv_active_power"] == 0
    assert values["batt_power"] == 0 and values["batt_current"] == 0
    assert values["run_status"] == "shutdown"
    assert p.rm.device_status(values) == "off"
    assert values["abf_grid_power"] == pytest.approx(values["load_power"], abs=1)
    p.apply_setting("power_switch", "on")
    list(run(p, 20))
    assert p.values()["run_status"] == "waiting" and p.flows.pv == 0
    list(run(p, 120))
    assert p.values()["run_status"] == "on_grid" and p.flows.pv > 1000


def test_fault_sets_the_bit_from_the_fault_code_file_and_clearing_removes_it():
    catalog = load_fault_codes()
    code = catalog.by_code["Protect0080"]  # Grid Undervolt
    clock = SimClock(MIDSUMMER + 10 * 3600, speed=0)
    inverter = SimulatedInverter("INVFAULT0001", "ECH10K-TH-EU", site=ROME, clock=clock)
    word = inverter.rm.point(code.word)

    def bit_set() -> bool:
        inverter.refresh()
        return bool(inverter.input.words(word.address, 1)[0] >> code.bit & 1)

    assert not bit_set()
    inverter.inject_fault("Protect0080")
    assert bit_set()
    values = inverter.values()
    assert "Protect0080" in values[code.word]
    assert values["grid_status"] == "lost" and values["run_status"] == "off_grid"
    assert values["abf_grid_power"] == 0
    inverter.clear_fault("Protect0080")
    assert not bit_set()
    assert "Protect0080" not in inverter.values()[code.word]
    with pytest.raises(KeyError):
        inverter.inject_fault("Fault9999")


def test_urgent_fault_stops_the_inverter_until_cleared():
    p = physics(start=MIDSUMMER + 10 * 3600, weather_variability=0)
    p.inject_fault("Fault0108")  # Over-temperature Fault, level urgent
    list(run(p, 300))
    values = p.values()
    assert values["run_status"] == "fault" and p.rm.device_status(values) == "fault"
    assert values["pv_power"] == 0
    assert "Fault0108" in values["fault_word_1"]
    p.clear_fault("Fault0108")
    list(run(p, 180))
    assert p.values()["run_status"] == "on_grid"


def test_state_of_health_falls_slowly_and_low_battery_warning_follows_soc():
    p = physics(model="ECH6K-SML-EU", soc=25, start=MIDSUMMER - 86400 * 2)
    soh0 = p.soh
    seen_low = False
    for _ in run(p, 5 * 86400, step=300):
        if "Warn0040" in p.values()["warn_word_1"]:
            seen_low = True
            assert p.soc <= float(p.settings["batt_min_soc_on_grid"]) + 5
    assert seen_low
    assert soh0 - 0.2 < p.soh < soh0


def test_accelerated_clock_catches_up_with_the_wall_clock():
    wall = time.time()
    clock = SimClock(wall - 60, speed=3600)
    assert clock.now() < wall - 50 and not clock.live
    time.sleep(0.05)  # 180 simulated seconds: caught up
    assert clock.live
    assert abs(clock.now() - time.time()) < 0.01
    frozen = SimClock(MIDSUMMER, speed=0)
    time.sleep(0.01)
    assert frozen.now() == MIDSUMMER


def test_a_backfill_slot_is_integrated_in_coarse_steps_with_about_the_same_energy(monkeypatch):
    """30 days of demo history must fit in the backfill's two minutes: a 30-min gap costs two
    steps instead of thirty, and a day of PV comes out within a few percent of fine steps."""
    fine = physics(weather_variability=0, load_variability=0)
    for _ in run(fine, 86400, step=60):
        pass
    coarse = physics(weather_variability=0, load_variability=0)
    steps = []
    original = type(coarse)._step
    monkeypatch.setattr(
        type(coarse), "_step", lambda self, t, dt: steps.append(dt) or original(self, t, dt)
    )
    for _ in run(coarse, 86400, step=1800):
        pass
    assert len(steps) == 2 * 48 and max(steps) == 900
    pv_fine, pv_coarse = fine.values()["pv_energy_total"], coarse.values()["pv_energy_total"]
    assert pv_fine > 0 and abs(pv_coarse - pv_fine) / pv_fine < 0.05
