"""The package's shape: stages import only stages below them; one module unpickles files."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "transact"

STAGES = (
    "data",
    "features",
    "models",
    "embeddings",
    "training",
    "evaluation",
    "pipeline",
    "serving",
    "online",
    "experiments",
)
"""Bottom to top (docs/architecture.md). ``demo.py`` and ``cli.py`` sit above all of them,
and so does every stage's ``cli.py``: a command is a front end, it may call the pipeline
(``transact train`` and ``transact evaluate`` run a run config)."""


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``transact.*`` import, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, m) for line, m in found if m.split(".")[0] == "transact"]


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_no_library_module_imports_a_higher_stage() -> None:
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if len(rel.parts) < 2 or rel.name == "cli.py" or rel.parts[0] not in STAGES:
            continue
        level = STAGES.index(rel.parts[0])
        for line, module in _imports(path):
            stage = _stage(module)
            if stage is not None and STAGES.index(stage) > level:
                upward.append(f"{rel}:{line} imports {module}")
    assert not upward, "\n".join(upward)


def test_torch_load_is_called_in_one_module() -> None:
    """Every file is read by ``models/artifact.py`` (``weights_only=True``), nowhere else."""
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                calls.append(str(path.relative_to(SRC)))
    assert sorted(set(calls)) == ["models/artifact.py"], calls
    text = (SRC / "models" / "artifact.py").read_text()
    assert "weights_only=True" in text and "weights_only=False" not in text
