"""What a hybrid inverter does, minute by minute: PV, household load, battery, grid, faults.

`InverterPhysics` is a plain object with no Modbus and no clock of its own: `advance(t)` moves
it to epoch second `t` in steps of at most a minute, `values()` gives every input-register
point of its register map in engineering units, `apply_setting()` takes a holding-register value
(the Modbus layer calls it after a validated write). Sign conventions are the register map's:
battery power/current positive = discharging, grid power positive = import.

Operating modes (holding `work_mode`, guide Table 6-3):

- self_consumption: PV → load → battery → grid; the battery covers only the house's deficit, so
  it never exports;
- full_feed_in: PV → load → grid; the battery takes only what cannot be exported and covers the
  house's deficit;
- tou: the six TOU slots (time window, weekdays, months; base mode default/self-consumption/
  feed-in/charge/discharge/hold with their powers), plus the BatFromGrid window (grid charging
  at BatFromGridPower when GridChgEn) and anti-feedback (export ≤ FeedbackGridPower);
- emergency_charging: charge at EmergencyChargePower (PV first, grid for the rest) up to the
  target SOC, then hold;
- forced_off_grid: island on PV + battery down to OffGridReturnSOC, then back on the grid until
  the battery recovers;
- pv_mode: PV only, battery idle.

Export limit, active-power limit, battery current limits (holding settings and the BMS's own
temperature/SOC-dependent limits), min/max SOC and inverter rating are respected in every mode.
Faults come from the fault-code file: urgent-level codes stop the inverter, grid protection codes
disconnect it (EPS/off-grid operation), BMS/battery codes take the battery out of service.
"""

from __future__ import annotations

import math
import random
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devices.registermap import RegisterMap
from simulator.environment import (
    LoadModel,
    Site,
    SmoothNoise,
    Weather,
    ambient_temperature,
    clear_sky_ghi,
    local_datetime,
    plane_of_array,
    solar_position,
)
from simulator.readings import input_values

STEP_S = 60.0
# A longer gap (a slot of a backfill, an inverter that was not read for a while) is
# integrated in coarser steps: at 60 s, 30 days of history for the demo fleet are ~600 s of
# CPU, far more than the backfill's two minutes, and gateways would skip most slots.
COARSE_AFTER_S = 900.0
COARSE_STEP_S = 900.0
MAX_STEPS_PER_ADVANCE = 3000
STARTUP_S = 60.0  # grid-code reconnection delay after power-on, a cleared fault or grid return
ETA_INVERTER = 0.97
ETA_BATTERY = 0.975

# Behaviour of fault codes (which bit they raise comes from the fault-code file).
GRID_LOSS = {
    "Protect0010": (262.0, 50.0),
    "Protect0020": (256.0, 50.0),
    "Protect0030": (230.0, 51.9),
    "Protect0040": (230.0, 50.0),
    "Protect0050": (230.0, 50.0),
    "Protect0080": (184.0, 50.0),
    "Protect0110": (230.0, 47.2),
    "Protect0120": (0.0, 0.0),
    "Protect0160": (0.0, 50.0),
    "Protect0180": (230.0, 50.6),
}
BATTERY_OUT = {"Fault0201", "Fault0206", "Protect0130", "Protect0140", "Protect0150", "Warn0110"}
NO_DISCHARGE = {"Warn0070", "Protect0100"}
OVER_TEMP_DERATE = {"Warn0090"}
BATT_DERATE = {"Warn0050"}
METER_LOST = {"Warn0030"}
AUTO_LOW_BATT = "Warn0040"
AUTO_OFF_GRID_TEST = "Warn0170"


@dataclass(frozen=True)
class BatterySpec:
    capacity_kwh: float
    nominal_v: float
    rated_ah: int
    cells: int
    resistance_ohm: float


@dataclass(frozen=True)
class ModelProfile:
    """Physical facts about a model that a register map does not carry."""

    battery: BatterySpec
    pv_kwp: float  # typical array per inverter
    daily_kwh: float  # typical consumption of the building it serves
    pv_vmp: float  # string MPP voltage at 25 °C
    bus_v: float


PROFILES: dict[str, ModelProfile] = {
    # battery: capacity kWh, nominal V, Ah, cells, internal resistance; PV kWp, kWh/day, V, V
    "ECH6K-SML-EU": ModelProfile(BatterySpec(10.24, 51.2, 200, 16, 0.012), 7.2, 11, 380, 420),
    "ECH10K-TH-EU": ModelProfile(BatterySpec(20.48, 409.6, 50, 128, 0.09), 12, 18, 560, 760),
    "ECH20K-TH-EU": ModelProfile(BatterySpec(40.96, 409.6, 100, 128, 0.05), 24, 42, 600, 780),
}


