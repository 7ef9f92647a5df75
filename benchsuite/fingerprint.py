"""Fingerprints of plugin source code: part of a cell's identity, so an edited plugin's cells run again.

A plugin's code is the module that defines its class plus every module of the same top-level
package that this module imports, directly or through other such modules (``import``
statements anywhere in the file, including inside functions, read with ``ast``: nothing is
imported or executed to find them), plus the ``__init__.py`` of each package on the way, which
Python runs when it imports the module (and what those import in turn). The host package ``benchsuite`` is not part of any
plugin: host changes that alter results are declared with ``benchsuite.spec.RESULTS_VERSION``.

Built-in plugins live in one package, ``benchsuite_plugins``, so ``gr``'s code is ``gr.py``,
``dm.py`` and ``weighting.py`` (what ``gr.py`` imports, directly or not), not every built-in
method; a task whose family code sits in a package of its own (``benchsuite_plugins.cifar``)
takes in that package's modules as far as they are imported. What the fingerprint cannot see — a module loaded by a computed name, data
files, compiled code, a dependency — is what a plugin's declared ``version`` is for.

The fingerprint is a hash of the module names and file bytes, sorted by module name: the same
on every machine for the same source, and cached per process (a file edited while a process
runs is seen by the next process).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import sys
from pathlib import Path

HOST_PACKAGE = "benchsuite"
#: Hex digits kept: 48 bits, plenty to tell versions of one plugin apart.
FINGERPRINT_LENGTH = 12


@functools.cache
def code_fingerprint(module_name: str) -> str:
    """The fingerprint of the plugin code behind ``module_name`` (a class's ``__module__``), or
    ``""`` when the module has no source file (defined interactively)."""
    files = plugin_files(module_name)
    if not files:
        return ""
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def plugin_files(module_name: str) -> dict[str, Path]:
    """Module name -> source file of every module that makes up the plugin code of ``module_name``
    (see the module docstring)."""
    root_name = module_name.partition(".")[0]
    root = _package_dir(root_name)
    start = _module_file(module_name, root_name, root)
    if start is None:
        return {}
    files: dict[str, Path] = {module_name: start}
    if root is None or root_name == HOST_PACKAGE:
        return files  # a single-module plugin, or a class defined in the host: its own file only
    todo = [module_name]
    while todo:
        name = todo.pop()
        path = files[name]
        imported = _imports(path, name, path.name == "__init__.py") if path.suffix == ".py" else set()
        for other in sorted(imported | set(_ancestors(name))):
            if other.partition(".")[0] != root_name or other in files:
                continue
            found = _module_file(other, root_name, root)
            if found is not None:
                files[other] = found
                todo.append(other)
    return files


def _ancestors(module_name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``."""
    parts = module_name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _package_dir(root_name: str) -> Path | None:
    """The directory of the top-level package ``root_name`` (None: a single module, or unknown)."""
    module = sys.modules.get(root_name)
    locations = list(getattr(module, "__path__", []) or [])
    if not locations and module is None:
        try:
            spec = importlib.util.find_spec(root_name)
        except (ImportError, ValueError):
            return None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def _module_file(name: str, root_name: str, root: Path | None) -> Path | None:
    """The source file of module ``name``: found under the package directory without importing
    anything, or, for a top-level module, from the loaded module or its spec."""
    if root is not None and name != root_name:
        base = root.joinpath(*name.split(".")[1:])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None
    if root is not None:
        init = root / "__init__.py"
        return init if init.is_file() else None
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None)
    if origin is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None else None
    return Path(origin) if origin and Path(origin).is_file() else None


def _imports(path: Path, module_name: str, is_package: bool) -> set[str]:
    """Absolute names of every module ``path`` may import (``from a import b`` yields ``a`` and
    ``a.b``: ``b`` may be a submodule; names that are not modules are dropped by the caller)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError:
        return set()
    package = module_name if is_package else module_name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names
