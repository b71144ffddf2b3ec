"""The user database: canonical addresses with scrypt password hashes, in one SQLite file.

Hashes are stored as `$scrypt$ln=LOG2N,r=R,p=P$SALT$HASH` (base64), so parameters can be raised
later without invalidating old entries. `verify` costs the same whether or not the user exists
(an unknown name is checked against a dummy hash) and compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path

from mailsift.store.names import normalize_user

SCRYPT_LOG2N = 14
SCRYPT_R = 8
SCRYPT_P = 1
MAX_PASSWORD = 1024
MAX_QUOTA_MB = 1 << 30  # 1 PiB


class UserError(Exception):
    """A request the user database refuses (the message says why)."""


class NoSuchUser(UserError):
    pass


class UserExists(UserError):
    pass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, log2n: int = SCRYPT_LOG2N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=1 << log2n, r=r, p=p,
                            maxmem=256 * 1024 * 1024, dklen=32)
    return f"$scrypt$ln={log2n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, encoded: str) -> bool:
    try:
        _, scheme, params, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        kv = dict(item.split("=", 1) for item in params.split(","))
        want = _unb64(digest)
        got = hashlib.scrypt(password.encode("utf-8", "surrogateescape"), salt=_unb64(salt),
                             n=1 << int(kv["ln"]), r=int(kv["r"]), p=int(kv["p"]),
                             maxmem=256 * 1024 * 1024, dklen=len(want))
    except (ValueError, KeyError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def check_new_password(password: str) -> None:
    if not password:
        raise UserError("empty password")
    if len(password) > MAX_PASSWORD:
        raise UserError("password too long")
    if any(c in password for c in "\x00\r\n"):
        raise UserError("password contains NUL or line breaks")


class Users:
    """Users of the store. Names are canonical addresses ("alice@example.org"); a bare name takes
    `default_domain` when one is set. Thread-safe; every call reads the file afresh, so changes
    made by `mailsift user` reach a running server at once."""

    def __init__(self, path: str | Path, default_domain: str = "") -> None:
        self.path = Path(path)
        self.default_domain = default_domain
        self._lock = threading.Lock()
        self._dummy: str | None = None

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        """create=True: open for changes (creating the file and table). Otherwise read-only, so a
        server running as an unprivileged user needs only read access to the file."""
        if not self.path.exists():
            if not create:
                raise FileNotFoundError(str(self.path))
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        if not create:
            uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name='users'").fetchone() is None:
                conn.close()
                raise FileNotFoundError(str(self.path))
            return conn
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, hash TEXT NOT NULL, "
                     "created REAL NOT NULL, changed REAL NOT NULL)")
        return conn

    # Per-user settings are columns added after the table was made: ALTER TABLE on first write,
    # and a database from before a column reads as "not set".
    _COLUMNS = {"implicit_feedback": "INTEGER NOT NULL DEFAULT 1", "quota_mb": "INTEGER"}

    def _set_column(self, name: str, column: str, value: object) -> None:
        canon = self.canonical(name)
        with self._lock:
            conn = self._connect(create=True)
            try:
                cols = {r[1] for r in conn.execute("PRAGMA table_info(users)")}
                if column not in cols:
                    conn.execute(f"ALTER TABLE users ADD COLUMN {column} {self._COLUMNS[column]}")
                if conn.execute(f"UPDATE users SET {column}=? WHERE name=?", (value, canon)).rowcount == 0:
                    raise NoSuchUser(f"no user {canon}")
            finally:
                conn.close()

    def _user_row(self, name: str, columns: str) -> tuple | None:
        """The user's row of `columns` (read-only); None for an unknown or invalid name, or no
        database yet."""
        try:
            canon = self.canonical(name)
            conn = self._connect()
        except (ValueError, FileNotFoundError):
            return None
        try:
            return conn.execute(f"SELECT {columns} FROM users WHERE name=?", (canon,)).fetchone()
        finally:
            conn.close()

    def _column(self, name: str, column: str) -> object:
        """The user's value of `column`; None for an unknown or invalid user, or a database from
        before the column (or one that cannot be read)."""
        try:
            row = self._user_row(name, column)
        except sqlite3.OperationalError:
            return None
        return None if row is None else row[0]

    def set_implicit_feedback(self, name: str, on: bool) -> None:
        """Opt a user in (the default) or out of implicit feedback (docs/feedback.md)."""
        self._set_column(name, "implicit_feedback", int(on))

    def implicit_feedback(self, name: str) -> bool:
        """May what this user keeps teach the model? (True unless they opted out.)"""
        value = self._column(name, "implicit_feedback")
        return value is None or bool(value)

    def set_quota_mb(self, name: str, mb: int | None) -> None:
        """This user's storage limit in MiB (0 = none), or None for `[store] quota_mb`."""
        if mb is not None and not 0 <= mb <= MAX_QUOTA_MB:
            raise UserError(f"quota must be 0 (no limit) to {MAX_QUOTA_MB} MiB")
        self._set_column(name, "quota_mb", mb)

    def quota_mb(self, name: str) -> int | None:
        """This user's own storage limit in MiB (0 = none), or None: the default applies."""
        value = self._column(name, "quota_mb")
        return None if value is None else int(value)  # type: ignore[call-overload]

    def share_with(self, gid: int) -> None:
        """Let the server's group read the database (mode 0640); only its owner may change it."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, -1, gid)
            os.fchmod(fd, 0o640)
        finally:
            os.close(fd)

    def canonical(self, name: str) -> str:
        """The canonical form of a user name; raises names.InvalidName."""
        return normalize_user(name, self.default_domain)

    def add(self, name: str, password: str) -> str:
        """Add a user; returns the canonical name. Raises UserExists, UserError, InvalidName."""
        canon = self.canonical(name)
        check_new_password(password)
        encoded = hash_password(password)
        with self._lock:
            conn = self._connect(create=True)
            try:
                now = time.time()
                conn.execute("INSERT INTO users (name, hash, created, changed) VALUES (?, ?, ?, ?)",
                             (canon, encoded, now, now))
            except sqlite3.IntegrityError:
                raise UserExists(f"user {canon} exists") from None
            finally:
                conn.close()
        return canon

    def set_password(self, name: str, password: str) -> None:
        canon = self.canonical(name)
        check_new_password(password)
        encoded = hash_password(password)
        with self._lock:
            conn = self._connect(create=True)
            try:
                cur = conn.execute("UPDATE users SET hash=?, changed=? WHERE name=?", (encoded, time.time(), canon))
                if cur.rowcount == 0:
                    raise NoSuchUser(f"no user {canon}")
            finally:
                conn.close()

    def delete(self, name: str) -> None:
        """Remove the user from the database (the Maildir stays; remove it by hand when wanted)."""
        canon = self.canonical(name)
        with self._lock:
            conn = self._connect(create=True)
            try:
                if conn.execute("DELETE FROM users WHERE name=?", (canon,)).rowcount == 0:
                    raise NoSuchUser(f"no user {canon}")
            finally:
                conn.close()

    def list(self) -> list[str]:
        try:
            conn = self._connect()
        except FileNotFoundError:
            return []
        try:
            return [r[0] for r in conn.execute("SELECT name FROM users ORDER BY name")]
        finally:
            conn.close()

    def exists(self, name: str) -> bool:
        """Is this a known user? (For LMTP RCPT and the Postfix lookup; invalid names are not.)"""
        return self._user_row(name, "1") is not None

    def password_hash(self, name: str) -> str | None:
        """The stored hash of `name` (None for an unknown or invalid name). It is new after every
        password change, so the auth cache (store/authgate.py) binds its entries to it."""
        if not isinstance(name, str) or len(name) > 320:
            return None
        row = self._user_row(name, "hash")
        return row[0] if row else None

    def check(self, password: str, stored: str | None) -> bool:
        """`password` against a stored hash from `password_hash`; None (no such user) is checked
        against a dummy hash, so it costs the same. Blocking (scrypt): call it from a worker thread."""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return False
        if stored is None:
            if self._dummy is None:
                self._dummy = hash_password("mailsift-dummy-password")
            check_password(password, self._dummy)
            return False
        return check_password(password, stored)

    def verify(self, name: str, password: str) -> bool:
        """True when `name` exists and `password` is its password. Blocking (scrypt, tens of ms):
        call it from a worker thread. Takes the same time for unknown users; never raises on bad input."""
        if not isinstance(name, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD \
                or len(name) > 320:
            return False
        return self.check(password, self.password_hash(name))