def profile_for(rm: RegisterMap) -> ModelProfile:
    """The model's profile, or one scaled from the map's defaults for a model not listed."""
    known = PROFILES.get(rm.model_name)
    if known:
        return known
    kw = rm.rated_power_w / 1000
    volts = float(rm.default_value("batt_voltage"))
    ah = int(rm.default_value("batt_rated_capacity"))
    cells = max(1, round(volts / 3.2))
    battery = BatterySpec(volts * ah / 1000, volts, ah, cells, 0.02 * cells / 16)
    return ModelProfile(battery, kw * 1.2, kw * 1.8, 500.0, 700.0)


@dataclass
class Flows:
    """Power flows of the last step, W."""

    pv_avail: float = 0.0
    pv: float = 0.0
    load: float = 0.0
    served: float = 0.0
    batt: float = 0.0  # + discharge, − charge (DC)
    ac: float = 0.0  # inverter AC output, − when charging from the grid
    grid: float = 0.0  # + import, − export
    eps: float = 0.0


class InverterPhysics:
    """One hybrid inverter with its PV array, battery and the building it supplies."""

    def __init__(
        self,
        rm: RegisterMap,
        site: Site | None = None,
        *,
        start_ts: float,
        seed: int = 0,
        pv_kwp: float | None = None,
        daily_kwh: float | None = None,
        weather_variability: float = 1.0,
        load_variability: float = 1.0,
        soc: float | None = None,
        age_days: int | None = None,
    ) -> None:
        self.rm = rm
        self.site = site or Site()
        self.profile = profile_for(rm)
        self.battery = self.profile.battery
        self.rated_w = float(rm.rated_power_w)
        self.phases = rm.spec.phases
        self.mppt = rm.spec.mppt_count
        rng = random.Random(seed)
        self.pv_kwp = pv_kwp if pv_kwp is not None else self.profile.pv_kwp
        self.weather = Weather(seed, weather_variability)
        self.load_model = LoadModel(seed, daily_kwh or self.profile.daily_kwh, load_variability)
        self.noise = SmoothNoise(rng, 1.0, 300.0)
        self.phase_shares = _phase_shares(rng, self.phases)
        self.string_shares = _phase_shares(rng, self.mppt)
        self.settings: dict[str, Any] = dict(_holding_defaults(rm))
        self._tou_cache: list[dict] | None = None

        self.t = float(start_ts)
        self.soc = float(soc) if soc is not None else rng.uniform(35.0, 80.0)
        age = age_days if age_days is not None else rng.randint(60, 1500)
        self.soh = max(70.0, 100.0 - age / 365.25 * 1.6 - rng.uniform(0.0, 1.0))
        self.cycles = age * rng.uniform(0.55, 0.85)
        cap = self.battery.capacity_kwh
        self.total: dict[str, float] = {
            "pv": self.pv_kwp * age * rng.uniform(2.6, 3.4),
            "batt_charge": cap * self.cycles,
            "batt_discharge": cap * self.cycles * 0.93,
            "grid_import": self.load_model.daily_kwh * age * rng.uniform(0.25, 0.45),
            "grid_export": self.pv_kwp * age * rng.uniform(0.8, 1.4),
            "load": self.load_model.daily_kwh * age,
            "eps": age * rng.uniform(0.02, 0.08),
            "inv": self.pv_kwp * age * rng.uniform(2.4, 3.1),
        }
        self.run_hours = age * 24.0 * rng.uniform(0.55, 0.7)
        self.today: dict[str, float] = dict.fromkeys(self.total, 0.0)
        self._day = local_datetime(self.site, self.t).date()
        amb = ambient_temperature(self.site, self.t)
        self.batt_temp = 0.5 * amb + 10.0
        self.temps = dict.fromkeys(("internal", "heatsink", "boost", "inverter", "dcdc"), amb + 5)
        self.flows = Flows()
        self.injected: set[str] = set()
        self.auto: set[str] = set()
        self.startup_left = 0.0
        self.reconnect_left = 0.0
        self.run_status = "on_grid"
        self.grid_available = True
        self.off_grid = False
        self.offgrid_returned = False
        self.limit_reason = "none"
        self.bms_limits = (0.0, 0.0)
        self.smart_load_on = False
        self._smart_on_since = 0.0
        self.grid_v, self.grid_hz = 230.0, 50.0
        self._blocked_before = False
        # The AutoTest (CEI 0-21 self-test of the interface protection): the last run, if any.
        self.selftest: ProtectionSelfTest | None = None
        self.selftest_seed = seed
        self.selftest_slow: frozenset[int] = frozenset()  # steps made to trip too late
        self._step(self.t, 1.0)

    # ---- public API -----------------------------------------------------------------------

    @property
    def faults(self) -> set[str]:
        """Active fault codes (injected and raised by the model itself)."""
        return self.injected | self.auto

    def inject_fault(self, code: str) -> None:
        if self.rm.fault_code(code) is None:
            raise KeyError(f"{code} is not a fault code of {self.rm.model_name}")
        self.injected.add(code)

    def clear_fault(self, code: str) -> None:
        if self.rm.fault_code(code) is None:
            raise KeyError(f"{code} is not a fault code of {self.rm.model_name}")
        self.injected.discard(code)
        self.auto.discard(code)

    def fault_lists(self) -> dict[str, list[str]]:
        """Active codes per fault word, in bit order (as RegisterMap.decode_point gives them)."""
        out: dict[str, list[tuple[int, str]]] = {p.key: [] for p in self.rm.fault_words()}
        for code in self.faults:
            fc = self.rm.fault_code(code)
            if fc is not None and fc.word in out:
                out[fc.word].append((fc.bit, code))
        return {word: [code for _, code in sorted(bits)] for word, bits in out.items()}

    def fault_masks(self) -> dict[str, int]:
        masks = {p.key: 0 for p in self.rm.fault_words()}
        for code in self.faults:
            fc = self.rm.fault_code(code)
            if fc is not None and fc.word in masks:
                masks[fc.word] |= 1 << fc.bit
        return masks

    def apply_setting(self, key: str, value: Any) -> None:
        """A holding value changed (engineering units, as RegisterMap.decode_point gives it)."""
        old = self.settings.get(key)
        self.settings[key] = value
        if key.startswith("tou"):
            self._tou_cache = None
        if key == "power_switch" and old == "off" and value == "on":
            self.startup_left = STARTUP_S

    def start_self_test(self, t: float) -> str | None:
        """Start the AutoTest at `t` (a Start command): None when it runs, else why it was
        refused (the reason keys of the map's AutoTestReason). A running test goes on."""
        if self.selftest is not None and self.selftest.testing(t):
            return None
        reason = self._self_test_refusal(t)
        run = (self.selftest.run + 1) if self.selftest is not None else 1
        self.selftest = ProtectionSelfTest(
            selftest_steps(self.rm),
            t,
            seed=self.selftest_seed,
            run=run % 0x10000,
            refused=reason,
            slow=self.selftest_slow,
        )
        return reason

    def _self_test_refusal(self, t: float) -> str | None:
        if self.settings.get("power_switch") != "on":
            return "power_off"
        if any(code.startswith(("Fault", "Protect")) for code in self.faults):
            return "fault_active"
        if not self.grid_available or self.reconnect_left > 0:
            return "grid_unstable"
        if self.selftest is not None and self.selftest.relay_open(t):
            return "grid_unstable"  # still reconnecting after the last test
        if self.run_status not in ("on_grid", "standby") or self.off_grid:
            return "not_on_grid"
        return None

    def abort_self_test(self, t: float, reason: str) -> bool:
        """Stop a running AutoTest (Abort command, power off, a fault); False if none ran."""
        return self.selftest is not None and self.selftest.abort(t, reason)

    def self_test_values(self, t: float) -> dict[str, Any]:
        """The AutoTest registers at `t`; empty before the first test (the map's defaults)."""
        if self.selftest is None:
            return {}
        values = self.selftest.values(t)
        if self.selftest.relay_open(t):
            values["run_status"] = "self_check" if self.selftest.testing(t) else "waiting"
        return values

    def advance(self, t: float) -> None:
        """Run the model forward to epoch second `t` (never backwards)."""
        gap = t - self.t
        if gap <= 0:
            return
        step = STEP_S if gap <= COARSE_AFTER_S else COARSE_STEP_S
        steps = min(MAX_STEPS_PER_ADVANCE, max(1, math.ceil(gap / step)))
        dt = gap / steps
        for i in range(1, steps + 1):
            self._step(self.t + dt * (i - 0.5), dt)
            self.t = self.t + dt if i < steps else t

    # ---- limits -----------------------------------------------------------------------------

    def ocv(self) -> float:
        return self.battery.nominal_v * (0.94 + 0.12 * self.soc / 100.0)

    def capacity_wh(self) -> float:
        return self.battery.capacity_kwh * 1000.0 * self.soh / 100.0

    def _bms_limits(self) -> tuple[float, float]:
        """Charge and discharge current the BMS allows now, A (0.1 A resolution)."""
        chg = float(self.rm.default_value("batt_chg_limit_current"))
        dis = float(self.rm.default_value("batt_dchg_limit_current"))
        temp = self.batt_temp
        if temp < 0 or temp > 55:
            chg = 0.0
        elif temp < 10:
            chg *= 0.3
        elif temp > 45:
            chg *= 0.5
        if temp < -10 or temp > 55:
            dis = 0.0
        if self.soc > 95:
            chg *= max(0.05, (100.0 - self.soc) / 5.0)
        if self.faults & BATT_DERATE:
            chg, dis = chg * 0.5, dis * 0.5
        return math.floor(chg * 10) / 10, math.floor(dis * 10) / 10

    def current_limits(self) -> tuple[float, float]:
        """Effective (charge, discharge) current limits, A: holding settings and BMS."""
        bms_chg, bms_dis = self.bms_limits
        return (
            min(float(self.settings["batt_max_charge_current"]), bms_chg),
            min(float(self.settings["batt_max_discharge_current"]), bms_dis),
        )

    # ---- one step ---------------------------------------------------------------------------

    def _step(self, t: float, dt: float) -> None:
        site = self.site
        local = local_datetime(site, t)
        if local.date() != self._day:
            self._day = local.date()
            self.today = dict.fromkeys(self.total, 0.0)
        elevation, azimuth = solar_position(site.latitude, site.longitude, t)
        ghi = clear_sky_ghi(elevation) * self.weather.clear_sky_index(t, dt)
        poa = plane_of_array(
            elevation, azimuth, ghi, panel_azimuth_deg=180.0 if site.latitude >= 0 else 0.0
        )
        ambient = ambient_temperature(site, t)
        self.cell_temp = ambient + poa / 800.0 * 25.0
        pv_avail = self.pv_kwp * poa * (1 - 0.0037 * (self.cell_temp - 25.0)) * 0.88
        pv_avail = min(max(pv_avail, 0.0), 1.3 * self.rated_w)
        self.poa = poa
        load = self.load_model.power_w(local, dt)
        load += self._smart_load(local, t)
        self.bms_limits = self._bms_limits()

        faults = self.faults
        levels = {self.rm.fault_code(c).level for c in faults if self.rm.fault_code(c)}
        on = self.settings.get("power_switch") == "on"
        stopped = "urgent" in levels
        grid_fault = next((c for c in sorted(faults) if c in GRID_LOSS), None)
        was_available = self.grid_available
        self.grid_available = grid_fault is None
        self.grid_v, self.grid_hz = GRID_LOSS[grid_fault] if grid_fault else (230.0, 50.0)
        blocked = not on or stopped
        if self._blocked_before and not blocked:
            self.startup_left = STARTUP_S
        self._blocked_before = blocked
        if self.grid_available and not was_available:
            self.reconnect_left = STARTUP_S  # grid-code reconnection delay; EPS runs meanwhile

        mode = self.settings.get("work_mode")
        islanded = self._forced_off_grid(mode)
        flows = Flows(pv_avail=pv_avail, load=load)
        self.limit_reason = "none"
        if blocked or self.startup_left > 0:
            flows.grid = load if self.grid_available else 0.0
            flows.served = flows.grid
            if blocked:
                self.run_status = "shutdown" if not on else "fault"
            else:
                self.run_status = "self_check" if self.startup_left < STARTUP_S / 2 else "waiting"
            self.off_grid = False
        elif self.selftest is not None and self.selftest.relay_open(t):
            # AutoTest: the interface relay is open; the grid supplies the house meanwhile.
            flows.grid = load if self.grid_available else 0.0
            flows.served = flows.grid
            self.run_status = "self_check" if self.selftest.testing(t) else "waiting"
            self.off_grid = False
        elif not self.grid_available or islanded or self.reconnect_left > 0:
            self._dispatch_off_grid(flows, dt)
            self.run_status = "off_grid"
            self.off_grid = True
        else:
            self._dispatch_on_grid(flows, local, mode, dt)
            idle = flows.pv < 10 and abs(flows.batt) < 10
            self.run_status = "standby" if idle else "on_grid"
            self.off_grid = False
        if not blocked:
            self.startup_left = max(0.0, self.startup_left - dt)
            if self.grid_available:
                self.reconnect_left = max(0.0, self.reconnect_left - dt)
        self.flows = flows
        self._integrate(flows, dt, ambient)
        self._auto_warnings(mode, islanded)

    def _forced_off_grid(self, mode: Any) -> bool:
        if mode != "forced_off_grid":
            self.offgrid_returned = False
            return False
        return_soc = float(self.settings["offgrid_return_soc"])
        if not self.offgrid_returned and self.soc <= return_soc:
            self.offgrid_returned = True
        elif self.offgrid_returned and self.soc >= return_soc + 10:
            self.offgrid_returned = False
        return not self.offgrid_returned

    def _battery_window(self, dt: float, *, off_grid: bool) -> tuple[float, float]:
        """Largest DC charge and discharge power the battery may take this step, W."""
        faults = self.faults
        if faults & BATTERY_OUT:
            return 0.0, 0.0
        chg_a, dis_a = self.current_limits()
        v = self.ocv()
        cap = self.capacity_wh()
        max_soc = min(100.0, float(self.settings["batt_max_charge_soc"]))
        key = "batt_min_soc_off_grid" if off_grid else "batt_min_soc_on_grid"
        min_soc = float(self.settings[key])
        room_chg = max(0.0, max_soc - self.soc) / 100.0 * cap * 3600.0 / dt / ETA_BATTERY
        room_dis = max(0.0, self.soc - min_soc) / 100.0 * cap * 3600.0 / dt * ETA_BATTERY
        chg = min(chg_a * v, room_chg)
        dis = 0.0 if faults & NO_DISCHARGE else min(dis_a * v, room_dis)
        return max(chg, 0.0), max(dis, 0.0)

    def _ac_limit(self) -> float:
        limit = self.rated_w * float(self.settings["active_power_limit"]) / 100.0
        if self.faults & OVER_TEMP_DERATE:
            limit *= 0.5
        return limit

    def _dispatch_off_grid(self, f: Flows, dt: float) -> None:
        chg_max, dis_max = self._battery_window(dt, off_grid=True)
        limit = self._ac_limit()
        need_dc = min(f.load, limit) / ETA_INVERTER
        batt = need_dc - f.pv_avail
        pv = f.pv_avail
        if batt > dis_max:
            batt = dis_max  # not enough: the EPS sheds load
        elif batt < -chg_max:
            batt = -chg_max
            pv = need_dc + chg_max  # battery full: curtail PV
        f.pv, f.batt = max(pv, 0.0), batt
        f.ac = max(0.0, (f.pv + f.batt) * ETA_INVERTER)
        f.served = f.eps = min(f.load, f.ac)
        f.grid = 0.0

    def _strategy(self, local: datetime, mode: Any) -> tuple[str, float]:
        """(kind, power W) the battery should follow in on-grid operation."""
        s = self.settings
        if mode == "pv_mode":
            return "idle", 0.0
        if mode == "full_feed_in":
            return "feed_in", 0.0
        if mode == "emergency_charging":
            if self.soc < float(s["emergency_charge_target_soc"]):
                return "charge", float(s["emergency_charge_power"]) * 1000.0
            return "hold", 0.0
        if mode == "tou":
            if s.get("tou_grid_charge_enable") == "enabled" and _in_window(
                local, s["tou_bat_from_grid_start"], s["tou_bat_from_grid_end"]
            ):
                return "charge", float(s["tou_bat_from_grid_power"]) * 1000.0
            slot = self._active_tou_slot(local)
            if slot is not None:
                kind = {
                    "charge": "charge",
                    "discharge": "discharge",
                    "hold": "hold",
                    "full_feed_in": "feed_in",
                }.get(slot["mode"], "self")
                power = slot["charge_power"] if kind == "charge" else slot["discharge_power"]
                return kind, float(power) * 1000.0
        return "self", 0.0

    def _dispatch_on_grid(self, f: Flows, local: datetime, mode: Any, dt: float) -> None:
        chg_max, dis_max = self._battery_window(dt, off_grid=False)
        kind, power = self._strategy(local, mode)
        ac_max = self._ac_limit()
        s = self.settings
        export_cap = math.inf
        if s.get("export_limit_enable") == "enabled":
            export_cap = float(s["export_limit_power"]) * 1000.0
        if mode == "tou" and s.get("tou_anti_feedback_enable") == "enabled":
            export_cap = min(export_cap, float(s["tou_feedback_grid_power"]) * 1000.0)
        pv, load = f.pv_avail, f.load
        deficit_dc = max(0.0, load / ETA_INVERTER - pv)
        surplus_dc = max(0.0, pv - load / ETA_INVERTER)
        store_surplus = kind != "idle"
        if kind == "self":
            batt = min(deficit_dc, dis_max) if deficit_dc > 0 else -min(surplus_dc, chg_max)
        elif kind == "feed_in":
            spare_dc = max(0.0, pv - ac_max / ETA_INVERTER)
            batt = min(deficit_dc, dis_max) if deficit_dc > 0 else -min(spare_dc, chg_max)
        elif kind == "charge":
            batt = -min(max(power, surplus_dc), chg_max)
        elif kind == "discharge":
            batt = min(power, dis_max)
        else:  # hold, idle
            batt = 0.0
        # AC rating and export cap: shed battery discharge, then store, then curtail PV.
        out_max = min(ac_max, load + export_cap)
        dc = pv + batt
        excess = dc - out_max / ETA_INVERTER
        curtailed = False
        if excess > 1e-9:
            cut = min(max(batt, 0.0), excess)
            batt -= cut
            excess -= cut
            if excess > 0 and store_surplus:
                room = chg_max + min(batt, 0.0)
                take = min(room, excess)
                batt -= take
                excess -= take
            if excess > 0:
                pv = max(0.0, pv - excess)
                curtailed = True
        dc = pv + batt
        if dc < 0 and -dc * (1 / ETA_INVERTER) > ac_max:  # charging from the grid at the rating
            batt = -(ac_max * ETA_INVERTER + pv)
            dc = pv + batt
        f.pv, f.batt = pv, batt
        f.ac = dc * ETA_INVERTER if dc >= 0 else dc / ETA_INVERTER
        f.grid = load - f.ac
        f.served = load
        f.eps = 0.3 * load if self.phases == 1 else 0.2 * load
        if curtailed:
            binding_export = load + export_cap < ac_max
            if binding_export:
                self.limit_reason = "export_limit"
            elif self.faults & OVER_TEMP_DERATE:
                self.limit_reason = "over_temperature"
            elif float(s["active_power_limit"]) < 100:
                self.limit_reason = "remote_command"
        elif kind in ("charge", "discharge") and abs(batt) + 1 < power:
            self.limit_reason = "battery_limit"

    def _active_tou_slot(self, local: datetime) -> dict | None:
        if self._tou_cache is None:
            s = self.settings
            slots = []
            for i in range(1, 7):
                mode = s.get(f"tou{i}_mode")
                if mode in (None, "empty"):
                    continue
                slots.append(
                    {
                        "mode": mode,
                        "start": s[f"tou{i}_start"],
                        "end": s[f"tou{i}_end"],
                        "days": set(s[f"tou{i}_weekdays"]),
                        "months": set(s[f"tou{i}_months"]),
                        "charge_power": s[f"tou{i}_charge_power"],
                        "discharge_power": s[f"tou{i}_discharge_power"],
                    }
                )
            self._tou_cache = slots
        day = _WEEKDAYS[local.weekday()]
        month = _MONTHS[local.month - 1]
        for slot in self._tou_cache:
            if (
                day in slot["days"]
                and month in slot["months"]
                and _in_window(local, slot["start"], slot["end"])
            ):
                return slot
        return None

    def _smart_load(self, local: datetime, t: float) -> float:
        s = self.settings
        mode = s.get("smart_load_mode")
        on = self.smart_load_on
        if mode == "manual":
            want = s.get("smart_load_manual_switch") == "on"
        elif mode == "battery_energy":
            want = self.soc >= float(s["smart_load_soc_on"]) or (
                on and self.soc > float(s["smart_load_soc_off"])
            )
        elif mode == "time_control":
            want = _WEEKDAYS[local.weekday()] in s.get("smart_load_weekdays", []) and _in_window(
                local, s["smart_load_start_time"], s["smart_load_stop_time"]
            )
        elif mode == "surplus_pv":
            export = -self.flows.grid
            want = export >= float(s["smart_load_surplus_on_power"]) * 1000 or (
                on
                and export + float(s["smart_load_rated_power"]) * 1000
                > float(s["smart_load_surplus_off_power"]) * 1000
            )
        else:
            want = False
        if self.off_grid and s.get("smart_load_offgrid_enable") != "enabled":
            want = False
        min_on = float(s.get("smart_load_min_on_time", 0)) * 60
        if on and not want and t - self._smart_on_since < min_on:
            want = True
        if want and not on:
            self._smart_on_since = t
        self.smart_load_on = want
        return float(s.get("smart_load_rated_power", 0)) * 1000 if want else 0.0

    # ---- integration ----------------------------------------------------------------------

    def _integrate(self, f: Flows, dt: float, ambient: float) -> None:
        hours = dt / 3600.0
        cap = self.capacity_wh()
        if f.batt < 0:
            self.soc += -f.batt * ETA_BATTERY * hours / cap * 100.0
        else:
            self.soc -= f.batt / ETA_BATTERY * hours / cap * 100.0
        self.soc = min(100.0, max(0.0, self.soc))
        throughput_cycles = abs(f.batt) * hours / (2 * cap)
        self.cycles += throughput_cycles
        self.soh = max(60.0, self.soh - throughput_cycles * 20.0 / 6000 - hours / 8766 * 1.2)
        kwh = hours / 1000.0
        add = {
            "pv": f.pv,
            "batt_charge": max(-f.batt, 0.0),
            "batt_discharge": max(f.batt, 0.0),
            "grid_import": max(f.grid, 0.0),
            "grid_export": max(-f.grid, 0.0),
            "load": f.served,
            "eps": f.eps,
            "inv": max(f.ac, 0.0),
        }
        for key, watts in add.items():
            self.total[key] += watts * kwh
            self.today[key] += watts * kwh
        if self.run_status in ("on_grid", "off_grid", "standby"):
            self.run_hours += hours
        # Temperatures: first-order lags towards targets set by ambient and power.
        running = self.run_status in ("on_grid", "off_grid")
        batt_env = 0.5 * ambient + 10.0
        batt_target = batt_env + 9.0 * abs(f.batt) / max(self.rated_w, 1.0)
        self.batt_temp += (batt_target - self.batt_temp) * (1 - math.exp(-dt / 5400.0))
        env = 0.6 * ambient + 9.0
        lf = abs(f.ac) / self.rated_w if running else 0.0
        pf = f.pv / self.rated_w if running else 0.0
        bf = abs(f.batt) / self.rated_w if running else 0.0
        targets = {
            "internal": env + (12.0 + 14.0 * lf if running else 3.0),
            "heatsink": env + (5.0 + 30.0 * lf if running else 0.0),
            "boost": env + (5.0 + 28.0 * pf if running else 0.0),
            "inverter": env + (8.0 + 32.0 * lf if running else 0.0),
            "dcdc": env + (5.0 + 26.0 * bf if running else 0.0),
        }
        k = 1 - math.exp(-dt / 1200.0)
        for name, target in targets.items():
            self.temps[name] += (target - self.temps[name]) * k
        self.noise.step(dt)

    def _auto_warnings(self, mode: Any, islanded: bool) -> None:
        min_soc = float(self.settings["batt_min_soc_on_grid"])
        low = self.soc <= min_soc + 0.5 and self.settings.get("power_switch") == "on"
        if low and not self.faults & BATTERY_OUT:
            self._auto(AUTO_LOW_BATT, True)
        elif self.soc >= min_soc + 5:
            self._auto(AUTO_LOW_BATT, False)
        self._auto(AUTO_OFF_GRID_TEST, islanded and self.run_status == "off_grid")

    def _auto(self, code: str, active: bool) -> None:
        if self.rm.fault_code(code) is None:
            return
        if active:
            self.auto.add(code)
        else:
            self.auto.discard(code)

    # ---- register values ------------------------------------------------------------------

    def values(self, identity: dict[str, Any] | None = None) -> dict[str, Any]:
        """Engineering values of every input point the map has (the inverter's true state).

        `identity` overrides the device-information points (serial, model, firmware …).
        """
        return input_values(self, identity or {})


_DEFAULTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _holding_defaults(rm: RegisterMap) -> dict[str, Any]:
    defaults = _DEFAULTS.get(rm)
    if defaults is None:
        defaults = _DEFAULTS[rm] = {p.key: rm.default_value(p.key) for p in rm.holding_points()}
    return defaults


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _minutes(hhmm: Any) -> int:
    if isinstance(hhmm, str) and ":" in hhmm:
        h, m = hhmm.split(":")
        return int(h) * 60 + int(m)
    return 0


def _in_window(local: datetime, start: Any, end: Any) -> bool:
    """Local time inside [start, end); end 23:59 means the end of the day; wraps midnight."""
    now = local.hour * 60 + local.minute
    a, b = _minutes(start), _minutes(end)
    if b == 23 * 60 + 59:
        b = 24 * 60
    if a == b:
        return False
    return a <= now < b if a < b else now >= a or now < b


def _phase_shares(rng: random.Random, n: int) -> tuple[float, ...]:
    raw = [1.0 + rng.uniform(-0.08, 0.08) for _ in range(n)]
    total = sum(raw)
    return tuple(r / total for r in raw)


# ---- the CEI 0-21 self-test of the interface protection (AutoTest) ----------------------------

#: Simulated seconds of each phase of a self-test step: the test value ramps from the grid's
#: value to the threshold, the protection trips after its trip time, the result is recorded.
SELFTEST_LEAD_S = 1.0
SELFTEST_RAMP_S = 2.0
SELFTEST_RECORD_S = 1.0
#: After the last step the interface relay closes again after this delay (the inverter runs
#: its reconnection checks meanwhile).
SELFTEST_RECONNECT_S = 10.0
NOMINAL_V = 230.0
NOMINAL_HZ = 50.0
#: Accuracy CEI 0-21 allows the protection: 1 % of Vn for voltage, 20 mHz for frequency; trip
#: times within the setting plus 3 % + 20 ms.
SELFTEST_TOLERANCE = {"V": 0.01 * NOMINAL_V, "Hz": 0.02}
SELFTEST_TIME_TOLERANCE = (0.03, 20.0)


