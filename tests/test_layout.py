"""The layout's promises: no import cycle, a model library that knows nothing of orchestration, and a worker
process that does not load MLflow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    out = {}
    for root in ("model", "orchestrator"):
        for path in (REPO / root).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_no_import_cycle() -> None:
    mods = _modules()
    graph = {name: {m for m in _imports(path) if m in mods and m != name} for name, path in mods.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_model_imports_no_orchestration() -> None:
    forbidden = ("orchestrator", "mlflow", "optuna")
    bad = {
        name: sorted(m for m in _imports(path) if m.split(".")[0] in forbidden)
        for name, path in _modules().items()
        if name.split(".")[0] == "model"
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_a_spawned_worker_does_not_load_mlflow() -> None:
    code = (
        "import sys; import orchestrator.execute.worker, orchestrator.execute.early_stop, "
        "orchestrator.tracking.vocabulary; print('mlflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_module_over_500_lines() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert {n: k for n, k in long.items() if k > 520} == {}
