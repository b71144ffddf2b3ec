"""How `make venv` installs mailsift: the venv's python must start without an import hook.

A one-message `mailsift classify` must start in milliseconds (docs/classifier.md). setuptools'
default editable install of a flat layout puts an import-hook finder in a .pth file that every
start of the venv's python imports (with pathlib, importlib.util, fnmatch: ~18 ms); setup.cfg's
`package_dir` makes it a plain path in a .pth file instead. Either way the venv imports the
checkout's package (tests and CI must run the code they check out), never a copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SHOW = "import sys, mailsift; print(mailsift.__file__); print(sorted(sys.modules))"


def _start(*flags: str) -> tuple[list[str], list[str]]:
    """(stdout lines, modules imported while starting) of the venv's python, as the console
    script starts it: no PYTHONPATH, another working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    p = subprocess.run([sys.executable, *flags, "-X", "importtime", "-c", SHOW], env=env, cwd="/",
                       capture_output=True, text=True, timeout=60, check=True)
    imported = [line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()
                if line.startswith("import time:") and "|" in line]
    return p.stdout.splitlines(), imported


def test_the_venv_starts_without_an_import_hook() -> None:
    out, imported = _start()
    hooks = [m for m in imported if m.startswith("__editable__") or "_finder" in m]
    assert hooks == [], f"site imports an editable-install hook at every start: {hooks} (run `make venv`)"
    assert "pathlib" not in imported, "something in the venv's .pth files imports pathlib at every start"


def test_the_venv_imports_a_checkout_not_a_copy() -> None:
    out, _ = _start()
    package = Path(out[0]).resolve().parent
    assert "site-packages" not in package.parts, f"mailsift imported from an installed copy: {package}"
    assert (package.parent / "setup.cfg").is_file(), f"{package} is not in a mailsift checkout"