@dataclass(frozen=True)
class SelfTestStep:
    """One protection function of the sequence, as the register map sets it."""

    index: int
    threshold: float
    time_limit_ms: int
    unit: str

    @property
    def nominal(self) -> float:
        return NOMINAL_V if self.unit == "V" else NOMINAL_HZ

    @property
    def tolerance(self) -> float:
        return SELFTEST_TOLERANCE.get(self.unit, 0.0)

    def passes(self, value: float, time_ms: float) -> bool:
        rel, fixed = SELFTEST_TIME_TOLERANCE
        return (
            abs(value - self.threshold) <= self.tolerance + 1e-9
            and time_ms <= self.time_limit_ms * (1 + rel) + fixed
        )


def selftest_steps(rm: RegisterMap) -> list[SelfTestStep]:
    """The sequence of the map's AutoTest block (empty for a map without one)."""
    steps = []
    index = 1
    while f"autotest{index}_threshold" in rm.points:
        steps.append(
            SelfTestStep(
                index,
                float(rm.default_value(f"autotest{index}_threshold")),
                int(rm.default_value(f"autotest{index}_time_limit")),
                rm.point(f"autotest{index}_threshold").unit,
            )
        )
        index += 1
    return steps


@dataclass
class _StepRun:
    step: SelfTestStep
    start: float
    crossed: float  # the test value reaches the threshold
    tripped: float  # the protection opens the relay
    end: float
    trip_value: float
    trip_ms: int
    passed: bool


