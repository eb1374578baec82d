"""Virtual environments that are made once and reused while what they were made from is unchanged.

Two are needed to run the reference's suites: the gateway installed the plain way
(``pip install .``, no extras: what facilities deploy), and the reference's packages, pinned, with
the test tools their suites need. They are kept apart so that neither's requirements can mask a
missing requirement of the other.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ROOT / ".venv-plain"
REFERENCE = ROOT / ".venv-conformance"

# The published releases whose suites judge the gateway, and what those suites need to run: the
# simulated profile of RE Manager needs matplotlib, the spreadsheet tests pandas and openpyxl.
REFERENCE_REQUIREMENTS = (
    "bluesky-httpserver==0.0.14",
    "bluesky-queueserver==0.0.25",
    "bluesky-queueserver-api==0.0.13",
    "pytest<9",
    "pytest-timeout",
    "pytest-xprocess",
    "matplotlib",
    "pandas",
    "openpyxl",
)


def _pip(venv: Path, *args: str) -> None:
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
        capture_output=True,
    )


def _ensure(venv: Path, digest: str, install: Sequence[str]) -> bool:
    """Make ``venv`` with ``pip install *install`` unless it was made from ``digest``; True if made."""
    stamp = venv / "made-from.sha256"
    if stamp.exists() and stamp.read_text() == digest:
        return False
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _pip(venv, "install", "--upgrade", "pip")
    _pip(venv, "install", *install)
    stamp.write_text(digest)
    return True


def plain_gateway() -> Path:
    """The gateway as ``pip install .`` installs it; its Python. The environment is made anew
    when the declared requirements change; the gateway itself is reinstalled from this checkout
    every time (its packages come from pip's cache)."""
    declared = (ROOT / "setup.cfg").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    if not _ensure(PLAIN, hashlib.sha256(declared).hexdigest(), [str(ROOT)]):
        _pip(PLAIN, "install", "--no-deps", "--force-reinstall", str(ROOT))
    return PLAIN / "bin" / "python"


def reference_packages() -> Path:
    """The reference's pinned packages and the tools their suites need; its Python."""
    _ensure(REFERENCE, hashlib.sha256("\n".join(REFERENCE_REQUIREMENTS).encode()).hexdigest(), REFERENCE_REQUIREMENTS)
    return REFERENCE / "bin" / "python"
