"""Run identity: what makes two runs the same run.

A run's key covers three things, so that an edit or new data is never mistaken for a finished result:

- the **config key**: a hash of the fully resolved :class:`~model.config.RunConfig` (the seed is
  ``trainer.seed``);
- the **code fingerprint**: a hash of the source of the installed ``model`` package, the code that
  computes a run (parsed, so that comments and formatting do not count; docstrings do not either). The
  early-stop rule is not in it: where a run stopped, its logged epochs are what that code computed;
- the **data fingerprint**: for the built-in phantoms, their generator's settings (already in the config:
  the generator's code is in the code fingerprint); for an HDF5 file, a hash of its bytes; for a fastMRI
  folder, a hash of every volume's bytes. File hashes are computed once per file and cached by path, size
  and modification time (in memory, and on disk under ``$XDG_CACHE_HOME/orch``).

A run of the user's own training function (``trainer.entrypoint``) has a key of its own kind
(:func:`function_identity`): its entrypoint, params, seed and epochs, the fingerprint of its module's or
package's source, and no data fingerprint.

The git commit and whether the working tree is dirty are recorded beside them (:func:`code_context`) but
are not part of the key: a commit that touches only docs or the orchestrator does not rerun anything.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from model.config import FastMRIData, HDF5Data, RunConfig

__all__ = [
    "KEY_NEUTRAL",
    "UNKNOWN_DATA",
    "RunIdentity",
    "code_context",
    "code_fingerprint",
    "config_key",
    "data_fingerprint",
    "function_identity",
    "identify",
    "source_fingerprint",
]

#: Config fields added after run keys were first written, with the value every earlier run used: at that
#: value they stay out of the config key, so that a store's runs keep their config keys.
KEY_NEUTRAL: dict[tuple[str, ...], Any] = {
    ("trainer", "precision"): "float32",
    ("trainer", "val_pairs"): None,
    # the remedies (docs/remedies.md): at the note's behaviour a config hashes as before they existed
    ("model", "norm"): "batch",
    ("trainer", "content_loss"): "l1",
    ("trainer", "content_variance_weight"): 1.0,
    ("trainer", "content_schedule"): "constant",
    ("trainer", "content_weight_final"): 0.0,
    ("trainer", "content_ramp_epochs"): None,
    ("trainer", "content_stop_gradient"): "none",
    ("trainer", "lr_schedule"): "constant",
    ("trainer", "lr_warmup_epochs"): 0.0,
    ("trainer", "lr_final"): 0.0,
}

_REPO_ROOT = Path(__file__).resolve().parents[1]


def config_key(config: RunConfig) -> str:
    """Stable hash of the fully resolved config (the seed is ``trainer.seed``)."""
    data = config.to_dict()
    for path, value in KEY_NEUTRAL.items():
        *parents, leaf = path
        section = data
        for name in parents:
            section = section.get(name, {})
        if section.get(leaf) == value:
            section.pop(leaf)
    return _digest(json.dumps(data, sort_keys=True, separators=(",", ":")))


def _digest(text: str | bytes, n: int = 16) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(raw).hexdigest()[:n]


def _normalised(source: str) -> str:
    """A module's code without comments, formatting or docstrings (its AST)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def source_fingerprint(files: list[tuple[str, Path]]) -> str:
    """Hash of Python sources, each named by a path relative to its package (order-independent)."""
    h = hashlib.sha256()
    for name, path in sorted(files):
        h.update(name.encode() + b"\0" + _normalised(path.read_text()).encode() + b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def code_fingerprint(model_root: Path | None = None) -> str:
    """Fingerprint of the code that computes a run: the ``model`` package (``model_root``, default the one
    imported)."""
    if model_root is None:
        import model

        model_root = Path(model.__file__).resolve().parent
    return source_fingerprint(
        [(f"model/{p.relative_to(model_root).as_posix()}", p) for p in model_root.rglob("*.py")]
    )


@functools.lru_cache(maxsize=1)
def code_context() -> dict[str, str]:
    """The git commit of the code (``unknown`` outside a repository) and whether its tree has changes."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=_REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    status = git("status", "--porcelain", "--untracked-files=no", "--", "model", "orchestrator")
    return {"git_commit": commit, "git_dirty": "unknown" if status is None else str(bool(status)).lower()}


# --------------------------------------------------------------------------------------------- data


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orch" / "data_fingerprints.json"


@functools.lru_cache(maxsize=256)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    key = f"{path}|{size}|{mtime_ns}"
    cache = _cache_file()
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), str):
        return known[key]
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    value = h.hexdigest()
    try:  # a cache that cannot be written only costs the hash again next time
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**(known if isinstance(known, dict) else {}), key: value}))
        tmp.replace(cache)
    except OSError:
        pass
    return value


def _hash_file(path: Path) -> str:
    st = path.stat()
    return _file_hash(str(path.resolve()), st.st_size, st.st_mtime_ns)


def data_fingerprint(config: RunConfig) -> str:
    """Fingerprint of the data a run trains on (see the module docstring); ``missing`` when a file is not
    there (the sweep's preflight refuses such a run before anything starts)."""
    data = config.data
    try:
        if isinstance(data, HDF5Data):
            return _hash_file(Path(data.path))
        if isinstance(data, FastMRIData):
            files = sorted(Path(data.directory).rglob("*.h5"))
            return _digest("\n".join(f"{p.relative_to(data.directory)}:{_hash_file(p)}" for p in files))
    except OSError:
        return "missing"
    return _digest(data.model_dump_json())


# --------------------------------------------------------------------------------------------- keys


class RunIdentity:
    """A run's key and what it is made of."""

    __slots__ = ("code", "config_key", "data", "run_key")

    def __init__(self, config_key: str, code: str, data: str) -> None:
        self.config_key, self.code, self.data = config_key, code, data
        self.run_key = _digest(f"{config_key}|code:{code}|data:{data}")

    def tags(self) -> dict[str, str]:
        """The ``orch.*`` tags that record it (see :mod:`orchestrator.tracking.vocabulary`)."""
        return {"config_key": self.config_key, "code": self.code, "data": self.data}


def identify(config: RunConfig) -> RunIdentity:
    """The identity of a run of ``config`` with the code installed here and the data as it is now."""
    return RunIdentity(config_key(config), code_fingerprint(), data_fingerprint(config))


#: The data fingerprint of a run of the user's own function: orch cannot know what data it reads.
UNKNOWN_DATA = "none"


def function_identity(
    entrypoint: str, params: dict[str, Any], seed: int, epochs: int, code: str
) -> RunIdentity:
    """The identity of a run of the user's function ``entrypoint`` (docs/own_training.md): its config key
    hashes the entrypoint, the params, the seed and the epochs; ``code`` is the fingerprint of its module's
    or package's source (:func:`source_fingerprint`); its data is not fingerprinted (:data:`UNKNOWN_DATA`:
    a data version belongs in the params)."""
    key = json.dumps(
        {"entrypoint": entrypoint, "params": params, "seed": seed, "epochs": epochs},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return RunIdentity(_digest(key), code, UNKNOWN_DATA)
