"""BODY[section]<partial> and RFC822.SIZE from message bytes (RFC 3501 6.4.5)."""

from __future__ import annotations

from mailsift.protocols.imap.mimetree import Part
from mailsift.protocols.imap.parser import Section

MEMO_ENTRIES = 4     # HEADER.FIELDS answers kept per parsed header (Part._memo)
MEMO_BYTES = 1024    # only small ones (headercache._cost reserves room for them)

# Memo keys, shared by every Part that memoises the same question: a frozenset per part and
# question cost ~0.5 KB each and broke the header cache's memory bound (issue-6 edge tests).
_KEYS: dict[tuple[str, tuple[str, ...]], tuple[str, frozenset[str]]] = {}
_MAX_KEYS = 256
# Only lists of at most this many names and characters are kept (interned, memoised, asked of
# the answer cache): a client names the fields, and one FETCH line may name thousands, each such
# key ~100 KB that no cache counts. Clients list ~10-15 (Thunderbird 14 names, 120 characters).
MEMO_KEY_NAMES = 24
MEMO_KEY_CHARS = 384


def small_list(fields: tuple[str, ...] | list[str] | frozenset[str]) -> bool:
    return len(fields) <= MEMO_KEY_NAMES and sum(map(len, fields)) <= MEMO_KEY_CHARS


def _memo_key(text: str, fields: tuple[str, ...] | list[str]) -> tuple[str, frozenset[str]]:
    raw = (text, tuple(fields))
    key = _KEYS.get(raw)
    if key is None:
        key = (text, frozenset(f.lower() for f in fields))
        if small_list(raw[1]):
            if len(_KEYS) >= _MAX_KEYS:
                _KEYS.clear()
            _KEYS[raw] = key
    return key


def rfc822_size(data_crlf: bytes) -> int:
    return len(data_crlf)


def find_part(root: Part, path: tuple[int, ...]) -> Part | None:
    """The part a section number names; None when it does not exist."""
    cur = root
    stayed = False  # "1" under a single part names that part once, not again (as Dovecot)
    for i, n in enumerate(path):
        if cur.is_multipart:
            if n > len(cur.children):
                return None
            cur = cur.children[n - 1]
            stayed = False
        elif n != 1 or stayed:
            return None
        else:
            stayed = True
        if i < len(path) - 1 and cur.message is not None:
            cur = cur.message
            stayed = False
    return cur


def section_bytes(root: Part, section: Section) -> bytes:
    """The octets of BODY[section] (before any partial); empty when the part does not exist
    (as Dovecot answers)."""
    return _section(root, section) or b""


def _section(root: Part, section: Section) -> bytes | None:
    if section.part:
        part = find_part(root, section.part)
        if part is None:
            return None
        if section.text is None:
            return part.body
        if section.text == "MIME":
            return part.header
        if part.message is None:  # HEADER/TEXT of a part that is not message/rfc822
            return None
        msg = part.message
    else:
        msg = root
        if section.text is None:
            return root.raw
    if section.text == "HEADER":
        return msg.header
    if section.text == "TEXT":
        return msg.body
    if section.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        lit = fields_literal(msg, _memo_key(section.text, section.fields), section.text == "HEADER.FIELDS")
        return lit[lit.index(b"\n") + 1:]
    return None


def fields_literal(msg: Part, key: tuple[str, frozenset[str]], keep: bool) -> bytes:
    """BODY[HEADER.FIELDS (...)] (keep) or BODY[HEADER.FIELDS.NOT (...)] of a message's header
    as an IMAP literal (`{n}` CRLF and the lines), `key` from _memo_key; small answers are
    memoised on the part, in the form FETCH sends them."""
    memo = msg._memo
    if memo is not None:
        hit = memo.get(key)
        if hit is not None:
            return hit
    wanted = key[1]
    out = b"".join([f[1] for low, f in zip(msg.lower_names(), msg.fields) if (low in wanted) == keep])
    # Dovecot ends the list with a blank line, unless its last line lacks a line end
    out = out if out and not out.endswith(b"\n") else out + b"\r\n"
    lit = b"{%d}\r\n%b" % (len(out), out)
    if len(out) <= MEMO_BYTES and small_list(wanted):
        if memo is None:
            memo = msg._memo = {}
        if len(memo) < MEMO_ENTRIES:
            memo[key] = lit
    return lit


def partial(data: bytes, window: tuple[int, int] | None) -> bytes:
    if window is None:
        return data
    start, length = window
    return data[start:start + length]
