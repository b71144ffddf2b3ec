"""Turn raw mail into tokens: a tokenizer that understands email.

`tokenize(raw) -> list[str]` never raises and does bounded work on any input:

- Parsing is our own and lenient: one regex reads a header block (parse_headers), a bytes
  split cuts a multipart on its boundary (_mime_tokens); `email.header` decodes RFC 2047
  words. Measured: 2-3x faster than `email` with `policy=compat32`, itself ~10x faster than
  policy.default.
- Only the first `max_bytes` of a message are read; each decoded text part is cut to
  `MAX_PART_CHARS`; at most `MAX_PARTS` MIME parts are visited, `MAX_DEPTH` deep; at most
  `MAX_TOKENS` tokens come out. So a 10 MB line or 1,000 nested parts cost bounded time.
- Headers: a WHITELIST of sender-side headers, each token prefixed with the header name
  ("subject:free"). Everything else is ignored: incoming verdicts (X-Spam-*, X-Virus-*,
  X-Amavis*, X-Bogosity, ...), mailbox/client artefacts (X-UIDL, X-Mozilla-*, Status) and
  recipient-side artefacts (Delivered-To, X-Original-To, Received-SPF, Authentication-Results).
  Measured reason: csdmc2010/ham carries X-Spam-*/X-Mozilla-* headers that spam lacks; reading
  them learns the collecting site, not the mail (see ../shared/corpora/README.md).
- Received: hops are walked from the top; hops added by the recipient's own site (its MX,
  internal relays, fetchmail POP3/IMAP pulls, private/loopback addresses) are dropped; only the
  "from" side of the first external hop and the hops below it (the sender's side) give tokens.
  The recipient site's domains (from those hops, Delivered-To, X-Original-To) are then removed
  from every address/domain/URL token of the message: they describe the collector.
- No tokens for which headers are present or absent (`lacks:list-unsubscribe`,
  `has:user-agent`), for the site's own domains (`from:sitedomain`, `url:sitedomain`) or for
  the number of recipients: they describe how the corpora's collecting sites received and
  stored mail, not the mail, and a default model learned them as spam signs for a new site's
  personal notes (issue 12: "lunch tomorrow?" scored 3.8, `lacks:*` +4.4 of it). Measured
  with a model trained on CSDMC2010 and tested on SpamAssassin's corpus (no feedback): ham
  called spam 24.3% -> 19.0%, 1-ROCA% 8.6 -> 6.2; trained on SpamAssassin and tested on
  CSDMC2010: 1-ROCA% 0.60 -> 1.14 (the other direction), full feedback on both 0.067 -> 0.067.
- Body: MIME decoding (base64, quoted-printable, charsets, RFC 2047 words in headers), HTML
  reduced to text plus a few tag tokens ("html:img", "html:form", ...), URL tokens (host,
  registrable domain, path words), attachment content types and filename extensions.
- A declared charset the bytes contradict (8-bit bytes declared as ASCII or undeclared, bytes
  the charset cannot read, an HTML <meta> charset other than the MIME one; raw 8-bit Subject
  or From): how spam is built, which carries across sites. Measured on the cross-site
  protocols (docs/classifier.md, "Charsets the bytes contradict"): CS->SA 1-ROCA% 4.554 ->
  4.543, SA->CS 0.166 -> 0.158 without feedback; no measurable tokenizing cost.
- Words: lower-cased, 2..20 chars; longer runs become a "skip:<first char> <len/10>" token
  (SpamBayes' trick: long base64/garbage runs are a signal but each one is unique).
"""

from __future__ import annotations

import binascii
import functools
import email.header
import html
import ipaddress
import itertools
import re

from mailsift import charsets

# Bumped whenever the tokens a message yields change; recorded in the model's sidecar.
TOKENIZER_VERSION = 5

MAX_BYTES = 256 * 1024  # of the raw message read for tokens (the rest is ignored)
MAX_PART_CHARS = 64 * 1024  # of decoded text per MIME part
MAX_PARTS = 64  # MIME parts visited
MAX_DEPTH = 16  # MIME nesting followed
MAX_TOKENS = 6000  # tokens per message (before de-duplication)
MAX_HEADER_CHARS = 2000  # of one header value
SENDER_HOPS = 2  # Received hops read below the recipient site (measured: all hops gave online
# 1-ROCA% 0.071 but 0.58 trained on SpamAssassin, tested on CSDMC; two hops 0.073 and 0.46)
BIGRAMS = 1000  # word bigrams over the first N words of each text part

