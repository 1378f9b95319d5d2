"""The user's own training function as a run target (docs/own_training.md, the contract).

A matrix's ``trainer: {entrypoint: "module:function"}`` names it. orch calls
``function(params, seed, epochs)`` in a worker process; it yields one mapping of metric name -> number per
epoch, epoch 0 (before any update) first, ``epochs + 1`` in all. ``params`` is the run's params (a dict),
or, when the function annotates its first parameter with a Pydantic model, that model validated from them.

The optional checkpoint hook: a function with a keyword parameter ``checkpoint`` gets a
:class:`FunctionCheckpoint`; it writes its state to ``checkpoint.path`` (any format) before it yields each
epoch's metrics, and when ``checkpoint.epoch`` is not None it restores that state and yields the epochs
after it only. Without the hook an interrupted run starts again from epoch 0.

Errors: an exception in the function is the run's crash (with its traceback), a NaN or Inf metric a
diverged run, a value that is no number or fewer epochs than the budget a crash that says so.

This module imports nothing of the built-in model (nor torch): a worker running a function pays only for
what the function imports.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import math
import os
import shutil
import sys
import tempfile
import typing
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import UserError
from orchestrator.target.base import Epoch, RunControl, RunOutcome, RunTarget

__all__ = [
    "EntrypointError",
    "FunctionCheckpoint",
    "FunctionTarget",
    "load_function",
    "params_model",
    "source_files",
]

#: The keyword parameter through which a function takes part in resuming (the checkpoint hook).
HOOK = "checkpoint"


class EntrypointError(UserError, ValueError):
    """An entrypoint that cannot be imported or called as the contract says."""


@dataclass(frozen=True)
class FunctionCheckpoint:
    """What a function with the checkpoint hook is given.

    Attributes:
        path: The file to write its state to (any format) before it yields each epoch's metrics.
        epoch: None: start from scratch; else the state at ``path`` ends this epoch: restore it and yield
            the epochs after it only.
    """

    path: Path
    epoch: int | None = None


@dataclass(frozen=True)
class _Resumed:
    """A function run's checkpoint as read back: its epoch, the worker's bookkeeping, the saved state."""

    epoch: int
    extra: dict[str, Any]
    state: Path


@dataclass(frozen=True)
class FunctionTarget(RunTarget):
    """One run of the user's function: ``entrypoint`` (``module:function``) called with ``params``,
    ``seed`` and ``budget`` epochs, imported from ``paths`` (the matrix's folder, the working folder) or
    the Python path."""

    entrypoint: str
    params: dict[str, Any]
    seed: int
    budget: int
    paths: tuple[str, ...] = ()

    @property
    def epochs(self) -> int:
        return self.budget

    @property
    def device(self) -> str:
        return "cpu"  # the function picks its own device; a machine gets a worker per CPU core

    def describe(self) -> dict[str, Any]:
        return self.params

    def tags(self) -> dict[str, Any]:
        return {"entrypoint": self.entrypoint, "epochs": self.budget}

    def open_resume(self, path: str) -> _Resumed:
        """Unpack the checkpoint a run of this target wrote (:meth:`run`) beside ``path``."""
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("orch.json"))
            state = Path(path).with_name("state")
            with z.open("state") as src, open(state, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return _Resumed(int(meta["epoch"]), meta.get("extra") or {}, state)

    def checkpoint_epoch(self, path: Path) -> int | None:
        try:
            with zipfile.ZipFile(path) as z:
                return int(json.loads(z.read("orch.json"))["epoch"])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None

    def run(self, control: RunControl) -> RunOutcome:
        """Call the function and report each epoch it yields; the checkpoint of its last epoch (its state
        file, when it has the hook and wrote one for that epoch) is written to ``control.checkpoint``."""
        function = load_function(self.entrypoint, self.paths)
        if "torch" in sys.modules:  # the function's module imported it: keep to the worker's share of cores
            sys.modules["torch"].set_num_threads(control.threads)
        resumed: _Resumed | None = control.resume
        with _state_file(control.checkpoint) as state:
            hook = None
            if HOOK in inspect.signature(function).parameters:
                if resumed is not None:
                    shutil.copyfile(resumed.state, state)
                hook = FunctionCheckpoint(state, resumed.epoch if resumed is not None else None)
            kwargs = {HOOK: hook} if hook is not None else {}
            first = resumed.epoch + 1 if resumed is not None and hook is not None else 0
            epochs = function(_arguments(function, self.params), self.seed, self.budget, **kwargs)
            outcome, stamp = self._follow(iter(epochs), first, control, state)
            # the state file as it was at the last epoch reported: else it is not that epoch's state
            same = stamp is not None and _stamp(state) == stamp
            if control.checkpoint and outcome.last_epoch >= 0 and same:
                extra = control.extra() if control.extra else {}
                _pack(Path(control.checkpoint), outcome.last_epoch, extra, state)
        return outcome

    def _follow(
        self, epochs: Iterator[Any], first: int, control: RunControl, state: Path
    ) -> tuple[RunOutcome, tuple[int, int] | None]:
        """Report each epoch the function yields from ``first`` on; the outcome, and the state file's
        stamp as it was when the last complete epoch was reported (None: no state file then)."""
        seen: list[Epoch] = []
        stamp, last = None, first - 1
        status, reason = "finished", None
        try:
            for epoch in range(first, self.budget + 1):
                if control.stop():
                    status, reason = "interrupted", f"interrupted after epoch {last}"
                    break
                try:
                    values = next(epochs)
                except StopIteration:
                    raise EntrypointError(
                        f"{self.entrypoint} ended after epoch {last}, before the budget's {self.budget}: "
                        f"yield one dict of metrics per epoch, epoch 0 (before any update) to {self.budget}"
                    ) from None
                result = Epoch(epoch, _metrics(values, epoch, self.entrypoint))
                seen.append(result)
                said = control.on_epoch(result)
                stamp, last = _stamp(state), epoch
                bad = [f"{k} {v}" for k, v in result.metrics.items() if not math.isfinite(v)]
                if bad:
                    status, reason = "diverged", f"non-finite {bad[0]} at epoch {epoch}"
                    break
                if said:
                    status, reason = "stopped", said
                    break
        finally:
            close = getattr(epochs, "close", None)
            if close is not None:
                close()
        return RunOutcome(status, reason, seen, last), stamp


@contextlib.contextmanager
def _state_file(checkpoint: str | None) -> Iterator[Path]:
    """Where a function writes its state: beside the run's checkpoint (else in a temporary folder); gone
    once the run ends (what counts was packed into the checkpoint)."""
    if checkpoint is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp) / "state"
        return
    state = Path(checkpoint).with_name("state")
    state.parent.mkdir(parents=True, exist_ok=True)
    state.unlink(missing_ok=True)
    try:
        yield state
    finally:
        state.unlink(missing_ok=True)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _pack(path: Path, epoch: int, extra: dict[str, Any], state: Path) -> None:
    """The run's checkpoint: its state file and orch's bookkeeping in one file, written whole or not."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        z.writestr("orch.json", json.dumps({"epoch": epoch, "extra": extra}))
        z.write(state, "state")
    tmp.replace(path)


def _metrics(values: Any, epoch: int, entrypoint: str) -> dict[str, float]:
    """A yielded epoch as metric name -> float (the contract: a mapping of names to real numbers)."""
    if not isinstance(values, Mapping):
        raise EntrypointError(
            f"{entrypoint} yielded {type(values).__name__} at epoch {epoch}: yield a dict of metric -> number"
        )
    out = {}
    for name, value in values.items():
        try:
            if not isinstance(name, str) or isinstance(value, bool | str | bytes):
                raise TypeError
            out[name] = float(value)  # a float, a numpy number, a 0-d tensor
        except (TypeError, ValueError):
            raise EntrypointError(
                f"{entrypoint} yielded {name!r}: {value!r} at epoch {epoch}: metrics are names with numbers"
            ) from None
    return out


def _arguments(function: Callable[..., Any], params: dict[str, Any]) -> Any:
    """What the function's ``params`` parameter gets: the dict, or its Pydantic model validated from it."""
    model = params_model(function)
    return params if model is None else model.model_validate(params)


# ------------------------------------------------------------------------------------------- loading


def load_function(entrypoint: str, paths: Sequence[str] = ()) -> Callable[..., Any]:
    """The function ``entrypoint`` (``module:function``) names, imported with ``paths`` first on the
    Python path (a module already imported from elsewhere is imported again from where it is found now).

    Raises:
        EntrypointError: not ``module:function``, a module that cannot be imported (its error named), no
            such function, or one that cannot be called as ``function(params, seed, epochs)``.
    """
    module_name, sep, name = entrypoint.partition(":")
    if not sep or not module_name or not name:
        raise EntrypointError(f"entrypoint {entrypoint!r}: expected module:function, e.g. train:fit")
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    _forget_if_moved(module_name.split(".")[0])
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - whatever the user's module raises on import
        where = f" (looked in {', '.join(paths)} and on the Python path)" if paths else ""
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}{where}"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        public = ", ".join(sorted(n for n, v in vars(module).items() if callable(v) and not n[0] == "_"))
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: {module_name} has no function {name!r} (it has: {public or 'none'})"
        )
    try:
        inspect.signature(function).bind(None, 0, 0)
    except TypeError:
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: {name} must take (params, seed, epochs) positionally"
        ) from None
    except ValueError:  # a builtin without a signature: called as it is
        pass
    return function