class ProtectionSelfTest:
    """One run of the self-test, started at `start` (epoch seconds), as a function of time.

    For each step the inverter shifts its measurement from the grid's value towards the
    threshold (over SELFTEST_RAMP_S), the protection trips once the trip time has passed beyond
    the threshold, and the trip value and time are recorded; the relay stays open for the
    whole sequence and closes SELFTEST_RECONNECT_S after it. Everything is computed from the
    start time and a seed, so any moment can be read without stepping through it. `slow` holds
    step numbers whose protection is made to trip too late (the test's failing case).
    """

    def __init__(
        self,
        steps: list[SelfTestStep],
        start: float,
        *,
        seed: int = 0,
        run: int = 1,
        refused: str | None = None,
        slow: frozenset[int] = frozenset(),
    ) -> None:
        self.start = start
        self.run = run
        self.refused = refused
        self.aborted_at: float | None = None
        self.reason = refused or "none"
        rng = random.Random(seed * 7919 + run)
        self.runs: list[_StepRun] = []
        t = start + SELFTEST_LEAD_S
        for step in steps:
            crossed = t + SELFTEST_RAMP_S
            if step.index in slow:
                trip_ms = step.time_limit_ms * 1.2 + 60
            else:
                trip_ms = step.time_limit_ms * rng.uniform(0.97, 0.995) + rng.uniform(4.0, 16.0)
            value = step.threshold + step.tolerance * rng.uniform(-0.4, 0.4)
            value = round(value, 1 if step.unit == "V" else 2)
            tripped = crossed + trip_ms / 1000.0
            end = tripped + SELFTEST_RECORD_S
            self.runs.append(
                _StepRun(
                    step,
                    t,
                    crossed,
                    tripped,
                    end,
                    value,
                    round(trip_ms),
                    step.passes(value, trip_ms),
                )
            )
            t = end
        self.end = t

    def abort(self, t: float, reason: str) -> bool:
        """Stop a running test at `t`; False when it was not running."""
        if self.state(t) != "running":
            return False
        self.aborted_at = t
        self.reason = reason
        return True

    @property
    def finished_at(self) -> float:
        """When the sequence ended (or was aborted)."""
        if self.refused:
            return self.start
        return self.aborted_at if self.aborted_at is not None else self.end

    def state(self, t: float) -> str:
        if self.refused:
            return "refused"
        if self.aborted_at is not None and t >= self.aborted_at:
            return "aborted"
        if t < self.end:
            return "running"
        return "passed" if all(r.passed for r in self.runs) else "failed"

    def relay_open(self, t: float) -> bool:
        """The inverter is off the grid: testing, or waiting to reconnect afterwards."""
        if self.refused:
            return False
        return self.start <= t < self.finished_at + SELFTEST_RECONNECT_S

    def testing(self, t: float) -> bool:
        return self.state(t) == "running"

    def current_step(self, t: float) -> int:
        if self.refused:
            return 0
        t = min(t, self.finished_at)
        current = 0
        for r in self.runs:
            if t >= r.start:
                current = r.step.index
        return current

    def values(self, t: float) -> dict[str, Any]:
        """The AutoTest input registers at `t` (engineering units, by point key)."""
        state = self.state(t)
        out: dict[str, Any] = {
            "autotest_state": state,
            "autotest_step": self.current_step(t),
            "autotest_reason": self.reason if state in ("refused", "aborted") else "none",
            "autotest_run_count": self.run,
        }
        stop = min(t, self.finished_at)
        for r in self.runs:
            p = f"autotest{r.step.index}_"
            out[p + "threshold"] = r.step.threshold
            out[p + "time_limit"] = r.step.time_limit_ms
            value, time_ms, result, step_state = 0.0, 0, "none", "pending"
            if self.refused:
                pass
            elif stop >= r.end or stop >= r.tripped:
                step_state = "done" if stop >= r.end else "testing"
                value, time_ms = r.trip_value, r.trip_ms
                result = ("pass" if r.passed else "fail") if step_state == "done" else "none"
            elif stop >= r.start:
                # Ramping: the value the test applies now, then holding beyond the threshold.
                share = min(1.0, (stop - r.start) / SELFTEST_RAMP_S)
                value = r.step.nominal + (r.trip_value - r.step.nominal) * share
                step_state = "testing"
            if step_state == "testing" and self.aborted_at is not None and t >= self.aborted_at:
                step_state, result = "skipped", "none"
            elif step_state == "pending" and self.aborted_at is not None:
                step_state = "skipped"
            out[p + "state"] = step_state
            out[p + "trip_value"] = round(value, 2)
            out[p + "trip_time"] = time_ms
            out[p + "result"] = result
        return out
