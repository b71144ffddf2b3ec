"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 section 3).

`thread(messages, algorithm)` takes the matching search.MessageView objects (only headers are
read: Subject, Date, Message-ID, References, In-Reply-To) and returns the threads as Nodes;
`format_threads(threads, uid)` writes them as the THREAD response does: `(1 2 (3)(4))(5)`,
a dummy parent as a list without a number: `((6)(7))`.

REFERENCES follows the RFC's steps (JWZ's algorithm): link by References (In-Reply-To when there
are none), never making a loop nor changing a parent already set except by a message's own
last reference; root set; prune dummies (at the top only when they hold one child); gather
top-level threads by base subject; sort each set of siblings by sent date (Date, INTERNALDATE
without one; ties and dummies as the RFC says).

Bounds (hostile mail must not make a THREAD take forever or exhaust the stack): at most
MAX_REFERENCES message-ids are read per message (the last ones), the loop check walks at most
MAX_DEPTH ancestors (a deeper link is not made), and every traversal is iterative. Pure; the
session runs it in a worker thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from mailsift.protocols.imap.basesubject import base_subject
from mailsift.protocols.imap.search import MessageView
from mailsift.protocols.imap.sort import casemap, sent_instant, subject_value

ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")
MAX_REFERENCES = 500
MAX_DEPTH = 10_000

_MSGID = re.compile(rb"<([^<>]*)>")


@dataclass(eq=False)
class Node:
    seq: int = 0                     # 0: a dummy (a message referred to but not here)
    uid: int = 0
    date: int = 0
    subject: str = ""                # the base subject, case-mapped
    reply: bool = False              # the subject said it is a reply or forward
    parent: "Node | None" = None
    children: list["Node"] = field(default_factory=list)

    @property
    def dummy(self) -> bool:
        return self.seq == 0


def _node(msg: MessageView) -> Node:
    subject, reply = base_subject(subject_value(msg))
    return Node(msg.seq, msg.uid, sent_instant(msg), casemap(subject), reply)


def _ids(value: bytes | None) -> list[bytes]:
    if not value:
        return []
    ids = [m.strip().replace(b" ", b"").replace(b"\t", b"") for m in _MSGID.findall(value)]
    return [i for i in ids if i and b"@" in i] or [i for i in ids if i]


def _release(msg: MessageView) -> None:
    msg.release()


# ---------------------------------------------------------------------------------------------
# ORDEREDSUBJECT

def ordered_subject(messages: Iterable[MessageView], on_missing: Any = ()) -> list[Node]:
    nodes = []
    for m in messages:
        try:
            nodes.append(_node(m))
        except on_missing:
            continue
        finally:
            _release(m)
    nodes.sort(key=lambda n: (n.subject, n.date, n.seq))
    threads: list[Node] = []
    for n in nodes:
        if threads and threads[-1].subject == n.subject:
            top = threads[-1]
            n.parent = top
            top.children.append(n)
        else:
            threads.append(n)
    threads.sort(key=lambda n: (n.date, n.seq))
    return threads


# ---------------------------------------------------------------------------------------------
# REFERENCES

def _would_loop(parent: Node, child: Node) -> bool:
    """Whether making `child` a child of `parent` closes a loop (or the walk is too deep)."""
    node: Node | None = parent
    steps = 0
    while node is not None:
        if node is child:
            return True
        node = node.parent
        steps += 1
        if steps > MAX_DEPTH:
            return True
    return False


