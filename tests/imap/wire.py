"""A raw IMAP client for transcript and differential tests: sends exact bytes, returns the
untagged responses (literals inlined) and the tagged completion, and parses response data
into comparable Python values (strings as bytes, NIL as None, lists as lists)."""

from __future__ import annotations

import socket
from typing import Any

from mailsift.protocols.imap.parser import Atom, String, _Tokenizer, literal_marker


class Wire:
    def __init__(self, host: str, port: int, timeout: float = 20.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.n = 0
        self.greeting = self.read_response()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self) -> bytes:
        """One response line with its literals inlined (`{n}\\r\\n` kept), without final CRLF."""
        line = self.read_line()
        out = line
        while True:
            m = literal_marker(line)
            if m is None:
                return out
            out += b"\r\n" + self.read_exact(m[0])
            line = self.read_line()
            out += line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, text: bytes | str) -> tuple[list[bytes], bytes]:
        """Send `TAG text` (text may hold {n+} literals inline); return (untagged, tagged)."""
        if isinstance(text, str):
            text = text.encode()
        self.n += 1
        tag = b"w%d" % self.n
        self.send(tag + b" " + text + b"\r\n")
        untagged: list[bytes] = []
        while True:
            resp = self.read_response()
            if resp.startswith(tag + b" "):
                return untagged, resp
            untagged.append(resp)

    def login(self, user: str, password: str) -> None:
        _, done = self.command(f'LOGIN "{user}" "{password}"')
        assert b" OK" in done, done


def parse_values(data: bytes) -> list[Any]:
    """Response data -> Python values: strings -> bytes, NIL -> None, numbers -> int."""
    return _plain(_Tokenizer(data, adjacent_lists=True).tokens())


def _plain(tok: Any) -> Any:
    if isinstance(tok, list):
        return [_plain(t) for t in tok]
    if isinstance(tok, String):
        return tok.data
    if isinstance(tok, Atom):
        if tok.text.upper() == "NIL":
            return None
        if tok.text.isdigit():
            return int(tok.text)
        return tok.text
    raise TypeError(tok)


def fetch_items(untagged: bytes) -> dict[str, Any]:
    """`* 1 FETCH (NAME value ...)` -> {NAME: value}."""
    head, _, rest = untagged.partition(b" FETCH ")
    assert head.startswith(b"* "), untagged[:80]
    values = parse_values(rest)[0]
    return {str(k).upper(): v for k, v in zip(values[::2], values[1::2])}
