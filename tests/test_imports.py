"""Every module of the package imports on its own, in an interpreter that has imported nothing of
the package before (an import cycle shows only then), and ``qs_gateway.config`` is a leaf: it
imports nothing of the package outside itself.

One interpreter does it all, quickly: it imports the third-party libraries the package uses,
then forks one child per module, and each child imports its module into a ``sys.modules`` that
holds nothing of the package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import qs_gateway

PACKAGE_DIR = Path(qs_gateway.__file__).parent


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = module_names()

# Runs in a fresh interpreter; argv[1]: the module names as JSON. Prints one JSON object: for each
# module, None if it imported, else the error; plus what each module of config imported of the package.
IMPORT_EACH = r"""
import importlib, json, os, sys, traceback

def in_child(work):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            result = work()
        except BaseException:
            result = traceback.format_exc()
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data) if data else "the child died without an answer"

modules = json.loads(sys.argv[1])
ours = lambda name: name == "qs_gateway" or name.startswith("qs_gateway.")

def third_party():
    for name in modules:
        importlib.import_module(name)
    return sorted({name.split(".")[0] for name in sys.modules if not ours(name)})

libraries = in_child(third_party)
if isinstance(libraries, str):
    libraries = []  # a module fails to import: each child below tells which
for name in libraries:
    try:
        importlib.import_module(name)
    except Exception:
        pass
assert not any(ours(name) for name in sys.modules), "a library imported the package"

def import_alone(name):
    def work():
        importlib.import_module(name)
        return {"error": None, "loaded": sorted(n for n in sys.modules if ours(n))}
    return work

print(json.dumps({name: in_child(import_alone(name)) for name in modules}))
"""


@pytest.fixture(scope="module")
def imported_alone() -> dict[str, dict | str]:
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, json.dumps(MODULES)], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_modules_are_found():
    assert {"qs_gateway.app", "qs_gateway.config", "qs_gateway.web", "qs_gateway.notifications"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(imported_alone, module):
    result = imported_alone[module]
    assert not isinstance(result, str), f"import {module} failed in a fresh interpreter:\n{result}"


@pytest.mark.parametrize("module", [name for name in MODULES if name.startswith("qs_gateway.config")])
def test_config_imports_nothing_else_of_the_package(imported_alone, module):
    result = imported_alone[module]
    assert not isinstance(result, str), result
    outside = [name for name in result["loaded"] if name != "qs_gateway" and not name.startswith("qs_gateway.config")]
    assert not outside, f"{module} imports {outside}"
