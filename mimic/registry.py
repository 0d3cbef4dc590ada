"""One registry convention for corruptions, tasks, surrogates and priors.

Each registry offers ``list_*()`` (the names, sorted or in registration order) and ``get_*(name_or_obj)``: a name
is looked up, an object of the registry's kind is returned as it is, and an unknown name raises a ``KeyError``
whose one-line message lists the valid names.
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["Registry"]


class Registry:
    """Named entries of one kind (classes or objects).

    Parameters
    ----------
    kind : str
        What the entries are, for messages ("corruption", "task", ...).
    sort : bool
        ``names()`` sorted (True) or in registration order (False).
    """

    def __init__(self, kind: str, *, sort: bool = True):
        self.kind, self.sort = kind, sort
        self.entries: dict[str, Any] = {}  # name -> entry

    def register(self, name: str, entry: Any = None):
        """Register ``entry`` under ``name``; without an entry, a decorator that registers what it decorates."""
        def add(obj):
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self.entries[name] = obj
            return obj

        return add if entry is None else add(entry)

    def names(self) -> list[str]:
        return sorted(self.entries) if self.sort else list(self.entries)

    def __iter__(self):
        return iter(self.names())

    def __contains__(self, name) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> Any:
        if name not in self.entries:
            raise KeyError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
        return self.entries[name]

    def items(self):
        return [(n, self.entries[n]) for n in self.names()]

    def get(self, name_or_obj, *, instance_of: type | tuple | None = None, build: Callable | None = None, **kw):
        """The entry named ``name_or_obj`` (built with ``build(entry, **kw)`` when given), or ``name_or_obj`` itself
        when it is an ``instance_of`` the registry's kind (then no settings may be given)."""
        if instance_of is not None and isinstance(name_or_obj, instance_of):
            if kw:
                raise TypeError(f"settings can only be given with a {self.kind} name")
            return name_or_obj
        if not isinstance(name_or_obj, str):
            raise TypeError(f"expected a {self.kind} name or object, got {type(name_or_obj).__name__}")
        entry = self[name_or_obj]
        return build(entry, **kw) if build is not None else entry
