"""Names that become paths: addresses, user names and folder names, checked before any file is touched.

Every name that reaches the file system passes through here first. A name is refused (ValueError
subclass `InvalidName`) when it could escape the mail root or confuse a Maildir++ reader:
NUL and control characters, '/', '\\', empty hierarchy components (so '..' and leading or
trailing dots), names longer than a directory entry allows.

Folder names are Unicode strings with '.' as the hierarchy separator (the Maildir++
convention: folder "Lists.python" is the directory ".Lists.python"). On disk non-ASCII names
are stored in modified UTF-7 (RFC 3501 5.1.3), as Dovecot does, so both read the same tree.
"INBOX" is case-insensitive and is the Maildir root itself.
"""

from __future__ import annotations

import base64
import re

INBOX = "INBOX"
SEPARATOR = "."

_LOCAL_RE = re.compile(r"^[a-z0-9!#$%&'*/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*/=?^_`{|}~-]+)*$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_BAD_FOLDER_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


class InvalidName(ValueError):
    """A user, domain or folder name that is refused (it could escape the mail root or is malformed)."""


def split_address(address: str, delimiter: str = "+") -> tuple[str, str, str | None]:
    """'Local+Detail@Domain' -> ('local', 'domain', 'Detail' or None). Local part and domain are
    lower-cased; the detail keeps its case (it names a folder). Raises InvalidName."""
    if not isinstance(address, str) or "\x00" in address or len(address) > 320:
        raise InvalidName("invalid address")
    if address.count("@") != 1:
        raise InvalidName("address needs exactly one @")
    local, domain = address.rsplit("@", 1)
    detail: str | None = None
    if delimiter and delimiter in local:
        local, detail = local.split(delimiter, 1)
    local = local.lower()
    domain = domain.lower().rstrip(".")
    check_local(local)
    check_domain(domain)
    return local, domain, detail


def check_local(local: str) -> str:
    if not local or len(local) > 64 or not _LOCAL_RE.match(local):
        raise InvalidName(f"invalid user name {local!r}")
    if "/" in local:
        raise InvalidName(f"invalid user name {local!r}")
    return local


def check_domain(domain: str) -> str:
    if not _DOMAIN_RE.match(domain):
        raise InvalidName(f"invalid domain {domain!r}")
    return domain


def normalize_user(name: str, default_domain: str = "") -> str:
    """A login or user name -> the canonical 'local@domain' (lower case). A bare name takes
    `default_domain` when one is configured. Raises InvalidName."""
    if not isinstance(name, str):
        raise InvalidName("invalid user name")
    name = name.strip()
    if "@" not in name:
        if not default_domain:
            raise InvalidName("user names are full addresses (local@domain)")
        name = f"{name}@{default_domain}"
    local, domain, detail = split_address(name, delimiter="")
    return f"{local}@{domain}"


def normalize_folder(name: str) -> str:
    """Check a folder name and return its canonical form ('inbox' -> 'INBOX'). Raises InvalidName."""
    if not isinstance(name, str) or not name:
        raise InvalidName("empty folder name")
    if name.upper() == INBOX:
        return INBOX
    if _BAD_FOLDER_CHARS.search(name):
        raise InvalidName(f"invalid folder name {name!r}: control characters, '/' and '\\' are not allowed")
    parts = name.split(SEPARATOR)
    if any(p == "" for p in parts):
        raise InvalidName(f"invalid folder name {name!r}: empty hierarchy level")
    if parts[0].upper() == INBOX and len(parts) > 1:
        raise InvalidName(f"invalid folder name {name!r}: INBOX has no children here")
    if len(folder_dirname(name).encode()) > 255:
        raise InvalidName("folder name too long")
    return name


def folder_dirname(name: str) -> str:
    """The Maildir++ directory of a (checked) folder: '' for INBOX, '.Name' otherwise."""
    if name == INBOX:
        return ""
    return "." + encode_mutf7(name)


def folder_from_dirname(dirname: str) -> str | None:
    """'.Name' -> 'Name' (decoding modified UTF-7); None when the entry is not a valid folder."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    try:
        return normalize_folder(decode_mutf7(dirname[1:]))
    except (InvalidName, ValueError):
        return None


def encode_mutf7(text: str) -> str:
    """Unicode -> modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode_mutf7(text: str) -> str:
    """Modified UTF-7 -> Unicode. Raises ValueError on malformed input."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "&":
            if not 0x20 <= ord(ch) <= 0x7E:
                raise ValueError("non-ASCII in modified UTF-7")
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i)
        if end < 0:
            raise ValueError("unterminated modified UTF-7 shift")
        chunk = text[i + 1:end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            out.append(base64.b64decode(b64, validate=True).decode("utf-16-be"))
        i = end + 1
    return "".join(out)
