"""What every mailsift daemon (milter, serve, policy) shares: one listen grammar, binding (unix
sockets with their mode, group and parent directories, a stale socket of an earlier run cleared),
dropping root after binding, and client network lists.

Listen grammar, the same for every listener key:

    unix:PATH        a unix socket (absolute path)
    HOST:PORT        TCP; an empty HOST is 127.0.0.1
    [V6]:PORT        TCP over IPv6
    off              no listener (where a listener may be off)

Postfix's own notation (`inet:PORT@HOST`, `inet:HOST:PORT`, `inet6:PORT@HOST`, `local:PATH`) is
read too, so a value copied from main.cf works.

Nothing here imports more than the standard library: every daemon imports it statically.
"""

from __future__ import annotations

import grp
import importlib
import ipaddress
import logging
import os
import pwd
import signal
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("mailsift.daemon")

SOCKET_MODE = "0660"
SOCKET_GROUP = "postfix"
DIR_MODE = 0o750


# Codecs mail commonly declares, imported before dropping root (see drop_privileges).
CODECS = tuple(f"encodings.{name}" for name in (
    "ascii", "latin_1", "utf_8", "utf_16", "utf_16_be", "utf_16_le", "utf_32", "cp1250", "cp1251", "cp1252",
    "iso8859_1", "iso8859_2", "iso8859_15", "koi8_r", "gb2312", "gbk", "gb18030", "big5", "shift_jis", "cp932",
    "euc_jp", "iso2022_jp", "euc_kr", "cp949", "idna", "quopri_codec", "base64_codec", "charmap"))

# ... and the mail parsing modules every daemon that reads messages uses.
MAIL_MODULES = (*CODECS, "email.parser", "email.feedparser", "email.policy", "email.utils", "email.header",
                "email.message", "email.charset", "email.contentmanager", "email.headerregistry",
                "email._header_value_parser", "email.quoprimime", "email.base64mime", "email.iterators")


class DaemonError(Exception):
    """A daemon cannot bind or drop privileges as configured (the message says why)."""


@dataclass(frozen=True)
class Listen:
    kind: str  # "unix" or "inet"
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def milter_spec(self) -> str:
        """The same address in libmilter's notation."""
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"{'inet6' if ':' in self.host else 'inet'}:{self.port}@{self.host}"


def _port(text: str, value: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise ValueError(f"{value!r}: bad port (expected unix:PATH, HOST:PORT, [V6]:PORT or off)")
    return int(text)


def parse_listen(value: str, allow_off: bool = True) -> Listen | None:
    """Parse a listener value (see the module docstring); None for off. Raises ValueError."""
    value = value.strip()
    if value in ("off", ""):
        if not allow_off:
            raise ValueError("a listener is required here (unix:PATH, HOST:PORT or [V6]:PORT)")
        return None
    for prefix in ("unix:", "local:"):
        if value.startswith(prefix):
            path = value[len(prefix):]
            if not path.startswith("/"):
                raise ValueError(f"{value!r}: unix socket paths must be absolute")
            return Listen("unix", path=path)
    rest = value
    for prefix in ("inet:", "inet6:"):
        if value.startswith(prefix):
            rest = value[len(prefix):]
            if "@" in rest:  # Postfix: inet:PORT@HOST
                port_s, host = rest.split("@", 1)
                host = host.strip("[]") or "127.0.0.1"
                if not _host_ok(host):
                    raise ValueError(f"{value!r}: {host!r} is neither an IP address nor a host name")
                return Listen("inet", host=host, port=_port(port_s, value))
            if rest.isdigit():
                return Listen("inet", host="127.0.0.1", port=_port(rest, value))
    if rest.startswith("["):
        host, sep, port_s = rest[1:].partition("]:")
        if not sep:
            raise ValueError(f"{value!r}: expected [V6]:PORT")
    else:
        host, sep, port_s = rest.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"{value!r}: expected unix:PATH, HOST:PORT, [V6]:PORT or off")
    host = host or "127.0.0.1"
    if not _host_ok(host):
        raise ValueError(f"{value!r}: {host!r} is neither an IP address nor a host name "
                         "(expected unix:PATH, HOST:PORT, [V6]:PORT or off)")
    return Listen("inet", host=host, port=_port(port_s, value))


