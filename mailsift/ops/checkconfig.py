"""What `mailsift check-config` checks: every section of the file, then what can be checked
without starting anything.

    problems = check_file(path)        # [] when all hold
    for p in problems: print(p)        # "[store] tls_key: ... does not match the certificate ..."

Each section is read on its own, key by key, so one bad key does not hide the others' problems:
an unknown key or a value of the wrong type is reported and left out, the section is then built
from the rest. A section whose validation fails is reported and not checked further.

Then, per section (docs/operations.md lists them):
  [classifier]  the model directory exists and its model loads (as [milter] user, when set)
  [milter]      clamd answers PING; the socket's directory exists (or can be made) and
                socket_group exists and can enter it
  [store]       run_as exists; mail_root, the user database and the TLS files exist with the
                right owner and mode (mail_root run_as's; the user database root's, readable by
                run_as, which only reads it); the TLS key matches the certificate, which has
                not expired; the unix sockets' directories; pop3s/imaps have a certificate
  [policy]      Redis answers PING, or the SQLite file's directory exists; the socket's directory
  [feedback]    the model directory the learner trains is run_as's
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import stat
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from mailsift import daemon
from mailsift.config import Config, ConfigError, _check

PING_TIMEOUT = 5.0


@dataclass(frozen=True)
class Problem:
    key: str       # "[store] tls_key", or "config" for the file itself
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


# -- reading the file, section by section ------------------------------------------------------

def load_sections(path: str | Path | None) -> tuple[Config, set[str], list[Problem]]:
    """The config with every good key, the sections that could not be built, and the problems."""
    if path is None:
        return Config(), set(), []
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        return Config(), set(), [Problem("config", f"cannot read {path}: {exc.strerror}")]
    except tomllib.TOMLDecodeError as exc:
        return Config(), set(), [Problem("config", f"{path} is not valid TOML: {exc}")]
    problems: list[Problem] = []
    broken: set[str] = set()
    hints = typing.get_type_hints(Config)
    built: dict[str, Any] = {}
    for name, table in data.items():
        if name not in hints:
            problems.append(Problem(f"[{name}]", f"unknown section (known: {', '.join(hints)})"))
            continue
        if not isinstance(table, dict):
            problems.append(Problem(f"[{name}]", "must be a table"))
            broken.add(name)
            continue
        section, section_problems = _build(hints[name], table, name)
        problems += section_problems
        if section is None:
            broken.add(name)
        else:
            built[name] = section
    return Config(**built), broken, problems


def _build(cls: type, table: dict[str, Any], name: str) -> tuple[Any, list[Problem]]:
    problems: list[Problem] = []
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            problems.append(Problem(f"[{name}] {key}", f"unknown setting (known: {known})"))
            continue
        try:
            values[key] = _check(value, hints[key], f"[{name}] {key}")
        except ConfigError as exc:
            problems.append(Problem(f"[{name}] {key}", str(exc).split(": ", 1)[-1]))
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as exc:
            text = str(exc)
            first = text.split(None, 1)[0].rstrip(":=,") if text else ""
            key = f"[{name}] {first}" if first in hints else f"[{name}]"
            problems.append(Problem(key, text))
            return None, problems
    return obj, problems


# -- the checks ----------------------------------------------------------------------------------

def check_file(path: str | Path | None) -> list[Problem]:
    config, broken, problems = load_sections(path)
    return problems + list(check(config, broken))


def check(config: Config, broken: frozenset[str] | set[str] = frozenset()) -> Iterator[Problem]:
    """Every problem found in the sections not in `broken`."""
    store_ok = "store" not in broken
    run_as = config.store.run_as if store_ok else ""
    if store_ok:
        yield from check_store(config)
    if "classifier" not in broken:
        # loaded as the milter loads it: as [milter] user when that is set
        milter_user = config.milter.user if "milter" not in broken else ""
        yield from check_model("[classifier] dbpath", config.classifier.dbpath, milter_user)
        if config.classifier.share:
            why = redis_ping(config.classifier.share, PING_TIMEOUT)
            if why is not None:
                yield Problem("[classifier] share", f"{config.classifier.share} {why}")
    if "feedback" not in broken and "classifier" not in broken and config.feedback.enabled:
        model_dir = config.feedback.model_dir(config.classifier.dbpath)
        key = "[feedback] dbpath" if config.feedback.dbpath else "[classifier] dbpath"
        if config.feedback.dbpath:
            yield from check_model(key, model_dir)
        if run_as and _user(run_as) is not None and Path(model_dir).is_dir():
            # the learner inside `mailsift serve` saves the model there as run_as
            yield from check_owner(key, Path(model_dir), run_as)
    if "milter" not in broken:
        yield from check_milter(config)
    if "policy" not in broken:
        yield from check_policy(config)


def _user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def check_owner(key: str, path: Path, user: str) -> Iterator[Problem]:
    pw = _user(user)
    try:
        st = path.stat()
    except OSError:
        return
    if pw is not None and st.st_uid != pw.pw_uid:
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        yield Problem(key, f"{path} is owned by {owner}, not {user} (chown {user} {path})")


def check_path(key: str, value: str, kind: str, owner: str = "", private: bool = False,
               hint: str = "") -> Iterator[Problem]:
    """`value` exists as a `kind` ("dir" or "file"), is owned by `owner` (when given), and is
    not writable by every user (nor readable by them when `private`)."""
    path = Path(value)
    try:
        st = path.stat()
    except FileNotFoundError:
        yield Problem(key, f"{path} does not exist{hint}")
        return
    except OSError as exc:
        yield Problem(key, f"{path}: {exc.strerror}")
        return
    if kind == "dir" and not stat.S_ISDIR(st.st_mode):
        yield Problem(key, f"{path} is not a directory")
        return
    if kind == "file" and not stat.S_ISREG(st.st_mode):
        yield Problem(key, f"{path} is not a regular file")
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o002 and not (kind == "dir" and mode & stat.S_ISVTX):
        yield Problem(key, f"{path} has mode {mode:04o}: every user may write to it (chmod o-w {path})")
    elif private and mode & 0o007:
        yield Problem(key, f"{path} has mode {mode:04o}: every user may read it (chmod o-rwx {path})")
    if owner:
        yield from check_owner(key, path, owner)


def check_socket_path(key: str, value: str) -> Iterator[Problem]:
    """A unix socket a daemon will create: its directory exists or can be made, and nothing but
    a stale socket sits at the path."""
    path = Path(value)
    try:
        st = path.lstat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        yield Problem(key, f"{path}: {exc.strerror}")
        return
    if st is not None and not stat.S_ISSOCK(st.st_mode):
        yield Problem(key, f"{path} exists and is not a socket: the daemon cannot listen there")
        return
    parent = path.parent
    if parent.is_dir():
        return
    if parent.exists():
        yield Problem(key, f"{parent}, the socket's directory, is not a directory")
        return
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.access(ancestor, os.W_OK | os.X_OK):
        yield Problem(key, f"{parent}, the socket's directory, does not exist and cannot be made "
                           f"({ancestor} is not writable)")


def check_group_reaches(key: str, directory: Path, group: grp.struct_group) -> Iterator[Problem]:
    """Members of `group` (Postfix's user, for the milter socket) can enter `directory`."""
    try:
        st = directory.stat()
    except OSError:
        return  # made by the daemon, with the group's access (mailsift/milter/cmd.py)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o001 or (st.st_gid == group.gr_gid and mode & 0o010):
        return
    yield Problem(key, f"{directory}, the socket's directory (mode {mode:04o}), cannot be entered by group "
                       f"{group.gr_name}: chgrp {group.gr_name} {directory} && chmod g+x {directory}")


def unix_socket(spec: str) -> str | None:
    """The path of a unix listener in the daemons' listen grammar (mailsift/daemon.py), else None."""
    try:
        where = daemon.parse_listen(spec)
    except ValueError:
        return None
    return where.path if where is not None and where.kind == "unix" else None


def check_model(key: str, dbpath: str, as_user: str = "") -> Iterator[Problem]:
    """The model loads; with `as_user` (the milter's user) and run as root, it is loaded by a
    child that has become that user, so a model only root would accept is reported."""
    path = Path(dbpath)
    if not path.is_dir():
        yield Problem(key, f"{path} does not exist: train a model with `mailsift learn --dbpath {path} "
                           "--spam DIR --ham DIR`")
        return
    try:
        from mailsift.classifier.api import ModelError, load_model
    except ImportError as exc:
        yield Problem(key, f"the classifier cannot be imported: {exc}")
        return
    if as_user and os.geteuid() == 0 and _user(as_user) is not None:
        why = _load_as(as_user, path)
        if why:
            yield Problem(key, why)
        return
    try:
        load_model(path, retries=1)
    except ModelError as exc:
        yield Problem(key, str(exc))


def _load_as(user: str, path: Path) -> str:
    """Load the model in a child that has become `user`; "" when it loads, else why not."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        why = ""
        try:
            from mailsift.classifier.api import ModelError, load_model

            daemon.drop_privileges(user, heavy=("mailsift.classifier.tokenize", "joblib", "sklearn.naive_bayes",
                                                "scipy.sparse", *daemon.MAIL_MODULES))
            load_model(path, retries=1)
        except ModelError as exc:
            why = str(exc)
        except BaseException as exc:  # noqa: BLE001 - the child reports whatever stopped it
            why = f"cannot be loaded as {user}: {exc}"
        finally:
            os.write(write, why.encode()[:60000])
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        why = fh.read().decode(errors="replace")
    os.waitpid(pid, 0)
    return why


def check_store(config: Config) -> Iterator[Problem]:
    from mailsift.store.settings import LISTENERS, parse_listen

    s = config.store
    owner = ""
    if s.run_as:
        if _user(s.run_as) is None:
            yield Problem("[store] run_as", f"no user {s.run_as!r} on this host")
        else:
            owner = s.run_as
    yield from check_path("[store] mail_root", s.mail_root, "dir", owner)
    # run_as only reads the user database: root's (or the admin's), readable by run_as's group
    privileged = not owner or _user(owner).pw_uid == 0  # type: ignore[union-attr]
    yield from check_path("[store] users", s.users, "file", owner if privileged else "", private=True,
                          hint=" (`mailsift user add` creates it)")
    if not privileged:
        yield from check_users_readable(s.users, owner)
    for name in LISTENERS:
        where = parse_listen(getattr(s, name))
        if where is not None and where[0] == "unix":
            yield from check_socket_path(f"[store] {name}", str(where[1]))
    if bool(s.tls_cert) != bool(s.tls_key):
        yield Problem("[store] tls_cert" if not s.tls_cert else "[store] tls_key",
                      "tls_cert and tls_key must be set together")
    elif s.tls_cert:
        yield from check_tls(s.tls_cert, s.tls_key)
    else:
        for name in ("pop3s", "imaps"):
            if parse_listen(getattr(s, name)) is not None:
                yield Problem(f"[store] {name}", f"{name} needs tls_cert and tls_key")


def check_users_readable(users: str, run_as: str) -> Iterator[Problem]:
    """The user database is readable by run_as and not writable by it."""
    pw = _user(run_as)
    try:
        st = os.stat(users)
    except OSError:
        return
    assert pw is not None
    fix = f"chown root:{grp.getgrgid(pw.pw_gid).gr_name} {users} && chmod 0640 {users}"
    groups = set(os.getgrouplist(pw.pw_name, pw.pw_gid))
    if st.st_uid == pw.pw_uid:
        yield Problem("[store] users", f"{users} belongs to {run_as}, which only reads it ({fix})")
    elif not (st.st_mode & 0o004 or (st.st_gid in groups and st.st_mode & 0o040)):
        yield Problem("[store] users", f"{users} cannot be read by {run_as} ({fix})")
    elif st.st_gid in groups and st.st_mode & 0o020:
        yield Problem("[store] users", f"{users} can be changed by {run_as}'s group ({fix})")


def check_tls(cert: str, key: str) -> Iterator[Problem]:
    """Both files exist, the key is not readable by every user (serve reads it before it
    drops to run_as, so root may own it), the pair matches, the certificate is current."""
    found = list(check_path("[store] tls_cert", cert, "file")) + list(check_path("[store] tls_key", key, "file",
                                                                                    private=True))
    yield from found
    if any("does not exist" in p.message or "not a regular file" in p.message for p in found):
        return
    import ssl

    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(reason).upper():
            yield Problem("[store] tls_key", f"{key} does not match the certificate {cert}")
        else:
            yield Problem("[store] tls_cert", f"{cert} / {key} unusable: {reason}")
        return
    except OSError as exc:
        yield Problem("[store] tls_cert", f"{cert} / {key}: {exc.strerror or exc}")
        return
    try:
        import datetime

        from cryptography import x509

        leaf = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        if leaf.not_valid_after_utc < datetime.datetime.now(datetime.timezone.utc):
            yield Problem("[store] tls_cert", f"{cert} expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    except (ImportError, ValueError, OSError):
        pass


def clamd_ping(spec: str, timeout: float) -> str | None:
    """None when clamd at `spec` answers PONG, else why not (through the milter's own client)."""
    from mailsift.scanner.clamav import ClamdClient

    try:
        client = ClamdClient(spec, timeout=timeout, connect_timeout=timeout)
    except ValueError as exc:
        return str(exc)
    return None if client.ping() else "does not answer PING (or not with PONG)"


def check_milter(config: Config) -> Iterator[Problem]:
    s = config.milter
    path = unix_socket(s.socket)
    if path is not None:
        yield from check_socket_path("[milter] socket", path)
        if s.socket_group:
            try:
                group = grp.getgrnam(s.socket_group)
            except KeyError:
                yield Problem("[milter] socket_group", f"no group {s.socket_group!r} on this host")
            else:
                yield from check_group_reaches("[milter] socket", Path(path).parent, group)
    if s.clamd:
        why = clamd_ping(s.clamd, min(s.clamd_timeout, PING_TIMEOUT))
        if why is not None:
            yield Problem("[milter] clamd", f"{s.clamd} {why}")


def redis_ping(url: str, timeout: float) -> str | None:
    """None when the Redis at `url` answers PING, else why not."""
    from mailsift.resp import RespError, SyncRespClient

    try:
        client = SyncRespClient(url, timeout=timeout, decode=True)
        try:
            client.command("PING")
        finally:
            client.close()
    except (RespError, OSError, ValueError) as exc:
        return f"does not answer PING: {exc}"
    return None


def check_policy(config: Config) -> Iterator[Problem]:
    s = config.policy
    path = unix_socket(s.socket)
    if path is not None:
        yield from check_socket_path("[policy] socket", path)
    if s.db.startswith("sqlite:"):
        db = Path(s.db[len("sqlite:"):])
        if db.exists():
            yield from check_path("[policy] db", str(db), "file", s.user)
        elif not db.parent.is_dir():
            ancestor = db.parent
            while not ancestor.exists() and ancestor != ancestor.parent:
                ancestor = ancestor.parent
            if not os.access(ancestor, os.W_OK | os.X_OK):
                yield Problem("[policy] db", f"{db.parent} does not exist and cannot be made")
    else:
        why = redis_ping(s.db, PING_TIMEOUT)
        if why is not None:
            yield Problem("[policy] db", f"{s.db} {why}")
