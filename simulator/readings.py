"""Turn an `InverterPhysics` into the values of its input registers (engineering units).

Keys are the register map's point keys; a key the map lacks is dropped, a map point this module
does not compute keeps the map's default. Device information (serial, model, firmware …) comes
from the inverter's identity.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.physics import InverterPhysics

_PHASE_KEYS = ("l1", "l2", "l3")


def input_values(phys: InverterPhysics, identity: dict[str, Any]) -> dict[str, Any]:
    rm = phys.rm
    f = phys.flows
    bat = phys.battery
    v: dict[str, Any] = {}
    running = phys.run_status in ("on_grid", "off_grid")
    noise = phys.noise.value

    # Battery
    ocv = phys.ocv()
    current = f.batt / ocv if ocv else 0.0
    volts = ocv - current * bat.resistance_ohm
    chg_a, dis_a = phys.bms_limits
    cell_v = volts / bat.cells
    v.update(
        batt_voltage=volts,
        batt_current=current,
        batt_power=volts * current,
        batt_soc=round(phys.soc),
        batt_soh=round(phys.soh),
        batt_temp=phys.batt_temp,
        batt_chg_limit_current=chg_a,
        batt_dchg_limit_current=dis_a,
        bms_cell_voltage_max=cell_v + 0.012 + 0.002 * abs(noise),
        bms_cell_voltage_min=cell_v - 0.012 - 0.002 * abs(noise),
        bms_cell_temp_max=phys.batt_temp + 0.8,
        bms_cell_temp_min=phys.batt_temp - 0.7,
        bms_cycle_count=int(phys.cycles),
        batt_rated_capacity=bat.rated_ah,
        batt_remaining_energy=phys.soc / 100 * phys.capacity_wh() / 1000,
        bms_comm_status="lost" if "Fault0201" in phys.faults else "normal",
    )
    # Grid meter (ABF) and AC side
    phases = phys.phases
    shares = phys.phase_shares
    grid_v = phys.grid_v
    grid_hz = phys.grid_hz
    meter_ok = not phys.faults & {"Warn0030"}
    v.update(
        grid_power_kw=f.grid / 1000 if meter_ok else 0.0,
        abf_grid_power=f.grid if meter_ok else 0.0,
        abf_meter_status="normal" if meter_ok else "comm_lost",
        grid_total_buy_energy=int(phys.total["grid_import"]) % 65536,
        grid_total_sell_energy=int(phys.total["grid_export"]) % 65536,
        abf_power_factor=0.99 if abs(f.grid) > 50 else 1.0,
        pv_power=f.pv,
        grid_frequency=grid_hz + (0.02 * noise if grid_hz else 0.0),
        inv_frequency=(50.0 + 0.02 * noise) if running else 0.0,
    )
    pf_set = float(phys.settings.get("power_factor_setpoint", 1.0)) or 1.0
    reactive = f.ac * math.tan(math.acos(min(1.0, abs(pf_set)))) * (1 if pf_set > 0 else -1)
    inv_v = (grid_v if not phys.off_grid else 230.0) if running else 0.0
    for i, share in enumerate(shares):
        ph = _PHASE_KEYS[i]
        gv = grid_v + (1.5 * noise * (i + 1) / phases if grid_v else 0.0)
        v[f"abf_grid_power_{ph}"] = f.grid * share if meter_ok else 0.0
        v[f"grid_voltage_{ph}"] = max(gv, 0.0)
        v[f"grid_current_{ph}"] = abs(f.grid * share) / gv if gv > 1 else 0.0
        v[f"inv_voltage_{ph}"] = inv_v
        v[f"inv_power_{ph}"] = f.ac * share
        v[f"inv_current_{ph}"] = abs(f.ac * share) / inv_v if inv_v > 1 else 0.0
        v[f"eps_voltage_{ph}"] = 230.0 if running else 0.0
        v[f"eps_power_{ph}"] = f.eps * share
        v[f"eps_current_{ph}"] = f.eps * share / 230.0 if running else 0.0
        v[f"load_power_{ph}"] = f.served * share
    v.update(
        inv_active_power=f.ac,
        inv_reactive_power=reactive if running else 0.0,
        inv_apparent_power=math.hypot(f.ac, reactive) if running else 0.0,
        inv_power_factor=pf_set if running and abs(f.ac) > 50 else 1.0,
        eps_power=f.eps,
        eps_frequency=50.0 if running else 0.0,
        load_power=f.served,
        temp_internal=phys.temps["internal"],
        temp_heatsink=phys.temps["heatsink"],
        temp_boost=phys.temps["boost"],
        temp_inverter=phys.temps["inverter"],
        temp_battery_dcdc=phys.temps["dcdc"],
    )
    bus = phys.profile.bus_v if running else 0.0
    v.update(
        bus_voltage=bus + 2 * noise if bus else 0.0,
        bus_voltage_pos=bus / 2 + noise if bus else 0.0,
        bus_voltage_neg=bus / 2 - noise if bus else 0.0,
        insulation_resistance=180 if "Fault0101" in phys.faults else 2000,
        leakage_current=(12 + 2 * noise) if running else 0,
        dc_injection_current=round(3 + noise) if running else 0,
    )
    # PV strings
    vmp = phys.profile.pv_vmp * (1 - 0.0035 * (phys.cell_temp - 25))
    lit = phys.poa > 15
    for i, share in enumerate(phys.string_shares):
        n = i + 1
        power = f.pv * share
        volts_pv = vmp * (1 + 0.01 * noise) if lit and phys.run_status != "shutdown" else 0.0
        if lit and power < 1:
            volts_pv = vmp * 1.18  # open circuit: curtailed or not yet connected
        v[f"pv{n}_voltage"] = volts_pv
        v[f"pv{n}_power"] = power
        v[f"pv{n}_current"] = power / volts_pv if volts_pv > 1 else 0.0
    # Energy counters (kWh, 0.1 kWh registers are floored so they never step back)
    for key, name in (
        ("pv", "pv"),
        ("batt_charge", "batt_charge"),
        ("batt_discharge", "batt_discharge"),
        ("grid_import", "grid_import"),
        ("grid_export", "grid_export"),
        ("load", "load"),
        ("eps", "eps"),
        ("inv", "inv"),
    ):
        v[f"{name}_energy_today"] = math.floor(phys.today[key] * 10) / 10
        v[f"{name}_energy_total"] = math.floor(phys.total[key] * 10) / 10
    v["total_run_time"] = int(phys.run_hours)
    # Status
    if abs(f.batt) < 10:
        batt_status = "sleep" if phys.faults & {"Fault0201"} else "idle"
    else:
        batt_status = "discharging" if f.batt > 0 else "charging"
    v.update(
        run_status=phys.run_status,
        work_mode_active=phys.settings.get("work_mode"),
        batt_status=batt_status,
        grid_status="connected" if phys.grid_available else "lost",
        smart_load_state="on" if phys.smart_load_on else "off",
        power_limit_reason=phys.limit_reason,
        startup_countdown=int(math.ceil(max(phys.startup_left, phys.reconnect_left))),
    )
    v.update(phys.fault_lists())

    out: dict[str, Any] = {}
    for p in rm.points.values():
        if p.table != "input":
            continue
        if p.key in identity:
            out[p.key] = identity[p.key]
        elif p.key in v:
            out[p.key] = v[p.key]
        else:
            out[p.key] = rm.default_value(p.key)
    return out