# Headers whose words we read, and the prefix their tokens get.
_WORD_HEADERS: dict[str, str] = {
    "subject": "subject",
    "x-mailer": "mailer",
    "user-agent": "mailer",
    "x-mimeole": "mailer",
    "organization": "org",
    "content-transfer-encoding": "cte",
    "x-priority": "prio",
    "x-msmail-priority": "prio",
    "importance": "prio",
    "precedence": "prec",
    "list-id": "list",
    "mailing-list": "list",
    "x-mailing-list": "list",
    "list-unsubscribe": "list",
}
# Headers holding addresses: tokens for the address, its local part shape and its domain.
_ADDRESS_HEADERS: dict[str, str] = {
    "from": "from",
    "reply-to": "reply",
    "sender": "sender",
    "return-path": "rpath",
    "errors-to": "errorsto",
    "to": "to",
    "cc": "cc",
}

# Runs of word characters (plus $ € £ ' . -), trailing/leading ' . - _ stripped afterwards:
# the same words as a regex that trims in place, without its backtracking (1.5x faster).
_WORD_RE = re.compile(r"[\w$€£'.\-]{2,}")
# The same on ASCII-only text (most mail): explicit classes instead of \w's Unicode lookups,
# identical matches, 25 -> 16 us for a 5 KB body (66 -> 44 us per corpus message).
_WORD_RE_ASCII = re.compile(r"[A-Za-z0-9_$'.\-]{2,}")
_WORD_STRIP = "'.-_"
_BANG_RE = re.compile(r"!{2,}")
# URLs are found from their "://" and "www." (literal-led patterns scan several times faster
# than one alternation); a URL seen by both yields the same tokens, and features are binary.
_URL_RE = re.compile(r"://([^\s/\"'<>()\[\]{}?#]{1,255})([^\s\"'<>]{0,300})")
_WWW_RE = re.compile(r"www\.([a-z0-9\-.]{2,255})()")
_EMAIL_RE = re.compile(r"(?i)@((?:[a-z0-9\-]{1,63}\.){1,8}[a-z]{2,24})")
_ADDR_IN_HEADER_RE = re.compile(r"(?i)([a-z0-9._%+\-=&'/]{0,128})@([a-z0-9\-.\[\]]{1,255})")
_TAG_RE = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9]{0,15}[^>]{0,2000}>", re.S)
_TAG_NAME_RE = re.compile(r"<\s*([a-zA-Z][a-zA-Z0-9]{0,15})")
_FONT_COLOR_RE = re.compile(r"(?i)<font[^>]{0,200}color")
_TINY_IMG_RE = re.compile(r"""(?i)<img[^>]{0,300}(?:width|height)\s*=\s*["']?[01]\b""")
# A charset declared in the HTML itself: <meta http-equiv="Content-Type" content="text/html; charset=...">
_META_CHARSET_RE = re.compile(r"""(?i)<meta[^<>]{0,300}?charset\s*=\s*["']?\s*([a-z0-9_\-.:]{1,40})""")
_TAG_ATTRS_RE = re.compile(r"<\s*[a-zA-Z][a-zA-Z0-9]{0,15}\s([^<>]{1,2000})>")  # linear: stops at "<"
_RECEIVED_FROM_RE = re.compile(r"(?is)^\s*from\s+(\S+)(?:\s+\(([^)]{0,400})\))?")
_RECEIVED_BY_RE = re.compile(r"(?is)\bby\s+([^\s;()]+)")
_RECEIVED_WITH_RE = re.compile(r"(?is)\bwith\s+([A-Za-z0-9]+)")
_IP_RE = re.compile(r"\[?(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\]?")
_HOSTNAME_RE = re.compile(r"(?i)^[a-z0-9\-_]+(?:\.[a-z0-9\-_]+)+$")