def _host_ok(host: str) -> bool:
    """An IP address, localhost, or a dotted DNS name (so `tcp:25` is an error, not host "tcp")."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return (host == "localhost" or len(labels) > 1) and all(
        label and len(label) < 64 and label.replace("-", "").isalnum() and label.isascii() for label in labels)


def parse_mode(value: str) -> int:
    """An octal permission string such as "0660". Raises ValueError."""
    try:
        mode = int(value, 8)
    except (TypeError, ValueError):
        raise ValueError(f"socket_mode {value!r} is not an octal mode such as \"0660\"") from None
    if not 0 <= mode <= 0o777:
        raise ValueError(f"socket_mode {value!r} is out of range (0000-0777)")
    return mode


def parse_networks(values: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """CIDR networks (host bits allowed). Raises ValueError naming the bad entry."""
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP network") from None
    return tuple(nets)


def group_id(group: str | None) -> int | None:
    """The gid of `group` ("" or None: none); a missing group is logged and ignored."""
    if not group:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        log.warning("group %s does not exist; socket groups stay as they are", group)
        return None


def make_parents(path: Path, group: str | None = None) -> None:
    """Create the missing directories above `path`, each mode 0750 whatever the umask and given
    to `group` (so that group reaches the socket)."""
    missing = []
    parent = path.parent
    while not parent.exists() and not parent.is_symlink():
        missing.append(parent)
        parent = parent.parent
    gid = group_id(group) if missing else None
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE)
        os.chmod(d, DIR_MODE)
        if gid is not None:
            try:
                os.lchown(d, -1, gid)
            except PermissionError as exc:
                log.warning("cannot give %s to group %s: %s", d, group, exc)


def clear_stale_socket(path: Path) -> None:
    """Remove a socket left by a dead server; refuse to replace a live one or a non-socket."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
        except OSError:
            path.unlink()
            return
    raise OSError(f"another server is listening on {path}")


def secure_socket(path: Path, mode: int, group: str | None) -> None:
    """Give a unix socket its group and mode (not following a link)."""
    gid = group_id(group)
    if gid is not None:
        try:
            os.lchown(path, -1, gid)
        except PermissionError as exc:
            log.warning("cannot give %s to group %s: %s", path, group, exc)
    os.chmod(path, mode)


def prepare_unix(path: Path, group: str | None = None) -> None:
    """Everything before binding a unix socket at `path`: parent directories, a stale socket."""
    make_parents(path, group)
    clear_stale_socket(path)


def bind(where: Listen, mode: str = SOCKET_MODE, group: str | None = SOCKET_GROUP,
         backlog: int = 128) -> socket.socket:
    """A listening socket for `where` (unix: parents made, stale socket cleared, no moment with a
    looser mode than `mode`, then given to `group`). Raises OSError."""
    if where.kind == "unix":
        path = Path(where.path)
        prepare_unix(path, group)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Linux makes the socket file with the mode of the socket's inode (less the umask):
            # set it before bind, so the file never exists with a looser mode. (Not the umask:
            # that is the whole process's, other threads' files included.)
            os.fchmod(sock.fileno(), parse_mode(mode))
            sock.bind(str(path))
        except OSError:
            sock.close()
            raise
        secure_socket(path, parse_mode(mode), group)
    else:
        family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((where.host, where.port))
        except OSError:
            sock.close()
            raise
    sock.listen(backlog)
    return sock


def _readable_by(path: str, pw: pwd.struct_passwd) -> bool:
    """Can `pw` (with its groups) list and read the directory `path`, judged by permission bits?"""
    groups = set(os.getgrouplist(pw.pw_name, pw.pw_gid))
    p = Path(path).resolve()
    for d in [*reversed(p.parents), p]:
        try:
            st = d.stat()
        except OSError:
            return False
        shift = 6 if st.st_uid == pw.pw_uid else 3 if st.st_gid in groups else 0
        need = 0o5 if d == p else 0o1
        if (st.st_mode >> shift) & need != need:
            return False
    return True


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], object]) -> None:
    """Call `stop` in the loop on SIGTERM or SIGINT (every asyncio daemon stops the same way;
    the milter's signals belong to libmilter)."""
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)


def drop_privileges(user: str, preload: Iterable[str] = (), heavy: Iterable[str] = ()) -> pwd.struct_passwd | None:
    """Become `user` (its group and supplementary groups) for good, once the listeners are bound.
    "" keeps the starting user (with a warning when that is root). Modules in `preload` are
    imported first, in case the installation is not readable by `user`; so are those in `heavy`,
    but only when the Python installation is indeed not readable by `user` (they would be
    imported later otherwise). Raises DaemonError."""
    if not user:
        if os.geteuid() == 0:
            log.warning("running as root: set the section's user (run_as) to run unprivileged")
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise DaemonError(f"no user {user!r}") from None
    if os.geteuid() == pw.pw_uid and os.getuid() == pw.pw_uid:
        return pw
    if os.geteuid() != 0:
        raise DaemonError(f"running as user {user!r} needs the daemon to start as root")
    stdlib = os.path.dirname(os.__file__)
    readable = _readable_by(stdlib, pw)
    for name in (*preload, *(() if readable else heavy)):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    os.initgroups(pw.pw_name, pw.pw_gid)
    os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
    os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    if os.getresuid() != (pw.pw_uid,) * 3 or os.getresgid() != (pw.pw_gid,) * 3:
        raise DaemonError(f"could not become {user!r}")
    log.info("running as %s (uid %d)", pw.pw_name, pw.pw_uid)
    if not readable:
        log.warning("the Python installation (%s) is not readable by %s: modules imported from now on "
                    "will fail; install Python and mailsift where %s can read them", stdlib, user, user)
    return pw
