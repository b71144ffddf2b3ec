"""The MTA's side of the milter protocol (version 6), as Postfix speaks it, for tests that
talk to `mailsift milter` directly: exact control over how the commands are cut into writes,
and the reply stream as it comes off the socket.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

# Protocol steps (mfdef.h SMFIP_*) the MTA side offers, as Postfix does with milter_protocol 6.
OFFERED_PROTOCOL = 0x001FFFFF
OFFERED_ACTIONS = 0x000001FF
SMFIP_NOEOH = 0x40
SMFIP_NR_HDR = 0x80
SMFIP_NR_BODY = 0x80000
FINAL_REPLIES = frozenset(b"acdrty")  # accept, continue, discard, reject, tempfail, reply code


def packet(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + cmd + data


def header(name: str, value: str) -> bytes:
    return packet(b"L", name.encode() + b"\0" + value.encode() + b"\0")


def message_commands(headers: list[tuple[str, str]], body: bytes, queue_id: str,
                     protocol: int) -> bytes:
    """Macros, headers, end of headers (unless skipped), body and end of body for one message."""
    out = [packet(b"D", b"E" + b"i\0" + queue_id.encode() + b"\0")]
    out += [header(n, v) for n, v in headers]
    if not protocol & SMFIP_NOEOH:
        out.append(packet(b"N"))
    out.append(packet(b"B", body))
    out.append(packet(b"E"))
    return b"".join(out)


class MtaSide:
    def __init__(self, path: Path | str, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buffer = b""
        self.protocol = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes, chunk: int | None = None) -> None:
        """Write `data` in one write, or in writes of `chunk` bytes."""
        if chunk is None:
            self.sock.sendall(data)
            return
        for start in range(0, len(data), chunk):
            self.sock.sendall(data[start:start + chunk])

    def recv_some(self) -> bytes:
        """One recv(): whatever the milter has written by the time it returns."""
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the milter closed the connection")
        return data

    def _fill(self, need: int) -> None:
        while len(self.buffer) < need:
            self.buffer += self.recv_some()

    def read_packet(self) -> tuple[bytes, bytes]:
        self._fill(4)
        (length,) = struct.unpack("!I", self.buffer[:4])
        self._fill(4 + length)
        cmd, data = self.buffer[4:5], self.buffer[5:4 + length]
        self.buffer = self.buffer[4 + length:]
        return cmd, data

    def negotiate(self) -> int:
        self.send(packet(b"O", struct.pack("!III", 6, OFFERED_ACTIONS, OFFERED_PROTOCOL)))
        cmd, data = self.read_packet()
        assert cmd == b"O", (cmd, data)
        _version, _actions, self.protocol = struct.unpack("!III", data[:12])
        return self.protocol

    def replies(self) -> list[tuple[bytes, bytes]]:
        """Packets up to and including the final reply of this step."""
        out = []
        while True:
            cmd, data = self.read_packet()
            out.append((cmd, data))
            if cmd[0] in FINAL_REPLIES:
                return out


def split_packets(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The whole packets at the start of `data`, and what is left of it."""
    out = []
    while len(data) >= 4:
        (length,) = struct.unpack("!I", data[:4])
        if len(data) < 4 + length:
            break
        out.append((data[4:5], data[5:4 + length]))
        data = data[4 + length:]
    return out, data


def parse_replies(replies: list[tuple[bytes, bytes]]) -> tuple[list[tuple[str, str]], list[tuple[str, int, str]], bytes]:
    """(added headers, changed headers (name, index, value), final reply code)."""
    added: list[tuple[str, str]] = []
    changed: list[tuple[str, int, str]] = []
    for cmd, data in replies[:-1]:
        if cmd == b"h":
            name, value, _ = data.split(b"\0", 2)
            added.append((name.decode(), value.decode()))
        elif cmd == b"m":
            (index,) = struct.unpack("!I", data[:4])
            name, value, _ = data[4:].split(b"\0", 2)
            changed.append((name.decode(), index, value.decode()))
    return added, changed, replies[-1][0]
