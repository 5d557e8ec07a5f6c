"""Lazy package attributes (PEP 562), so importing a package loads none of its heavy parts.

``import dtnn_jax`` starts no JAX, and importing one submodule of `dtnn_jax.training` loads
no Orbax or Optax: the package's public names are looked up in a table and imported on
first use.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` is imported from ``table[name]``
    on first use (the module itself where ``table[name]`` is ``package.name``) and kept."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(table[name])
        value = module if module.__name__ == f"{package}.{name}" else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
