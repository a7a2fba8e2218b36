"""Small name -> object registries for what users select by name.

Only four exist: ``BACKBONES``, ``LOSSES``, ``MODELS`` and ``DATASET_FORMATS``. Built-ins
register themselves when ``import detectlab`` runs (the package ``__init__`` imports every
built-in module), so a lookup never depends on which module happened to be imported.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterator

from detectlab.errors import ConfigError


class RegistryError(ConfigError, KeyError):
    """Unknown or duplicate name in a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry:
    """A named mapping that refuses duplicates and lists known names on a miss."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str | None = None, obj: Any = None) -> Any:
        """Register ``obj`` under ``name``; usable as ``@REG.register("name")``."""
        if obj is not None:
            self._add(name or obj.__name__, obj)
            return obj

        def decorator(target: Any) -> Any:
            self._add(name or target.__name__, target)
            return target

        return decorator

    def _add(self, name: str, obj: Any) -> None:
        if name in self._entries:
            raise RegistryError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = obj

    def get(self, name: str) -> Any:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown {self.kind} '{name}'{hint}; known: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


BACKBONES = Registry("backbone")
LOSSES = Registry("loss")
MODELS = Registry("model family")
DATASET_FORMATS = Registry("dataset format")

Builder = Callable[..., Any]
