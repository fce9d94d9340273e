"""RTU frames for the gateway's modbus command: built by us, answered by a pymodbus server
framer, parsed back — including exceptions and corrupted answers."""

import pytest
from pymodbus.framer.rtu import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadInputRegistersResponse,
    WriteMultipleRegistersResponse,
)

from devices import modbus_frames as frames

SERVER = FramerRTU(DecodePDU(is_server=True))


def test_server_decodes_our_read_request():
    request = frames.read_request("input", 0x0700, 10, 3)
    used, pdu = SERVER.handleFrame(request, 0, 0)
    assert (used, pdu.function_code, pdu.address, pdu.count, pdu.dev_id) == (
        len(request),
        4,
        0x0700,
        10,
        3,
    )


def test_read_answer_gives_registers():
    request = frames.read_request("holding", 0x1000, 3, 1)
    answer = SERVER.buildFrame(ReadInputRegistersResponse(registers=[7, 8, 9], dev_id=1))
    answer = bytes([answer[0], 3]) + answer[2:-2]
    answer += FramerRTU.compute_CRC(answer).to_bytes(2, "big")
    assert frames.parse_response(answer, request).registers == (7, 8, 9)


def test_multi_register_write_uses_fc16_and_exception_is_named():
    request = frames.write_request(0x1000, [1, 2], 1)
    assert request[1] == 16
    ok = SERVER.buildFrame(WriteMultipleRegistersResponse(address=0x1000, count=2, dev_id=1))
    assert not frames.parse_response(ok, request).is_exception
    refused = SERVER.buildFrame(ExceptionResponse(16, 3, device_id=1))
    answer = frames.parse_response(refused, request)
    assert answer.exception_name == "ILLEGAL_DATA_VALUE"


def test_corrupt_or_foreign_answers_are_errors():
    request = frames.read_request("input", 0, 1, 1)
    good = SERVER.buildFrame(ReadInputRegistersResponse(registers=[1], dev_id=1))
    with pytest.raises(frames.FrameError):
        frames.parse_response(good[:-1] + bytes([good[-1] ^ 0xFF]), request)
    other_device = SERVER.buildFrame(ReadInputRegistersResponse(registers=[1], dev_id=2))
    with pytest.raises(frames.FrameError):
        frames.parse_response(other_device, request)


@pytest.mark.parametrize("bad", [dict(count=0), dict(count=126), dict(device_id=0)])
def test_invalid_requests_are_refused_before_sending(bad):
    args = {"table": "input", "address": 0, "count": 1, "device_id": 1, **bad}
    with pytest.raises(ValueError):
        frames.read_request(**args)
