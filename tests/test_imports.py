"""Every module of the package imports on its own: no import cycle hides behind an import order.

One fresh interpreter imports each module in turn with the package's modules unloaded before
each, so every module is the first of the package to load, as it would be alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"

ALONE = """
import importlib, json, sys, traceback
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "gateway" or m.startswith("gateway.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc(limit=3)
print(json.dumps(failures))
"""


def modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    names = modules()
    assert len(names) > 50 and "gateway.planner" in names
    found = subprocess.run(
        [sys.executable, "-c", ALONE, json.dumps(names)], capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(found.stdout.splitlines()[-1]) == {}


def test_the_planner_imports_first_in_its_own_process() -> None:
    """The cycle this issue measured: `import gateway.planner` on its own used to fail half-initialised."""
    alone = subprocess.run([sys.executable, "-c", "import gateway.planner"], capture_output=True, text=True, timeout=60)
    assert alone.returncode == 0, alone.stderr
