"""Architecture: data flows one way; a lower layer never imports a higher one.

Ranks: shared leaves (errors, units, config, store, data, outfiles, plotting, arms) < kernels (device-independent sampling
and bookkeeping) < devices (plug-ins: physics + their update kernels) < design, lab (device lab) < tile < nn <
training < experiments, sweep < report < pipeline (reproduce: drives the sweep, the ablation and
the report) < cli. Imports inside functions count too (ast.walk sees every import statement). The device physics in particular must import
no torch layer, no training code and no dataset.
"""

import ast
from pathlib import Path

import ctfrpu

ROOT = Path(ctfrpu.__file__).parent
RANK = {"errors": 0, "units": 0, "outfiles": 0, "plotting": 0, "arms": 0, "lab": 3, "pipeline": 9, "config": 0, "store": 0, "data": 0, "kernels": 1, "devices": 2, "presets": 2,
        "design": 3, "tile": 4, "nn": 5, "training": 6, "experiments": 7, "sweep": 7,
        "sweeps": 7, "report": 8, "cli": 10, "__init__": 0}


def _rank(module: str) -> int:
    return RANK[module.split(".")[0]]


def _is_module(name: str) -> bool:
    return (ROOT / f"{name}.py").exists() or (ROOT / name / "__init__.py").exists()


def _imports(path: Path, text: str | None = None) -> set[str]:
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if not target:  # "from .. import x" at the top level: a module, or a name of __init__
                    found.update(a.name if _is_module(a.name) else "__init__" for a in node.names)
                else:
                    found.add(target)
            elif node.module == "ctfrpu":  # "from ctfrpu import report": a module, or a name of __init__
                found.update(a.name if _is_module(a.name) else "__init__" for a in node.names)
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


def test_every_top_level_module_has_a_rank():
    """A new package must be placed in the layering on purpose, not default to the bottom."""
    tops = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in ROOT.rglob("*.py")}
    assert tops <= set(RANK), sorted(tops - set(RANK))


def test_function_level_imports_are_seen():
    """The checker must see an import hidden inside a function, or it would pass vacuously."""
    probe = ROOT / "kernels" / "probe.py"  # never written: the source is passed as text
    found = _imports(probe, "def f():\n    from ..report import build_report\n    from .. import __version__\n"
                            "    from ctfrpu import cli\n    import ctfrpu.pipeline.reproduce\n")
    assert found == {"report", "__init__", "cli", "pipeline.reproduce"}
    assert _rank("report") > _rank("kernels")


def test_the_report_reads_the_store_and_imports_no_study_code():
    """Same-rank neighbours may not lean on each other either: the report builds everything from
    the run store (the arms' vocabulary is the leaf ctfrpu.arms), never from experiments/."""
    bad = [f"{p.relative_to(ROOT)} imports {t}" for p in (ROOT / "report").rglob("*.py")
           for t in _imports(p) if t.split(".")[0] == "experiments"]
    assert not bad, bad
