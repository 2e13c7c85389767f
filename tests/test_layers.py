"""Architecture: data flows one way; a lower layer never imports a higher one.

Ranks: shared leaves (errors, units, config, store, data) < kernels (device-independent sampling
and bookkeeping) < devices (plug-ins: physics + their update kernels) < design < tile < nn <
training < experiments, sweep < report < cli. The device physics in particular must import
no torch layer, no training code and no dataset.
"""

import ast
from pathlib import Path

import ctfrpu

ROOT = Path(ctfrpu.__file__).parent
RANK = {"errors": 0, "units": 0, "config": 0, "store": 0, "data": 0, "kernels": 1, "devices": 2, "presets": 2,
        "design": 3, "tile": 4, "nn": 5, "training": 6, "experiments": 7, "sweep": 7,
        "sweeps": 7, "report": 8, "cli": 9, "__init__": 0}


# The reproduction pipeline sits on top of the report it builds.
SPECIAL = {"experiments.reproduce": 8.5}


def _rank(module: str) -> float:
    return SPECIAL.get(module, RANK.get(module.split(".")[0], 0))


def _imports(path: Path) -> set[str]:
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if not target:  # "from .. import x" at the top level
                    found.update(a.name for a in node.names)
                else:
                    found.add(target)
            elif node.module and node.module.startswith("ctfrpu."):
                found.add(node.module[len("ctfrpu."):])
        elif isinstance(node, ast.Import):
            found.update(a.name[len("ctfrpu."):] for a in node.names if a.name.startswith("ctfrpu."))
    return {f for f in found if f}


def test_no_upward_imports():
    bad = []
    for path in ROOT.rglob("*.py"):
        own = _rank(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for target in _imports(path):
            if _rank(target) > own:
                bad.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not bad, "\n".join(bad)


def test_device_physics_imports_no_torch_or_data():
    for path in (ROOT / "devices").rglob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "ctfrpu.data" not in text, path
