"""The device simulator: simulated inverters are Modbus servers (pymodbus) served from the
portal's register maps, simulated gateways are MQTT clients speaking `devices.protocol`.

See simulator/README.md. Entry points: `manage.py simulate`, `python -m simulator`,
`simulator.fleet.Fleet` / `FleetThread` in tests, `matricloud.demo_fleet.ensure_demo_fleet`.
"""
