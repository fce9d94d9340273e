"""Simulated inverters as Modbus servers: reads decode to the true state, writes are validated
with the register map, and the standalone `--inverter` server answers any Modbus master."""

import asyncio
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import call_command
from pymodbus.client import AsyncModbusTcpClient, ModbusTcpClient

from devices.registermap import MAP_DIR, RegisterMap
from simulator.bus import BusClient, BusServer, BusTimeout
from simulator.clock import SimClock
from simulator.inverter import SimulatedInverter, serve_standalone, server_port

NOON = datetime(2026, 6, 21, 10, 0, tzinfo=UTC).timestamp()
ROOT = Path(__file__).resolve().parents[1]


def close_enough(rm: RegisterMap, key: str, decoded, true) -> bool:
    if isinstance(true, float | int) and not isinstance(true, bool):
        return abs(decoded - true) <= rm.point(key).scale / 2 + 1e-9
    return decoded == true


async def with_server(inverter, body):
    server = await serve_standalone(inverter, port=0)
    client = AsyncModbusTcpClient("127.0.0.1", port=server_port(server), timeout=2, retries=0)
    try:
        assert await client.connect()
        return await body(client)
    finally:
        client.close()
        await server.shutdown()


def test_input_registers_decode_to_the_simulators_own_state():
    clock = SimClock(NOON, speed=0)
    inverter = SimulatedInverter("INVREAD000001", "ECH10K-TH-EU", clock=clock, soc=63)
    rm = inverter.rm

    async def body(client):
        blocks = {}
        for b in rm.poll_blocks:
            response = await client.read_input_registers(b.start, count=b.count, device_id=1)
            assert not response.isError()
            blocks[(b.table, b.start)] = response.registers
        return blocks

    decoded = rm.decode_blocks(asyncio.run(with_server(inverter, body)))
    true = inverter.values()
    assert set(rm.telemetry_keys()) <= set(decoded)
    wrong = {
        k: (decoded[k], true[k]) for k in decoded if not close_enough(rm, k, decoded[k], true[k])
    }
    assert wrong == {}
    assert decoded["serial_number"] == "INVREAD000001"
    assert decoded["batt_soc"] == 63 and decoded["pv_power"] > 1000


def test_a_valid_holding_write_changes_the_register_and_the_behaviour():
    clock = SimClock(NOON, speed=0)
    inverter = SimulatedInverter("INVWRITE00001", "ECH6K-SML-EU", clock=clock, soc=50)
    rm = inverter.rm
    switch = rm.point("power_switch")
    mode = rm.point("work_mode")

    async def body(client):
        assert inverter.values()["pv_power"] > 500
        response = await client.write_register(mode.address, 5, device_id=1)  # pv_mode
        assert not response.isError()
        read = await client.read_holding_registers(mode.address, count=1, device_id=1)
        assert read.registers == [5]
        clock.advance(120)
        values = rm.decode_blocks(
            {("input", 0x0600): (await client.read_input_registers(0x0600, count=4)).registers}
        )
        assert values["batt_power"] == 0  # PV mode leaves the battery alone
        response = await client.write_registers(switch.address, [0], device_id=1)  # off
        assert not response.isError()
        clock.advance(120)
        pv = await client.read_input_registers(rm.point("pv_power").address, count=1)
        status = await client.read_input_registers(rm.point("run_status").address, count=1)
        return pv.registers, status.registers

    pv, status = asyncio.run(with_server(inverter, body))
    assert pv == [0]
    assert rm.decode_point("run_status", status) == "shutdown"
    assert inverter.settings()["work_mode"] == "pv_mode"
    assert inverter.settings()["power_switch"] == "off"


