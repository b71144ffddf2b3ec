"""Sender reputation: what this site taught about each sender, as SpamAssassin's TxRep/AWL.

A per-site table keyed by who sent a message (tokenize.Sender: the From address, the List-Id,
the relay of the first sender-side Received hop) holds the ham and spam counts of what the
site taught (learn, moves, implicit confirmations; never the default model's corpora: marking
a model as the prior empties it). Each message has up to three keys, each a 64-bit BLAKE2b
hash of its text (no second preimage to forge):

    addr   From address + relay        the sender as it reached this site
    dom    From domain + List-Id       the sender's domain (on that list): good history
           + relay                     only, weighted by DOMAIN_SHARE (one address's spam
                                       says little of the domain's other senders: freemail)
    from   From address alone          spam history only: an address a spammer forges
                                       through other relays earns no good reputation

No key for a List-Id alone: spam posted to a list would pass its reputation to every poster
(measured: ham posts to lists the site had corrected spam on went to Junk). At scoring, the
most specific relay-bound key with history (addr, then dom) shifts the log-odds towards it by weight * (spam - ham) / (ham + spam + prior) (z > 0 is
spam; bounded by weight; after one correction half of it), and failing those, the `from` key's spam history
alone (never towards ham). One contrary label among many does not swing it: 10 ham and 1
spam still shift towards ham by weight * 9 / 12.

Learning adds one count per key of the message, unlearning (a `learn --forget`, a contrary
move) removes it exactly; the table keeps the `capacity` keys taught most recently (each
learn moves its keys to the end; the oldest are dropped past the bound). Scoring costs one
hash and one dict lookup per key (the scorer: a binary search in the model file's sorted
keys), and nothing while the table is empty.
"""

from __future__ import annotations

try:  # hashlib's own: importing hashlib costs a one-message `classify` 4.7 ms (OpenSSL), this 0.3
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

from mailsift.classifier.tokenize import registrable

TYPE_CHECKING = False  # typing's, without importing typing: the numpy-free scorer imports this
if TYPE_CHECKING:
    from typing import Any

    from mailsift.classifier.tokenize import Sender

ADDR, DOM, FROM = 0, 1, 2
DOMAIN_SHARE = 0.5  # a domain's history counts half: freemail domains send both kinds


def _hash(text: str) -> int:
    return int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


NO_KEYS: tuple[int | None, ...] = (None, None, None)


def sender_keys(sender: Sender) -> tuple[int | None, ...]:
    """The (addr, dom, from) keys of a sender; None where it has no such identity."""
    addr, list_id, relay = sender
    domain = addr.rpartition("@")[2]
    if not domain:
        return NO_KEYS
    return (_hash(f"a\0{addr}\0{relay}"), _hash(f"d\0{registrable(domain)}\0{list_id}\0{relay}"),
            _hash(f"f\0{addr}"))


def shift_of(counts: Any, keys: tuple[int | None, ...], weight: float, prior: float) -> tuple[float, int]:
    """The log-odds shift for a message with `keys`, and which key gave it (-1: none).
    `counts(key)` gives (ham, spam) or None; shared by the model and the numpy-free scorer."""
    for kind in (ADDR, DOM):
        key = keys[kind]
        if key is None:
            continue
        found = counts(key)
        if found is not None and found[0] + found[1] > 0:
            ham, spam = found
            if kind == DOM:  # towards ham only: one address's spam says little of its domain's others
                return DOMAIN_SHARE * weight * min(0, spam - ham) / (ham + spam + prior), kind
            return weight * (spam - ham) / (ham + spam + prior), kind
    key = keys[FROM]
    if key is not None:
        found = counts(key)
        if found is not None and found[1] > found[0]:
            ham, spam = found
            return weight * (spam - ham) / (ham + spam + prior), FROM
    return 0.0, -1


class Reputation:
    """The table: key -> [ham, spam], in the order keys were last taught (oldest first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.table: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.table)

    def clear(self) -> None:
        self.table.clear()

    def counts(self, key: int) -> list[int] | None:
        return self.table.get(key)

    def shift(self, keys: tuple[int | None, ...], weight: float, prior: float) -> tuple[float, int]:
        if not self.table or not weight:
            return 0.0, -1
        return shift_of(self.table.get, keys, weight, prior)

    def learn(self, keys: tuple[int | None, ...], y: int) -> None:
        """One message of class y (0 ham, 1 spam) from the sender with `keys`."""
        table = self.table
        for key in keys:
            if key is None:
                continue
            entry = table.pop(key, None) or [0, 0]
            entry[y] += 1
            table[key] = entry  # to the end: the most recently taught
        while len(table) > self.capacity:
            del table[next(iter(table))]

    def unlearn(self, keys: tuple[int | None, ...], y: int) -> None:
        """Take back one message of class y (a key dropped since has nothing to take back)."""
        table = self.table
        for key in keys:
            entry = table.get(key) if key is not None else None
            if entry is None:
                continue
            entry[y] = max(0, entry[y] - 1)
            if entry[0] == 0 and entry[1] == 0:
                del table[key]

    # -- the model file -------------------------------------------------------------------
    def arrays(self) -> dict[str, Any]:
        """The table as the model file's sections: `rep_keys` sorted (the scorer searches
        them), `rep_ham`/`rep_spam` beside them, `rep_order` each key's rank from the oldest
        taught (so a loaded table drops the same keys next)."""
        import numpy as np

        keys = np.fromiter(self.table, dtype=np.uint64, count=len(self.table))
        counts = np.array(list(self.table.values()), dtype=np.uint32).reshape(-1, 2)
        order = np.argsort(keys, kind="stable")
        rank = np.empty(len(keys), dtype=np.uint32)
        rank[order] = np.arange(len(keys), dtype=np.uint32)  # rank[i]: where the i-th oldest sits sorted
        return {"rep_keys": keys[order], "rep_ham": counts[order, 0].copy(),
                "rep_spam": counts[order, 1].copy(), "rep_order": rank}

    def load(self, arr: dict[str, Any]) -> None:
        """Read the sections arrays() wrote (none: an empty table)."""
        self.table.clear()
        if "rep_keys" not in arr:
            return
        keys, ham, spam = arr["rep_keys"], arr["rep_ham"], arr["rep_spam"]
        order = arr["rep_order"]
        if not (len(keys) == len(ham) == len(spam) == len(order)):
            raise ValueError("reputation sections differ in length")
        kl, hl, sl = keys.tolist(), ham.tolist(), spam.tolist()
        for i in order.tolist():
            self.table[kl[i]] = [hl[i], sl[i]]
        if len(self.table) != len(kl):
            raise ValueError("reputation keys repeat")
