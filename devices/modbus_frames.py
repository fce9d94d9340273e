"""Modbus RTU frames for the gateway's `modbus` command, built and parsed with pymodbus.

The gateway is a transparent bridge: the cloud sends a complete RTU ADU (device id, PDU, CRC)
and gets the bus's answer back as bytes. Only this module knows how those bytes look.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer.rtu import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

MAX_READ_COUNT = 125
MAX_WRITE_COUNT = 123

# Names an engineer finds in the Modbus specification and the inverter's manual.
EXCEPTION_NAMES = {
    ExcCodes.ILLEGAL_FUNCTION: "ILLEGAL_FUNCTION",
    ExcCodes.ILLEGAL_ADDRESS: "ILLEGAL_DATA_ADDRESS",
    ExcCodes.ILLEGAL_VALUE: "ILLEGAL_DATA_VALUE",
    ExcCodes.DEVICE_FAILURE: "SLAVE_DEVICE_FAILURE",
    ExcCodes.ACKNOWLEDGE: "ACKNOWLEDGE",
    ExcCodes.DEVICE_BUSY: "SLAVE_DEVICE_BUSY",
    ExcCodes.NEGATIVE_ACKNOWLEDGE: "NEGATIVE_ACKNOWLEDGE",
    ExcCodes.MEMORY_PARITY_ERROR: "MEMORY_PARITY_ERROR",
    ExcCodes.GATEWAY_PATH_UNAVIABLE: "GATEWAY_PATH_UNAVAILABLE",
    ExcCodes.GATEWAY_NO_RESPONSE: "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND",
}


class FrameError(ValueError):
    """The answer is not a valid response to the request (CRC, device, function, length)."""


@dataclass(frozen=True)
class ModbusAnswer:
    """A parsed response: registers read, or the exception the device answered with."""

    function_code: int
    registers: tuple[int, ...] = ()
    exception_code: int | None = None

    @property
    def is_exception(self) -> bool:
        return self.exception_code is not None

    @property
    def exception_name(self) -> str:
        if self.exception_code is None:
            return ""
        try:
            return EXCEPTION_NAMES[ExcCodes(self.exception_code)]
        except ValueError:
            return f"EXCEPTION_{self.exception_code}"


def _framer(server: bool = False) -> FramerRTU:
    return FramerRTU(DecodePDU(is_server=server))


def read_request(table: str, address: int, count: int, device_id: int) -> bytes:
    """FC4 for input registers, FC3 for holding registers."""
    _check_device(device_id)
    if not 1 <= count <= MAX_READ_COUNT:
        raise ValueError(f"count must be 1..{MAX_READ_COUNT}")
    if table == "input":
        pdu = ReadInputRegistersRequest(address=address, count=count, dev_id=device_id)
    elif table == "holding":
        pdu = ReadHoldingRegistersRequest(address=address, count=count, dev_id=device_id)
    else:
        raise ValueError(f"unknown register table {table!r}")
    return _framer().buildFrame(pdu)


def write_request(address: int, registers: list[int], device_id: int) -> bytes:
    """FC6 for one register, FC16 for several (written in one request, as devices expect)."""
    _check_device(device_id)
    if not 1 <= len(registers) <= MAX_WRITE_COUNT:
        raise ValueError(f"a write carries 1..{MAX_WRITE_COUNT} registers")
    if any(not 0 <= r <= 0xFFFF for r in registers):
        raise ValueError("register values must be 0..65535")
    if len(registers) == 1:
        pdu = WriteSingleRegisterRequest(address=address, registers=registers, dev_id=device_id)
    else:
        pdu = WriteMultipleRegistersRequest(address=address, registers=registers, dev_id=device_id)
    return _framer().buildFrame(pdu)


def parse_response(frame: bytes, request: bytes) -> ModbusAnswer:
    """Check `frame` answers `request` (same device, same function) and decode it."""
    request_device, request_function = request[0], request[1]
    try:
        used, pdu = _framer().handleFrame(frame, request_device, 0)
    except ModbusIOException as exc:
        raise FrameError(f"undecodable response: {exc}") from exc
    if pdu is None or used != len(frame):
        raise FrameError("incomplete or corrupt response frame (length or CRC)")
    if isinstance(pdu, ExceptionResponse):
        if pdu.function_code & 0x7F != request_function:
            raise FrameError("exception for another function code")
        return ModbusAnswer(request_function, (), pdu.exception_code)
    if pdu.function_code != request_function:
        raise FrameError(
            f"response function {pdu.function_code} does not answer {request_function}"
        )
    return ModbusAnswer(pdu.function_code, tuple(pdu.registers or ()))


def _check_device(device_id: int) -> None:
    if not 1 <= device_id <= 247:
        raise ValueError("Modbus device address must be 1..247")