def test_invalid_writes_answer_modbus_exceptions(tmp_path):
    # A copy of the map whose BatFromGridPower has a coarser step: limits come from the file.
    text = (MAP_DIR / "ech-th-eu.yaml").read_text(encoding="utf-8")
    marker = "  - key: tou_bat_from_grid_power\n"
    head, tail = text.split(marker)
    tail = tail.replace("    step: 0.1\n", "    step: 0.5\n", 1)
    path = tmp_path / "ech-th-eu-step.yaml"
    path.write_text(head + marker + tail, encoding="utf-8")
    rm = RegisterMap.from_file(path, "ECH10K-TH-EU", fault_codes=MAP_DIR / "fault-codes.yaml")
    assert rm.point("tou_bat_from_grid_power").step == 0.5
    inverter = SimulatedInverter(
        "INVBADW000001", "ECH10K-TH-EU", clock=SimClock(NOON, speed=0), rm=rm
    )
    grid_power = rm.point("tou_bat_from_grid_power").address
    export = rm.point("export_limit_power").address  # range 0..10 kW on the 10K
    mode = rm.point("work_mode").address
    soc = rm.point("batt_soc").address

    async def body(client):
        codes = {}
        for name, address, value in [
            ("out_of_range", export, 101),  # 10.1 kW
            ("wrong_step", grid_power, 32),  # 3.2 kW, step 0.5
            ("unknown_option", mode, 9),
            ("input_register", soc, 50),
            ("no_point", 0x1005, 1),
        ]:
            response = await client.write_register(address, value, device_id=1)
            codes[name] = response.exception_code if response.isError() else None
        ok = await client.write_register(grid_power, 35, device_id=1)  # 3.5 kW
        codes["valid"] = ok.exception_code if ok.isError() else None
        multi = await client.write_registers(export, [50, 90], device_id=1)  # 5 kW, 90 %
        codes["valid_multi"] = multi.exception_code if multi.isError() else None
        bad_multi = await client.write_registers(export, [50, 101], device_id=1)  # 101 %
        codes["bad_multi"] = bad_multi.exception_code if bad_multi.isError() else None
        return codes

    codes = asyncio.run(with_server(inverter, body))
    assert codes == {
        "out_of_range": 3,
        "wrong_step": 3,
        "unknown_option": 3,
        "input_register": 2,
        "no_point": 2,
        "valid": None,
        "valid_multi": None,
        "bad_multi": 3,
    }
    settings = inverter.settings()
    assert settings["tou_bat_from_grid_power"] == 3.5
    assert settings["export_limit_power"] == 5.0 and settings["active_power_limit"] == 90


@pytest.mark.parametrize("transport", ["tcp", "pair", "memory"])
def test_the_bus_carries_rtu_frames_and_absent_addresses_stay_silent(transport):
    clock = SimClock(NOON, speed=0)
    inverters = [
        SimulatedInverter(f"INVBUS00000{a}", model, address=a, clock=clock)
        for a, model in ((1, "ECH6K-SML-EU"), (2, "ECH20K-TH-EU"))
    ]

    async def main():
        bus = BusServer(inverters, transport=transport)
        await bus.start()
        if transport == "tcp":  # any RTU-over-TCP master can use the line
            line = BusClient.tcp("127.0.0.1", bus.port, timeout=0.3)
        else:
            line = bus.client(timeout=0.3)
        try:
            models = []
            for address in (1, 2):
                words = await line.read_registers("input", address, 0x0510, 8)
                models.append(inverters[0].rm.decode_point("model_name", words))
            with pytest.raises(BusTimeout):
                await line.read_registers("input", 3, 0x0510, 8)
            assert line.transactions == 3
            return models
        finally:
            line.close()
            await bus.stop()

    assert asyncio.run(main()) == ["ECH6K-SML-EU", "ECH20K-TH-EU"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_model(port: int, deadline_s: float = 20.0) -> str:
    rm = RegisterMap.for_model("ECH6K-SML-EU")
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
        try:
            if client.connect():
                response = client.read_input_registers(0x0510, count=8, device_id=1)
                if not response.isError():
                    return rm.decode_point("model_name", response.registers)
        finally:
            client.close()
        time.sleep(0.2)
    raise AssertionError(f"nothing answered on port {port}")


def test_standalone_inverter_answers_on_its_port():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--inverter", "ECH6K-SML-EU"]
        + ["--modbus-port", str(port), "--duration", "30"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert read_model(port) == "ECH6K-SML-EU"
    finally:
        proc.terminate()
        proc.wait(10)


def test_manage_py_simulate_inverter_serves_modbus_tcp():
    port = free_port()
    thread = threading.Thread(
        target=call_command,
        args=("simulate", "--inverter", "ECH6K-SML-EU", "--modbus-port", str(port)),
        kwargs={"duration": 3},
        daemon=True,
    )
    thread.start()
    try:
        assert read_model(port) == "ECH6K-SML-EU"
    finally:
        thread.join(15)
