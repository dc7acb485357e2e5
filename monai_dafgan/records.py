"""Fingerprints and per-run result records, so a study finished over several days and machines reuses exactly the
runs whose whole configuration is unchanged, and never mistakes a changed one for a finished one.

A run's key is the SHA-256 of its configuration as canonical JSON (:func:`config_key`): protocol entries, seed,
the content of its training data (:func:`files_fingerprint`; not paths, which differ between machines). Beside it a
record keeps the code version of the parts that matter (:func:`code_fingerprint`: Python modules by their syntax tree
without docstrings, YAML configs by their parsed content, other files by bytes; so a comment or docstring edit keeps
it and a changed line does not), which the study compares before reusing a record. :class:`RunRecords` keeps one
small JSON per run: its configuration, key, code fingerprints and the metrics of every evaluation set scored so far
(each keyed by its own fingerprint), so another evaluation set is added to a finished run without retraining it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from monai_dafgan.utils import atomic_write

#: the arrays of a sample that :func:`samples_fingerprint` hashes (the data contract's)
SAMPLE_KEYS = ("image", "label_inst", "label_type")

__all__ = ["RunRecords", "code_fingerprint", "config_key", "content_fingerprint", "files_fingerprint",
           "samples_fingerprint"]

PACKAGE_ROOT = Path(__file__).resolve().parent


def config_key(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``config`` as canonical JSON (sorted keys; values that JSON lacks written by ``str``)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def _file_content(path: Path) -> bytes:
    if path.suffix == ".py":
        return ast.dump(_strip_docstrings(ast.parse(path.read_text()))).encode()
    if path.suffix in (".yaml", ".yml"):
        return json.dumps(yaml.safe_load(path.read_text()), sort_keys=True, default=str).encode()
    return path.read_bytes()


def code_fingerprint(paths: Iterable[str | os.PathLike]) -> str:
    """SHA-256 over files and folders (``*.py``, ``*.yaml``, ``*.json`` in folders, recursively), by meaning where
    the format allows (see the module docstring). Relative paths are read against this package's folder.

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    digest = hashlib.sha256()
    for entry in paths:
        path = Path(entry)
        path = path if path.is_absolute() else PACKAGE_ROOT / path
        if not path.exists():
            raise FileNotFoundError(f"{path}: cannot fingerprint what does not exist.")
        files = (
            sorted(p for p in path.rglob("*") if p.suffix in (".py", ".yaml", ".json") and "__pycache__" not in p.parts)
            if path.is_dir()
            else [path]
        )
        for file in files:
            digest.update(file.relative_to(path if path.is_dir() else path.parent).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(_file_content(file)).digest())
    return digest.hexdigest()


def files_fingerprint(files: Iterable[Mapping[str, str]]) -> str:
    """SHA-256 of a dataset's content: each file dict's ``name`` and the bytes of its ``image`` and ``label`` files
    (as :func:`monai_dafgan.data.consep_file_list` gives them), in the given order."""
    digest = hashlib.sha256()
    for item in files:
        digest.update(str(item["name"]).encode() + b"\0")
        for key in ("image", "label"):
            digest.update(hashlib.sha256(Path(item[key]).read_bytes()).digest())
    return digest.hexdigest()


def content_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (names relative to it, and bytes; recursively), e.g. of
    weights. Raises ``FileNotFoundError`` for a missing path."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found.")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else "").encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def samples_fingerprint(samples: Iterable[Mapping[str, Any]], keys: Iterable[str] = SAMPLE_KEYS) -> str:
    """SHA-256 of in-memory samples' content: each one's ``name`` and the dtype, shape and values of its ``keys``, in
    the given order. The same data read from another folder or machine gives the same fingerprint."""
    keys = tuple(keys)
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(str(sample.get("name", "")).encode() + b"\0")
        for key in keys:
            array = np.ascontiguousarray(np.asarray(sample[key]))
            digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
            digest.update(hashlib.sha256(array.data).digest())
    return digest.hexdigest()


class RunRecords:
    """One JSON per run in ``folder``: ``<name>_<key[:12]>.json`` holding ``key``, ``config``, ``code``,
    ``train_minutes`` and ``evaluations`` (evaluation-set key -> ``{"set": description, "result": metrics}``), and
    whatever else the caller stores; written atomically."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, name: str, key: str) -> Path:
        return self.folder / f"{name}_{key[:12]}.json"

    def load(self, name: str, key: str) -> dict | None:
        """The record of run ``key``, or None. A file whose full key differs (a 12-digit prefix clash) is ignored."""
        path = self.path(name, key)
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        return record if record.get("key") == key else None

    def save(self, name: str, record: Mapping) -> Path:
        path = self.path(name, record["key"])
        text = json.dumps(record, indent=1, sort_keys=False, default=str)
        return atomic_write(path, lambda f: f.write(text.encode()))
