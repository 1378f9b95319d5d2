"""The layout's promises: no import cycle and no upward import between packages, a model library that knows
nothing of orchestration, a worker process that does not load MLflow (nor, before a run asks, the model or
torch), modules of at most 500 lines and library functions of at most 10 parameters."""

from __future__ import annotations

import ast
import inspect
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
    """Nor the built-in model or torch, until a run of it asks (a user's function pays only for its own)."""
    code = (
        "import sys; import orchestrator.execute.worker, orchestrator.execute.early_stop, "
        "orchestrator.tracking.vocabulary, orchestrator.target.function; "
        "print(sorted({'mlflow', 'model', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_over_500_lines() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert {n: k for n, k in long.items() if k > 500} == {}


#: Each package's layer: a package imports only from lower layers (and from itself).
LAYERS = {
    "model": 0,
    "orchestrator.errors": 0,
    "orchestrator.lazy": 0,
    "orchestrator.identity": 1,
    "orchestrator.verdict": 1,
    "orchestrator.target": 1,
    "orchestrator.tracking": 2,
    "orchestrator.matrix": 2,
    "orchestrator.execute": 3,
    "orchestrator.report": 3,
    "orchestrator.cli": 4,
}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "model" else ".".join(parts[:2])


def test_no_upward_import() -> None:
    mods = _modules()
    upward = sorted(
        f"{name} -> {dep}"
        for name, path in mods.items()
        for dep in _imports(path)
        if dep in mods and _package(dep) != _package(name) and LAYERS[_package(dep)] >= LAYERS[_package(name)]
    )
    assert upward == []


def _typer_commands() -> set[tuple[str, str]]:
    """(module, name) of every command of the ``orch`` app, its sub-apps' included."""
    from orchestrator.cli import app

    infos = [*app.registered_commands]
    infos += [c for group in app.registered_groups for c in group.typer_instance.registered_commands]
    return {(f.__module__, f.__qualname__) for f in (inspect.unwrap(c.callback) for c in infos)}


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
    return n - bool(a.args and a.args[0].arg in ("self", "cls"))


def test_no_library_function_takes_more_than_10_parameters() -> None:
    """Typer commands take one parameter per option; everything they call takes objects (the sweep's
    context, its request, its queue settings...) rather than loose arguments."""
    commands = _typer_commands()
    assert ("orchestrator.cli.sweep", "sweep") in commands
    many = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _parameters(node) > 10:
                many[f"{name}.{node.name}"] = _parameters(node)
    assert {f: n for f, n in many.items() if tuple(f.rsplit(".", 1)) not in commands} == {}
