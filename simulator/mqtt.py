"""Many paho-mqtt 2.x clients on one asyncio event loop, without a thread per client.

paho supports external event loops through its socket callbacks: the hub registers each client's
socket with the loop (`add_reader` → `loop_read`) and, when paho has bytes queued, writes them
once the current callbacks are done (`call_soon` → `loop_write`, so that the publishes of one
callback leave in one go); only a socket whose buffer is full waits for `add_writer`. One
periodic task calls `loop_misc()` (keep-alive pings) for every client.
Callbacks (`on_connect`, `on_message` …) therefore run on the event loop thread and may create
tasks directly. `connect()` is paho's own blocking connect, which on a local broker takes well
under a millisecond; it is retried with back-off by the owner on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import paho.mqtt.client as mqtt

from devices.protocol import no_delay

log = logging.getLogger("simulator.mqtt")


class MqttHub:
    """Drives the network I/O of any number of paho clients from the running event loop."""

    def __init__(self, misc_interval: float = 1.0) -> None:
        self.loop = asyncio.get_running_loop()
        self.misc_interval = misc_interval
        self._clients: set[mqtt.Client] = set()
        self._watching: set = set()  # sockets with an add_writer (their buffer was full)
        self._misc_task = self.loop.create_task(self._misc_loop(), name="mqtt-hub-misc")

    def attach(self, client: mqtt.Client) -> None:
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self._clients.add(client)

    def detach(self, client: mqtt.Client) -> None:
        self._clients.discard(client)
        sock = client.socket()
        if sock is not None:
            self._forget(sock)

    def __len__(self) -> int:
        return len(self._clients)

    async def close(self) -> None:
        self._misc_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._misc_task

    # ---- paho socket callbacks (called from paho, on the loop thread) ---------------------

    def _on_socket_open(self, client: mqtt.Client, _userdata, sock) -> None:
        no_delay(sock)
        self.loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, _client: mqtt.Client, _userdata, sock) -> None:
        self._forget(sock)

    def _on_register_write(self, client: mqtt.Client, _userdata, sock) -> None:
        # Not add_writer at once: two epoll changes and a loop turn per publish cost more
        # than the publish. paho calls this once until its queue is empty again.
        self.loop.call_soon(self._flush, client, sock)

    def _flush(self, client: mqtt.Client, sock) -> None:
        if client.socket() is not sock or sock in self._watching:
            return
        try:
            client.loop_write()
        except Exception:  # paho reports a broken socket through on_disconnect
            log.debug("loop_write failed", exc_info=True)
        if client.socket() is sock and client.want_write():
            self._watching.add(sock)  # the buffer is full: wait until it drains
            self.loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, _client: mqtt.Client, _userdata, sock) -> None:
        if sock in self._watching:
            self._watching.discard(sock)
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_writer(sock)

    def _forget(self, sock) -> None:
        self._watching.discard(sock)
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(sock)
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_writer(sock)

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.misc_interval)
            for client in list(self._clients):
                if client.socket() is not None:
                    try:
                        client.loop_misc()
                    except Exception:  # a broken client must not stop the others
                        log.exception("loop_misc failed")


def drop_connection(client: mqtt.Client, hub: MqttHub | None = None) -> None:
    """Cut the TCP connection without an MQTT DISCONNECT, as a power cut would.

    The broker sees the socket close and publishes the client's last will.
    """
    sock = client.socket()
    if sock is None:
        return
    if hub is not None:
        hub.detach(client)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    # paho notices on its next read (EOF) and closes its side; read now so it does.
    with contextlib.suppress(Exception):
        client.loop_read()