def _forget_if_moved(top: str) -> None:
    """Drop ``top`` (and its submodules) from the imported modules when the Python path now finds it in
    another file than the one imported (two matrices' ``train`` modules in one process)."""
    importlib.invalidate_caches()
    loaded = sys.modules.get(top)
    if loaded is None:
        return
    spec = importlib.machinery.PathFinder.find_spec(top)
    if spec is None or spec.origin == getattr(loaded, "__file__", None):
        return
    for name in [n for n in sys.modules if n == top or n.startswith(f"{top}.")]:
        del sys.modules[name]


def params_model(function: Callable[..., Any]) -> Any | None:
    """The Pydantic model the function's first parameter is annotated with, or None."""
    try:
        first = next(iter(inspect.signature(function).parameters.values()), None)
    except (TypeError, ValueError):
        return None
    if first is None:
        return None
    annotation = first.annotation
    if isinstance(annotation, str):
        try:
            annotation = typing.get_type_hints(function).get(first.name)
        except Exception:  # noqa: BLE001 - an annotation that cannot be resolved is no model
            return None
    if not isinstance(annotation, type) or annotation is dict:
        return None
    from pydantic import BaseModel

    return annotation if issubclass(annotation, BaseModel) else None


def source_files(entrypoint: str) -> list[tuple[str, Path]]:
    """The source files of an imported entrypoint's code (:func:`load_function` first): every ``.py`` file
    of its top-level package, or its module's file when that is a single module; each named relative to
    the folder it was imported from.

    Raises:
        EntrypointError: a module with no source file (built into the interpreter, or compiled only).
    """
    top = entrypoint.partition(":")[0].split(".")[0]
    module = sys.modules[top]
    folders = list(getattr(module, "__path__", []))
    if folders:
        files = [(Path(folder), p) for folder in folders for p in Path(folder).rglob("*.py")]
        return sorted((f"{top}/{p.relative_to(folder).as_posix()}", p) for folder, p in files)
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        raise EntrypointError(f"entrypoint {entrypoint!r}: {top} has no Python source to fingerprint")
    return [(Path(file).name, Path(file))]
