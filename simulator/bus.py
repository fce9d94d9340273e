"""A gateway's RS-485 line, simulated as Modbus RTU over TCP on 127.0.0.1.

`BusServer` is one pymodbus `ModbusTcpServer(framer=RTU)` holding the gateway's inverters as
devices by Modbus address. As on a real RS-485 line, an address nobody has stays silent (the
master times out) instead of answering an exception.

`BusClient` is the gateway's master port: it writes raw RTU ADUs and reads back one response
ADU, delimited by pymodbus's RTU framer, one transaction at a time (the line is half-duplex).
The gateway's polls are built with the same framer, so every poll goes through real Modbus
framing and CRCs, and the cloud's `modbus` command frames are forwarded byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Awaitable, Callable, Iterable

from pymodbus.framer.rtu import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest
from pymodbus.server import ModbusTcpServer
from pymodbus.transport.transport import NULLMODEM_HOST, NullModem

from simulator.inverter import SimulatedInverter, make_server, server_port


class BusTimeout(TimeoutError):
    """Nobody answered on the line in time."""


class BusError(OSError):
    """The line is down or the answer was garbled."""


class ModbusExceptionReply(Exception):
    """A device answered with a Modbus exception."""

    def __init__(self, code: int) -> None:
        super().__init__(f"Modbus exception {code}")
        self.code = code


LINE_TRANSPORTS = ("tcp", "pair", "memory")


class BusServer:
    """The RS-485 line with its inverters.

    `transport` says how the gateway reaches it:

    - "tcp" (default): a pymodbus RTU-over-TCP server listening on 127.0.0.1 (any port); any
      Modbus RTU-over-TCP master can connect to `port`. 4 file descriptors per gateway in all.
    - "pair": the same server fed through a socketpair, no listener and no port: 3 file
      descriptors per gateway.
    - "memory": pymodbus's in-process null-modem transport: the same RTU frames, CRCs, framer
      and request handler, without sockets (1 file descriptor per gateway, its MQTT socket).
    """

    _memory_ports = itertools.count(1)

    def __init__(self, inverters: Iterable[SimulatedInverter], *, transport: str = "tcp") -> None:
        if transport not in LINE_TRANSPORTS:
            raise ValueError(f"line transport must be one of {', '.join(LINE_TRANSPORTS)}")
        self.inverters = {inv.address: inv for inv in inverters}
        self.transport = transport
        self.host = "127.0.0.1"
        self.port = 0
        self._server: ModbusTcpServer | None = None
        self._handlers: list = []

    async def start(self) -> None:
        if self.transport == "memory":
            self.port = next(self._memory_ports)
            self._server = make_server(self.inverters.values(), host=NULLMODEM_HOST, port=self.port)
        else:
            self._server = make_server(self.inverters.values(), host=self.host)
        if self.transport != "pair":
            await self._server.serve_forever(background=True)
        if self.transport == "tcp":
            self.port = server_port(self._server)

    async def open_line(self) -> _LineProtocol:
        """A new connection to the line, as the gateway's master port."""
        loop = asyncio.get_running_loop()
        if self._server is None:
            raise BusError("the bus is down")
        if self.transport == "tcp":
            _, proto = await loop.create_connection(_LineProtocol, self.host, self.port)
            return proto
        if self.transport == "pair":
            ours, theirs = socket.socketpair()
            handler = self._server.handle_new_connection()
            self._handlers.append(handler)
            await loop.connect_accepted_socket(lambda: handler, sock=theirs)
            _, proto = await loop.create_connection(_LineProtocol, sock=ours)
            return proto
        proto = _LineProtocol()
        NullModem.set_connection(self.port, proto)
        return proto

    def client(self, *, timeout: float = 1.0) -> BusClient:
        return BusClient(self.open_line, timeout=timeout)

    async def stop(self) -> None:
        for handler in self._handlers:
            handler.close()
        self._handlers.clear()
        if self._server is not None:
            await self._server.shutdown()
            self._server = None


class _LineProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.event = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def handle_new_connection(self) -> _LineProtocol:  # pymodbus null modem asks for this
        return self

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.event.set()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.event.set()


class BusClient:
    """The gateway's RS-485 master port: raw RTU frames over the line, one at a time."""

    def __init__(
        self, opener: Callable[[], Awaitable[_LineProtocol]], *, timeout: float = 1.0
    ) -> None:
        self._opener = opener
        self.timeout = timeout
        self._proto: _LineProtocol | None = None
        self._lock = asyncio.Lock()
        self._framer = FramerRTU(DecodePDU(False))
        self.transactions = 0

    @classmethod
    def tcp(cls, host: str, port: int, *, timeout: float = 1.0) -> BusClient:
        """A master for any RTU-over-TCP line (e.g. a BusServer's `port`)."""

        async def opener() -> _LineProtocol:
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(_LineProtocol, host, port)
            return proto

        return cls(opener, timeout=timeout)

    async def connect(self) -> None:
        try:
            self._proto = await self._opener()
        except OSError as exc:
            raise BusError(f"bus line unreachable: {exc}") from exc

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None

    async def transact(self, frame: bytes, timeout: float | None = None) -> bytes:
        """Send one RTU ADU and return the response ADU (BusTimeout if nobody answers)."""
        async with self._lock:
            if self._proto is None or self._proto.closed:
                await self.connect()
            proto = self._proto
            assert proto is not None and proto.transport is not None
            proto.buffer.clear()
            proto.event.clear()
            proto.transport.write(frame)
            self.transactions += 1
            deadline = asyncio.get_running_loop().time() + (timeout or self.timeout)
            while True:
                if proto.buffer:
                    used, _dev, _tid, pdu_bytes = self._framer.decode(bytes(proto.buffer))
                    if used and pdu_bytes:
                        return bytes(proto.buffer[:used])
                    if used:
                        raise BusError("garbled answer (CRC error)")
                if proto.closed:
                    self._proto = None
                    raise BusError("bus line closed")
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise BusTimeout("no response")
                proto.event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proto.event.wait(), remaining)

    async def read_registers(
        self, table: str, device_id: int, address: int, count: int, timeout: float | None = None
    ) -> list[int]:
        """FC4 (input) or FC3 (holding) read through the line."""
        cls = ReadInputRegistersRequest if table == "input" else ReadHoldingRegistersRequest
        request = cls(address=address, count=count, dev_id=device_id)
        answer = await self.transact(self._framer.buildFrame(request), timeout)
        _, pdu = self._framer.handleFrame(answer, device_id, 0)
        if pdu is None:
            raise BusError("unreadable answer")
        if isinstance(pdu, ExceptionResponse) or pdu.isError():
            raise ModbusExceptionReply(pdu.exception_code)
        return list(pdu.registers)
