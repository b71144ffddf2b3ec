"""QUOTA (RFC 9208) over IMAP: GETQUOTA, GETQUOTAROOT, and SETQUOTA refused (limits are the
admin's: `[store] quota_mb`, `mailsift user set --quota-mb`). Every user has one quota root,
"User quota", with the one resource STORAGE in KiB (store/quota.py keeps the usage); a user
without a limit has no quota root. APPEND and COPY past the limit get `NO [OVERQUOTA]` (the
session maps store_api.OverQuota), and STATUS answers DELETED and DELETED-STORAGE
(statusitems.py), which RFC 9208 asks of a server offering QUOTA=RES-STORAGE.

The handlers take the session as their first argument, like its own cmd_* methods."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailsift.protocols.imap import response
from mailsift.store import quota as store_quota
from mailsift.store.names import normalize_folder

if TYPE_CHECKING:  # (no import at run time: session.py imports this module)
    from mailsift.protocols.imap.session import ImapSession
    from mailsift.protocols.imap.parser import Command

CAPABILITIES = ("QUOTA", "QUOTA=RES-STORAGE")
ROOT = store_quota.ROOT


def quota_line(used: int, limit: int) -> bytes:
    return b"QUOTA " + response.astring(ROOT) + b" (STORAGE %d %d)" % (store_quota.kib(used), limit // 1024)


async def cmd_getquotaroot(session: ImapSession, cmd: Command) -> None:
    """Any valid name, existing or not, is under the user's one root (as Dovecot answers)."""
    box = session.box
    assert box is not None
    name = cmd.args["mailbox"]
    normalize_folder(name)  # InvalidName: NO
    used, _n, limit = await session.call(box.quota)
    if limit is None:
        session.untagged(b"QUOTAROOT " + session.mailbox_name(name))
    else:
        session.untagged(b"QUOTAROOT " + session.mailbox_name(name) + b" " + response.astring(ROOT))
        session.untagged(quota_line(used, limit))
    session.tagged(cmd.tag, "OK", "Getquotaroot completed")


async def cmd_getquota(session: ImapSession, cmd: Command) -> None:
    assert session.box is not None
    used, _n, limit = await session.call(session.box.quota)
    if cmd.args["root"] != ROOT or limit is None:
        session.tagged(cmd.tag, "NO", "No such quota root", "NONEXISTENT")
        return
    session.untagged(quota_line(used, limit))
    session.tagged(cmd.tag, "OK", "Getquota completed")


async def cmd_setquota(session: ImapSession, cmd: Command) -> None:
    session.tagged(cmd.tag, "NO", "Quotas are set by the administrator", "NOPERM")
