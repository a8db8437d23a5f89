"""Package attributes imported on first use (PEP 562): ``vae_edge.models`` and ``vae_edge.trainer`` list
their public names here so that their torch-free modules (configs, the CLI) load without torch."""

from __future__ import annotations

from importlib import import_module


def lazy_getattr(package: str, exports: dict[str, tuple[str, ...]]):
    """A module ``__getattr__`` for ``package``: ``exports`` maps a module name (relative to ``package``,
    or absolute) to the names it provides; a name's module is imported when the name is first asked for."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(where[name], package), name)

    return __getattr__


def public_names(exports: dict[str, tuple[str, ...]]) -> list[str]:
    """``__all__`` for a package whose names ``exports`` lists."""
    return sorted(name for names in exports.values() for name in names)