_ALPHA_RUN_RE = re.compile(r"[a-z]+")
_DIGIT_RUN_RE = re.compile(r"[0-9]+")
_URL_PATH_SPLIT_RE = re.compile(r"[/?=&.#_\-+]+")
_CHARSET_RE = re.compile(r'charset\s*=\s*"?([a-z0-9_\-.:]+)')
_BOUNDARY_RE = re.compile(r'boundary\s*=\s*"?([^";\s]+)')
# Tags whose presence is a (weak) signal; their href/src hosts become URL tokens anyway.
_TAGS = frozenset({"img", "a", "font", "table", "form", "input", "script", "iframe", "style",
                   "center", "map", "area", "object", "embed", "base", "meta", "b", "u", "blink"})
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "gen", "ltd", "plc"})


@functools.lru_cache(maxsize=8192)
def registrable(domain: str) -> str:
    """The registrable part of a host name, roughly: example.co.uk, example.com."""
    labels = [x for x in domain.lower().strip(".").split(".") if x]
    if len(labels) <= 2:
        return ".".join(labels)
    if len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


_INTERNAL_NETS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "0.0.0.0/8",
    "::1/128", "fc00::/7", "fe80::/10"))


def _is_internal_ip(text: str) -> bool:
    """RFC 1918, loopback and link-local addresses: hops inside the receiving site.
    (Not ipaddress's is_private, which also counts the documentation ranges.)"""
    if ":" not in text:  # IPv4, the common case: string tests, no ipaddress objects
        parts = text.split(".")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            return False
        a, b = int(parts[0]), int(parts[1])
        return a in (0, 10, 127) or (a == 192 and b == 168) or (a == 169 and b == 254) or (a == 172 and 16 <= b <= 31)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return any(ip in net for net in _INTERNAL_NETS if net.version == ip.version)


