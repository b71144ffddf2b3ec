"""`mailsift user add|passwd|del|list`: the store's users. Passwords come from a prompt (twice) or,
with --stdin, from the first line of standard input; never from the command line."""

from __future__ import annotations

import argparse
import getpass
import os
import pwd
import stat
import sys
from pathlib import Path

from mailsift import daemon
from mailsift.config import Config, override

HELP = "manage mail store users: add, passwd, del, set, list (passwords from a prompt or --stdin)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--users", metavar="FILE", default=argparse.SUPPRESS,
                        help="user database (default: [store] users)")
    common.add_argument("--mail-root", metavar="DIR", default=argparse.SUPPRESS,
                        help="Maildir++ root (default: [store] mail_root)")
    parser.add_argument("--users", metavar="FILE", help="user database (default: [store] users)")
    parser.add_argument("--mail-root", metavar="DIR", help="Maildir++ root (default: [store] mail_root)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("add", "add a user and create the mailbox"), ("passwd", "change a password"),
                         ("del", "remove a user (the mail stays on disk)")):
        p = sub.add_parser(action, help=text, parents=[common])
        p.add_argument("name", help="user address (local@domain)")
        if action != "del":
            p.add_argument("--stdin", action="store_true", help="read the password from standard input")
    p = sub.add_parser("set", help="change a user's settings", parents=[common])
    p.add_argument("name", help="user address (local@domain)")
    p.add_argument("--implicit-feedback", dest="implicit_feedback", action=argparse.BooleanOptionalAction,
                   help="may what the user keeps or leaves in Junk teach the spam model "
                   "(default: yes; see docs/feedback.md)")
    p.add_argument("--quota-mb", dest="quota_mb", metavar="MIB|default", type=_quota_arg,
                   help="storage the user may fill, in MiB (0 = no limit; default = [store] quota_mb)")
    sub.add_parser("list", help="list users", parents=[common])


def _quota_arg(text: str) -> int | str:
    if text.strip().lower() == "default":
        return "default"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number of MiB (0 = no limit) or 'default'") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a quota cannot be negative")
    return value


def _password(args: argparse.Namespace) -> str:
    if args.stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValueError("no terminal for the password prompt: use --stdin")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("passwords differ")
    return first


def _mailbox_as(user: str, mail_root: Path, name: str) -> None:
    """With [store] run_as, started as root: make the mailbox as the server's user, in a child
    process that has become that user, so root never walks, chowns or writes inside a tree the
    mail user owns (a link planted there would be followed with root's rights). A fresh mail root
    goes to that user; the user database stays root's, readable by the user's group."""
    pw = pwd.getpwnam(user)
    try:
        st = os.lstat(mail_root)
    except FileNotFoundError:
        mail_root.mkdir(mode=0o750, parents=True)
        st = os.lstat(mail_root)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == 0:
        os.lchown(mail_root, pw.pw_uid, pw.pw_gid)
    pid = os.fork()
    if pid == 0:  # the child: become the user, make the mailbox, report through the exit status
        status = 1
        try:
            daemon.drop_privileges(user)
            from mailsift.store.api import Store

            store = Store(mail_root)
            store.mailbox(name)
            store.close()
            status = 0
        except OSError as exc:
            print(f"mailsift user: warning: mailbox not created yet ({exc.strerror or exc})", file=sys.stderr)
        except BaseException as exc:  # noqa: BLE001 - the child must exit, whatever happened
            print(f"mailsift user: warning: mailbox not created yet ({exc})", file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(status)
    os.waitpid(pid, 0)


def run(args: argparse.Namespace, config: Config) -> int:
    from mailsift.store.api import Store
    from mailsift.store.users import Users, UserError

    settings = override(config.store, users=args.users, mail_root=args.mail_root)
    users = Users(settings.users, settings.default_domain)
    try:
        if args.action == "list":
            for name in users.list():
                print(name)
            return 0
        if args.action == "set":
            quota_mb = getattr(args, "quota_mb", None)
            if args.implicit_feedback is None and quota_mb is None:  # a usage error, as argparse's
                print("mailsift user set: say what to set: --[no-]implicit-feedback and/or --quota-mb",
                      file=sys.stderr)
                return 2
            if args.implicit_feedback is not None:
                users.set_implicit_feedback(args.name, args.implicit_feedback)
                print(f"implicit feedback {'on' if args.implicit_feedback else 'off'} for {users.canonical(args.name)}")
            if quota_mb is not None:
                users.set_quota_mb(args.name, None if quota_mb == "default" else int(quota_mb))
                shown = (f"the default ({settings.quota_mb} MiB)" if quota_mb == "default"
                         else "no limit" if quota_mb == 0 else f"{quota_mb} MiB")
                print(f"quota of {users.canonical(args.name)}: {shown}")
            return 0
        if args.action == "del":
            users.delete(args.name)
            print(f"deleted {users.canonical(args.name)} (mail under {settings.mail_root} kept)")
            return 0
        password = _password(args)
        if args.action == "add":
            name = users.add(args.name, password)
            try:
                if settings.run_as and os.geteuid() == 0:
                    users.share_with(pwd.getpwnam(settings.run_as).pw_gid)
                    _mailbox_as(settings.run_as, Path(settings.mail_root), name)
                else:
                    store = Store(settings.mail_root)
                    store.mailbox(name)
                    store.close()
            except OSError as exc:
                print(f"mailsift user: warning: mailbox not created yet ({exc.strerror})", file=sys.stderr)
            print(f"added {name}")
        else:
            users.set_password(args.name, password)
            print(f"password changed for {users.canonical(args.name)}")
        return 0
    except KeyError:
        print(f"mailsift user: run_as: no user {settings.run_as!r}", file=sys.stderr)
        return 1
    except (UserError, ValueError) as exc:
        print(f"mailsift user: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mailsift user: {exc}", file=sys.stderr)
        return 3
