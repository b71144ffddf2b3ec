#!/usr/bin/env python3
"""A minimal MDA for the POP3 client tests: stdin -> MAILDIR/new/ (via tmp/), like procmail's
maildir delivery. Usage: maildir_mda.py MAILDIR"""

import os
import sys
import time

maildir = sys.argv[1]
for sub in ("tmp", "new", "cur"):
    os.makedirs(os.path.join(maildir, sub), exist_ok=True)
data = sys.stdin.buffer.read()
name = f"{time.time_ns()}.P{os.getpid()}.mda"
tmp = os.path.join(maildir, "tmp", name)
with open(tmp, "wb") as fh:
    fh.write(data)
    fh.flush()
    os.fsync(fh.fileno())
os.rename(tmp, os.path.join(maildir, "new", name))