def decode_header_value(value: object) -> str:
    """RFC 2047-decoded text of a header value; never raises."""
    if isinstance(value, email.header.Header):
        value = str(value)
    text = str(value)[:MAX_HEADER_CHARS]
    if "=?" not in text:
        return text
    try:
        parts = email.header.decode_header(text)
    except Exception:  # noqa: BLE001 - malformed encoded-words: keep the raw text
        return text
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            out.append(_decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    return " ".join(out)


def _decode_bytes(data: bytes, charset: str | None) -> str:
    # Only real text encodings: a declared `punycode` (quadratic) or `rot13` reads as UTF-8.
    return charsets.decode(data, charset)


def _words(text: str, prefix: str, out: list[str], bigrams: int = 0) -> None:
    """Word tokens of `text` (callers pass lower-cased text)."""
    found = (_WORD_RE_ASCII if text.isascii() else _WORD_RE).findall(text)
    words = list(filter(None, map(str.strip, found, itertools.repeat(_WORD_STRIP))))
    if "!!" in text:
        words += _BANG_RE.findall(text)[:20]
    if words and max(map(len, words)) > 20:
        long = [w for w in words if len(w) > 20]
        # One token per (first character, length band): the pairs are deduplicated before
        # any string is formatted (65 long runs, as in the benchmark's body: 7.4 -> 5.8 us).
        # (itertools.compress over the lengths instead of these comprehensions was slower:
        # 69 against 44 us per corpus message, measured in one process.)
        out.extend(f"{prefix}skip:{c} {n}" for c, n in {(w[0], len(w) // 10 * 10) for w in long[:50]})
        words = [w for w in words if len(w) <= 20]
    kept = [prefix + w for w in words] if prefix else words
    out.extend(kept)
    if bigrams and len(kept) > 1:
        head = kept[:bigrams]
        out.extend(map(" ".join, zip(head, head[1:])))  # C-level loop: 0.15 -> 0.10 ms per 1,000 words


class _Site:
    """The recipient's own site: registrable domains to keep out of the tokens."""

    def __init__(self) -> None:
        self.domains: set[str] = {"localhost", "localdomain"}

    def add_host(self, host: str) -> None:
        host = host.strip("[]<>;.").lower()
        if host and not _IP_RE.fullmatch(host) and "." in host:
            self.domains.add(registrable(host))

    def owns(self, host: str) -> bool:
        host = host.lower().strip(".")
        if not host:
            return False
        return registrable(host) in self.domains or host in self.domains


def _received_tokens(received: list[str], site: _Site, out: list[str]) -> int:
    """Tokens from the sender-side Received hops; recipient-side hops teach `site`.
    Returns the position of the first sender-side hop (len(received) when none)."""
    boundary_found = False
    boundary = len(received)
    for pos, value in enumerate(received[:30]):
        text = value[:1000]  # already unfolded by parse_headers
        m_from = _RECEIVED_FROM_RE.match(text)
        m_by = _RECEIVED_BY_RE.search(text)
        m_with = _RECEIVED_WITH_RE.search(text)
        with_proto = (m_with.group(1).lower() if m_with else "")
        by_host = m_by.group(1).lower() if m_by else ""
        from_host = m_from.group(1).lower() if m_from else ""
        detail = (m_from.group(2) or "") if m_from else ""
        ips = _IP_RE.findall(detail) or _IP_RE.findall(from_host)
        if not boundary_found:
            # Still on the recipient's side: learn its hosts, drop the hop.
            if by_host:
                site.add_host(by_host)
            internal = (not m_from
                        or with_proto in ("pop3", "imap", "imap4", "qmqp", "lmtp", "local")
                        or site.owns(from_host)
                        or from_host in ("localhost", "unknown")
                        or (ips and all(_is_internal_ip(ip) for ip in ips)))
            if internal:
                if from_host and not _IP_RE.fullmatch(from_host) and with_proto in ("pop3", "imap", "imap4"):
                    site.add_host(from_host)
                elif from_host and ips and all(_is_internal_ip(ip) for ip in ips):
                    site.add_host(from_host)
                continue
            boundary_found = True
            boundary = pos
            out.append("rcvd:boundary")
        if pos - boundary >= SENDER_HOPS:
            break
        # The sender's side: the relay as the receiver saw it.
        if from_host:
            if _HOSTNAME_RE.match(from_host) and not site.owns(from_host):
                out.append("rcvd:helo:" + registrable(from_host))
            elif _IP_RE.fullmatch(from_host.strip("[]")):
                out.append("rcvd:helo:ip")
            else:
                out.append("rcvd:helo:bare")
        for word in detail.split()[:4]:
            word = word.strip("[]()").lower()
            if _IP_RE.fullmatch(word):
                ip = word
                out.append("rcvd:ip:" + ".".join(ip.split(".")[:2]))
            elif _HOSTNAME_RE.match(word) and not site.owns(word):
                out.append("rcvd:rdns:" + registrable(word))
            elif word == "unknown":
                out.append("rcvd:rdns:unknown")
        if with_proto:
            out.append("rcvd:with:" + with_proto)
        if by_host and boundary_found and not site.owns(by_host) and _HOSTNAME_RE.match(by_host):
            out.append("rcvd:by:" + registrable(by_host))
    return boundary


def _address_tokens(name: str, value: str, site: _Site, out: list[str]) -> None:
    prefix = _ADDRESS_HEADERS[name]
    text = decode_header_value(value)
    addrs = _ADDR_IN_HEADER_RE.findall(text)
    if name in ("to", "cc"):
        for local, domain in addrs[:20]:
            if not site.owns(domain):
                out.append(f"{prefix}:dom:{registrable(domain)}")
        return
    if not addrs:
        out.append(f"{prefix}:noaddr")
    for local, domain in addrs[:5]:
        domain = domain.lower().strip(".")
        if site.owns(domain):
            continue
        if "=" in local and len(local) > 20:  # VERP: encodes the recipient, unique per copy
            out.append(f"{prefix}:verp")
        else:
            out.append(f"{prefix}:addr:{local.lower()}@{domain}")
        out.append(f"{prefix}:dom:{registrable(domain)}")
        shape = _ALPHA_RUN_RE.sub("a", _DIGIT_RUN_RE.sub("9", local.lower()))[:12]
        out.append(f"{prefix}:shape:{shape}")
    # display-name words
    display = _ADDR_IN_HEADER_RE.sub(" ", text)
    _words(display.lower(), prefix + ":", out)


def _url_tokens(text: str, site: _Site, out: list[str]) -> None:
    text = text[:MAX_PART_CHARS]
    if "@" in text:
        for m in _EMAIL_RE.finditer(text):
            dom = m.group(1).lower()
            if not site.owns(dom):
                out.append("body:emaildom:" + registrable(dom))
    if "://" not in text and "www." not in text:
        return
    text = text.lower()
    matches = list(_URL_RE.finditer(text))
    if "www." in text:
        matches += _WWW_RE.finditer(text)
    for m in matches[:100]:
        host = "www." + m.group(1) if m.re is _WWW_RE else m.group(1)
        path = m.group(2) or ""
        if "@" in host:
            out.append("url:userinfo")
            host = host.rsplit("@", 1)[1]
        host = host.split(":", 1)[0].strip(".")
        if not host:
            continue
        if _IP_RE.fullmatch(host):
            out.append("url:ip")
            continue
        if site.owns(host):
            continue
        out.append("url:" + registrable(host))
        out.append("url:host:" + host)
        if "%" in path:
            out.append("url:escaped")
        for piece in _URL_PATH_SPLIT_RE.split(path)[:8]:
            if 2 <= len(piece) <= 20:
                out.append("url:path:" + piece.lower())


def _cut_blocks(markup: str, start: str, end: str, repl: str) -> str:
    """Replace each start...end block (case-insensitive; an unclosed one runs to the end)
    by `repl`, in linear time: a lazy regex rescans the rest for every unclosed opener
    (measured: 8,000 "<script>" took 3 s)."""
    low = markup.lower()
    if start not in low:
        return markup
    pieces: list[str] = []
    pos = 0
    while True:
        i = low.find(start, pos)
        if i < 0:
            pieces.append(markup[pos:])
            break
        pieces.append(markup[pos:i])
        pieces.append(repl)
        j = low.find(end, i + len(start))
        if j < 0:
            break
        k = low.find(">", j)
        pos = k + 1 if k >= 0 else len(markup)
    return "".join(pieces)


def _html_to_text(markup: str, out: list[str]) -> str:
    """Visible text of HTML, with link targets appended; a few tag tokens into `out`."""
    markup = _cut_blocks(markup, "<!--", "-->", " ")
    markup = _cut_blocks(markup, "<script", "</script", " <script> ")
    markup = _cut_blocks(markup, "<style", "</style", " <style> ")
    names = {n.lower() for n in _TAG_NAME_RE.findall(markup)} & _TAGS
    out.extend(["html:" + n for n in names])
    if "font" in names and _FONT_COLOR_RE.search(markup):
        out.append("html:font:color")
    if "img" in names and _TINY_IMG_RE.search(markup):
        out.append("html:img:tiny")
    # The attributes of link tags (href=..., src=..., width=1, border=0) as words: measured,
    # keeping only the URLs gave online 1-ROCA% 0.069 but 0.57 trained on SpamAssassin and
    # tested on CSDMC; with the attributes 0.071 and 0.53: they generalise across sources.
    links = []
    if "href" in markup or "src" in markup or "HREF" in markup or "SRC" in markup:
        links = [a for a in _TAG_ATTRS_RE.findall(markup) if "href" in a.lower() or "src" in a.lower()][:200]
    text = _TAG_RE.sub(" ", markup)
    try:
        text = html.unescape(text)
    except Exception:  # noqa: BLE001
        pass
    return text + " " + " ".join(links) if links else text


def _text_tokens(text: str, site: _Site, out: list[str], html_like: bool) -> None:
    if html_like:
        text = _html_to_text(text, out)
    low = text.lower()
    _url_tokens(low, site, out)
    for dom in site.domains:  # "you are subscribed as me@collector.example": the site's
        if "." in dom and dom in low:
            low = low.replace(dom, " ")
    _words(low, "", out, BIGRAMS)


_HEADER_FIELD_RE = re.compile(r"^([!-9;-~]{1,100})[ \t]*:[ \t]*(.{0,4000}(?:\r?\n[ \t].{0,4000}){0,50})", re.M)


def parse_headers(head: bytes) -> list[tuple[str, str]]:
    """(name, unfolded value) pairs of a header block; a fast, lenient stand-in for the
    feedparser (which costs ~1/3 of tokenizing). Bytes are read as latin-1: lossless."""
    text = head.decode("latin-1")
    return [(name, " ".join(value.split())) for name, value in _HEADER_FIELD_RE.findall(text)[:200]]


def _header_tokens(items: list[tuple[str, str]], site: _Site, out: list[str]) -> dict[str, str]:
    """Tokens of the whitelisted headers; returns {lower-case name: first value}."""
    first: dict[str, str] = {}
    received: list[str] = []
    received_at: list[int] = []  # header positions of the Received lines
    envelope: list[tuple[int, str]] = []
    lows = [name.lower() for name, _ in items]
    for pos, (low, (_, value)) in enumerate(zip(lows, items)):
        if low not in first:
            first[low] = value if isinstance(value, str) else str(value)
        if low == "received":
            received.append(str(value))
            received_at.append(pos)
        elif low in ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to"):
            envelope.append((pos, str(value)))
    boundary = _received_tokens(received, site, out)
    # Envelope recipients written above the first sender-side hop name the collecting site;
    # below it (a mailing list's own delivery) they describe the sender's side.
    boundary_at = received_at[boundary] if boundary < len(received_at) else len(items)
    for pos, value in envelope:
        if pos < boundary_at:
            for _local, domain in _ADDR_IN_HEADER_RE.findall(value[:500]):
                site.add_host(domain)
    for low, (_, value) in zip(lows, items):
        if low in _ADDRESS_HEADERS:
            _address_tokens(low, value, site, out)
            if low == "from" and not value.isascii():
                out.append("from:8BIT")  # upper case: no From word can be it
        elif low in _WORD_HEADERS:
            prefix = _WORD_HEADERS[low] + ":"
            text = decode_header_value(value)
            if low == "subject":
                _url_tokens(text.lower(), site, out)
                if not value.isascii():  # raw 8-bit: no RFC 2047 word says its charset
                    out.append("subject:8BIT")
                if text.isupper() and len(text) > 8:
                    out.append("subject:ALLCAPS")
                if "=?" in str(value):
                    out.append("subject:encoded")
            if low.startswith("list-") and "list-unsubscribe" == low:
                out.append("list:unsubscribe")
                continue
            _words(text.lower(), prefix, out)
        elif low == "content-type":
            text = str(value)[:500].lower()
            out.append("ctype:" + text.split(";", 1)[0].strip()[:40])
            cs = _CHARSET_RE.search(text)
            if cs:
                out.append("ctype:charset:" + cs.group(1)[:20])
            if "boundary" in text:
                b = _BOUNDARY_RE.search(text)
                if b:
                    shape = _ALPHA_RUN_RE.sub("a", _DIGIT_RUN_RE.sub("9", b.group(1)))[:16]
                    out.append("ctype:boundary:" + shape)
        elif low == "message-id":
            text = str(value)[:300]
            at = text.rfind("@")
            if at < 0:
                out.append("msgid:noat")
            else:
                dom = text[at + 1:].strip("<> \t\r\n").lower()
                if _IP_RE.fullmatch(dom.strip("[]")):
                    out.append("msgid:ip")
                elif not site.owns(dom):
                    out.append("msgid:" + registrable(dom))
    return first


_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")


def _decode_transfer(body: bytes, cte: str) -> bytes:
    """Undo a Content-Transfer-Encoding like get_payload(decode=True), tolerating garbage."""
    if cte == "base64":
        try:
            return binascii.a2b_base64(body)
        except (binascii.Error, ValueError):
            cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
            cleaned = cleaned[: len(cleaned) // 4 * 4]
            try:
                return binascii.a2b_base64(cleaned)
            except (binascii.Error, ValueError):
                return body
    if cte == "quoted-printable":
        try:
            return binascii.a2b_qp(body)
        except (binascii.Error, ValueError):
            return body
    return body


_FILENAME_RE = re.compile(r'(?i)\b(?:file)?name\*?\s*=\s*"?([^";\r\n]{1,200})')
_MIME_BOUNDARY_RE = re.compile(r'(?i)\bboundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))')


class _Walk:
    """Budget of one message's MIME walk."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def _first_values(items: list[tuple[str, str]]) -> dict[str, str]:
    first: dict[str, str] = {}
    for name, value in items:
        first.setdefault(name.lower(), value)
    return first


def _mime_tokens(first: dict[str, str], body: bytes, site: _Site, out: list[str], depth: int,
                 walk: _Walk) -> None:
    """Tokens of one MIME entity and, for multiparts, of its parts.

    A small splitter of our own instead of the email package's feedparser: the feedparser
    reads line by line and compiles a regex per boundary (measured: ~20% of tokenizing
    time); here a multipart body is cut with one bytes.split on "\n--boundary". Bounded by
    MAX_PARTS parts and MAX_DEPTH levels.
    """
    walk.parts += 1
    if walk.parts > MAX_PARTS:
        if walk.parts == MAX_PARTS + 1:
            out.append("mime:manyparts")
        return
    ctype_value = first.get("content-type", "")[:1000]
    ctype = ctype_value.split(";", 1)[0].strip().lower()[:60]
    if "/" not in ctype:
        ctype = "text/plain"
    cte = first.get("content-transfer-encoding", "").strip().lower()[:30]
    if depth:
        out.append("mime:" + ctype)
        if cte:
            out.append("mime:cte:" + cte)
    m = _FILENAME_RE.search(first.get("content-disposition", "")) or _FILENAME_RE.search(ctype_value)
    if m:
        name = decode_header_value(m.group(1)).lower()
        out.append("attach:ext:" + (name.rsplit(".", 1)[-1][:8] if "." in name else "none"))
    if ctype.startswith("multipart/") or ctype == "message/rfc822":
        if depth >= MAX_DEPTH:
            out.append("mime:deep")
            return
        if ctype == "message/rfc822":
            mm = _BLANK_LINE_RE.search(body)
            head, inner = (body[: mm.start() + 1], body[mm.end():]) if mm else (body, b"")
            _mime_tokens(_first_values(parse_headers(head)), inner, site, out, depth + 1, walk)
            return
        bm = _MIME_BOUNDARY_RE.search(ctype_value)
        if not bm:
            out.append("mime:broken-multipart")
            _text_part(body, "", "text/plain", site, out)
            return
        delimiter = b"\n--" + (bm.group(1) or bm.group(2)).encode("latin-1", "replace")
        chunks = (b"\n" + body).split(delimiter, MAX_PARTS + 1)
        if len(chunks) == 1:  # the declared boundary never occurs: read it all as text
            out.append("mime:broken-multipart")
            _text_part(body, "", "text/html" if b"<html" in body[:4000].lower() else "text/plain", site, out)
            return
        closed = False
        entities: list[bytes] = []
        for chunk in chunks[1:]:
            if chunk.startswith(b"--"):
                closed = True
                break
            if chunk[:1] not in (b"\r", b"\n", b" ", b"\t", b""):
                # "--boundary" was only the start of a longer line: not a delimiter
                if entities:
                    entities[-1] += delimiter + chunk
                continue
            entities.append(chunk)
        for chunk in entities:
            nl = chunk.find(b"\n")
            if nl < 0:
                continue
            part = chunk[nl + 1:]
            if part[:1] == b"\n" or part[:2] == b"\r\n":  # no headers: text/plain
                _mime_tokens({}, part.lstrip(b"\r\n"), site, out, depth + 1, walk)
                continue
            pm = _BLANK_LINE_RE.search(part)
            head, inner = (part[: pm.start() + 1], part[pm.end():]) if pm else (part, b"")
            _mime_tokens(_first_values(parse_headers(head)), inner, site, out, depth + 1, walk)
            if walk.parts > MAX_PARTS:
                break
        if not closed and len(chunks) > 1 and walk.parts <= MAX_PARTS:
            out.append("mime:unclosed")
        return
    if ctype.startswith("text/"):
        cs = _CHARSET_RE.search(ctype_value.lower())
        _text_part(body, cte, ctype, site, out, cs.group(1) if cs else None)


def _text_part(body: bytes, cte: str, ctype: str, site: _Site, out: list[str],
               charset: str | None = None) -> None:
    data = _decode_transfer(body[: MAX_PART_CHARS * 3], cte)[: MAX_PART_CHARS * 2]
    text = _decode_bytes(data, charset)[:MAX_PART_CHARS]
    html_like = ctype == "text/html" or "<html" in text[:500].lower()
    _charset_tokens(data, text, charset, html_like, out)
    _text_tokens(text, site, out, html_like)


def _charset_tokens(data: bytes, text: str, charset: str | None, html_like: bool, out: list[str]) -> None:
    """Tokens for a declared charset the part contradicts: 8-bit bytes declared as ASCII or
    not declared at all, bytes the declared charset cannot read (or a charset that does not
    exist), an HTML <meta> charset other than the MIME one (or the only one declared)."""
    if not data.isascii():
        declared = charsets.normalize(charset) if charset else ""
        if declared in ("", "us-ascii", "ascii"):
            out.append("charset:8bit-undeclared")
        elif charsets.text_codec(declared) is None or "\ufffd" in text:
            out.append("charset:invalid")
    if html_like:
        meta = _META_CHARSET_RE.search(text, 0, 4000)
        if meta:
            if not charset:
                out.append("charset:meta-only")
            elif _charset_name(meta.group(1)) != _charset_name(charset):
                out.append("charset:meta-mismatch")


@functools.lru_cache(maxsize=256)
def _charset_name(label: str) -> str:
    """A declared charset's codec name (so that aliases agree), else the label as written."""
    label = charsets.normalize(label)
    if len(label) > 40:
        return label
    info = charsets.lookup(label)
    return info.name if info is not None else label


def tokenize(raw: bytes, max_bytes: int = MAX_BYTES) -> list[str]:
    """The tokens of one raw message (with repeats). Never raises; bounded work."""
    return tokenize_sender(raw, max_bytes)[0]


# Who sent a message, as reputation.py keys it: (From address, List-Id, sender-side relay),
# each "" when the message has none.
Sender = tuple[str, str, str]
NO_SENDER: Sender = ("", "", "")
_ANGLE_ADDR_RE = re.compile(r"<\s*([^<>@\s]{0,128}@[^<>\s]{1,255}?)\s*>")
_LIST_ID_RE = re.compile(r"<([^<>\s]{1,200})>")


def tokenize_sender(raw: bytes, max_bytes: int = MAX_BYTES) -> tuple[list[str], Sender]:
    """tokenize(), and who sent the message (Sender), read in the same pass."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raw = str(raw).encode("utf-8", "replace")
    raw = bytes(raw[:max_bytes])
    out: list[str] = []
    sender = NO_SENDER
    try:
        m = _BLANK_LINE_RE.search(raw)
        head, body = (raw[: m.start() + 1], raw[m.end():]) if m else (raw, b"")
        site = _Site()
        first = _header_tokens(parse_headers(head), site, out)
        sender = _sender(first, out)
        _mime_tokens(first, body, site, out, 0, _Walk())
    except Exception:  # noqa: BLE001 - never raise: fall back to plain words
        out.append("parse:failed")
        _words(raw[:MAX_PART_CHARS].decode("latin-1").lower(), "", out)
    if len(raw) >= max_bytes:
        out.append("size:truncated")
    return out[:MAX_TOKENS], sender


def _sender(first: dict[str, str], out: list[str]) -> Sender:
    """The From address (the one in angle brackets, else the first), the List-Id's id, and the
    relay of the first sender-side Received hop as the site's MX saw it: its reverse-DNS
    registrable domain, else its IP /16, else its HELO's domain. `out` holds the Received
    tokens first (_header_tokens reads those before any other header)."""
    addr = ""
    value = first.get("from", "")[:MAX_HEADER_CHARS]
    if "@" in value:
        m = _ANGLE_ADDR_RE.search(value)
        if m:
            addr = m.group(1).lower()
        else:
            found = _ADDR_IN_HEADER_RE.search(value)
            addr = f"{found.group(1)}@{found.group(2)}".lower() if found else ""
        addr = addr.strip(".")
    list_id = ""
    value = first.get("list-id", "")[:500]
    if value:
        m = _LIST_ID_RE.search(value)
        list_id = (m.group(1) if m else value.strip()[:200]).lower()
    relay = ""
    if out and out[0] == "rcvd:boundary":  # the first sender-side hop's tokens follow it
        helo = ip = ""
        for token in out[1:12]:
            if token.startswith("rcvd:rdns:") and token != "rcvd:rdns:unknown":
                relay = "rdns:" + token[10:]
                break
            if token.startswith("rcvd:helo:"):
                if helo:
                    break  # the next hop
                helo = token[10:]
            elif token.startswith("rcvd:ip:") and not ip:
                ip = token[8:]
        if not relay:
            relay = "ip:" + ip if ip else ("helo:" + helo if helo not in ("", "ip", "bare") else "")
    return addr, list_id, relay