def _link(parent: Node, child: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def references(messages: Iterable[MessageView], on_missing: Any = ()) -> list[Node]:
    table: dict[bytes, Node] = {}
    order: list[Node] = []
    for m in sorted(messages, key=lambda m: m.seq):
        try:
            top = m.header()
            own = _ids(top.field_value("Message-ID"))
            refs = _ids(top.field_value("References"))[-MAX_REFERENCES:]
            if not refs:
                refs = _ids(top.field_value("In-Reply-To"))[:1]
            node = _node(m)
        except on_missing:
            continue
        finally:
            _release(m)
        # step 1: the message's own container (a duplicate or missing id gets a unique one)
        key = own[0] if own else None
        if key is not None and key in table and table[key].dummy:
            known = table[key]
            known.seq, known.uid, known.date = node.seq, node.uid, node.date
            known.subject, known.reply = node.subject, node.reply
            node = known
        elif key is not None and key not in table:
            table[key] = node
        order.append(node)
        # 1.A: link the references in a chain, leaving parents already set alone
        prev: Node | None = None
        for ref in refs:
            cont = table.get(ref)
            if cont is None:
                cont = table[ref] = Node()
            if prev is not None and cont.parent is None and not _would_loop(prev, cont):
                _link(prev, cont)
            prev = cont
        # 1.B: the last reference is the parent, replacing one set before
        if prev is not None and prev is not node and not _would_loop(prev, node):
            _link(prev, node)
        elif prev is None and node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
    # step 2: the root set (every container without a parent, dummies included)
    roots = [n for n in order if n.parent is None]
    seen = {id(n) for n in roots}
    for n in table.values():
        if n.parent is None and id(n) not in seen:
            roots.append(n)
            seen.add(id(n))
    roots = _prune(roots)
    _sort_siblings(roots)  # so that a dummy's first child is its earliest (as Dovecot reads step 5)
    roots = _gather_subjects(roots)
    _sort_siblings(roots)
    return roots


def _prune(roots: list[Node]) -> list[Node]:
    """Step 4: dummies without children go; other dummies give their children to their
    parent, except at the top where a dummy with several children stays. Children first."""
    # post-order without recursion
    stack: list[tuple[Node, bool]] = [(n, False) for n in roots]
    while stack:
        node, done = stack.pop()
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in node.children)
            continue
        kept: list[Node] = []
        for c in node.children:
            if c.dummy:
                for g in c.children:
                    g.parent = node
                kept.extend(c.children)
            else:
                kept.append(c)
        node.children = kept
    out: list[Node] = []
    for n in roots:
        if n.dummy and len(n.children) <= 1:
            for c in n.children:
                c.parent = None
            out.extend(n.children)
        else:
            out.append(n)
    return out


def _subject_of(node: Node) -> Node | None:
    """The message whose subject names this thread: itself, or a dummy's first child."""
    if not node.dummy:
        return node
    return node.children[0] if node.children else None


def _gather_subjects(roots: list[Node]) -> list[Node]:
    """Step 5: top-level threads with the same base subject joined. The order of the result
    does not matter (step 6 sorts it)."""
    table: dict[str, Node] = {}
    for n in roots:
        s = _subject_of(n)
        if s is None or not s.subject:
            continue
        have = table.get(s.subject)
        if have is None:
            table[s.subject] = n
        elif not have.dummy and (n.dummy or (have.reply and not s.reply)):
            table[s.subject] = n
    out: list[Node] = []
    absorbed: set[int] = set()  # top-level threads now under a new dummy
    for n in roots:
        if id(n) in absorbed:
            continue
        s = _subject_of(n)
        have = table.get(s.subject) if s is not None and s.subject else None
        if have is None or have is n:
            out.append(n)
        elif have.dummy and n.dummy:
            for c in n.children:
                c.parent = have
            have.children.extend(n.children)
        elif have.dummy or (s is not None and s.reply and not have.reply):
            n.parent = have
            have.children.append(n)
        else:
            dummy = Node()
            for x in (have, n):
                x.parent = dummy
                dummy.children.append(x)
            table[s.subject] = dummy  # type: ignore[union-attr]
            absorbed.add(id(have))
            out = [x for x in out if x is not have]
            out.append(dummy)
    return out


def _sort_key(node: Node) -> tuple[float, int]:
    first = node
    while first.dummy and first.children:
        first = first.children[0]
    return first.date, first.seq


def _sort_siblings(roots: list[Node]) -> None:
    """Step 6: every set of siblings by sent date, then sequence number; the deepest first, so
    a dummy sorts by its (sorted) first child."""
    stack: list[tuple[Node, bool]] = [(n, False) for n in roots]
    while stack:
        node, done = stack.pop()
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in node.children)
        else:
            node.children.sort(key=_sort_key)
    roots.sort(key=_sort_key)


# ---------------------------------------------------------------------------------------------

def thread(messages: Iterable[MessageView], algorithm: str, on_missing: Any = ()) -> list[Node]:
    if algorithm == "ORDEREDSUBJECT":
        return ordered_subject(messages, on_missing)
    if algorithm == "REFERENCES":
        return references(messages, on_missing)
    raise ValueError(f"unknown thread algorithm {algorithm}")


def format_threads(threads: list[Node], uid: bool = False) -> str:
    """`(1 2 (3)(4))(5)((6)(7))`: a parent with one child continues its line, with several
    each child is its own parenthesised thread; dummies have no number. Iterative."""
    out: list[str] = []
    # items: a Node to write, or a literal string to emit
    for root in threads:
        stack: list[Any] = [")", root, "("]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                out.append(item)
                continue
            node: Node = item
            kids = node.children
            if not node.dummy:
                if out and out[-1] not in ("(",):
                    out.append(" ")
                out.append(str(node.uid if uid else node.seq))
            if len(kids) == 1 and not node.dummy:
                stack.append(kids[0])
            elif kids:
                if not node.dummy:
                    out.append(" ")
                for c in reversed(kids):
                    stack.extend([")", c, "("])
    return "".join(out)
