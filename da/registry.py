"""Plain dict registries filled by decorators (as timm's model registry).

An entry pairs a builder with the dataclass that validates its own config section, so
`model.name=lenet` picks both the code and the keys `model.*` may use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    build: Callable[..., Any]
    config: type


def register(registry: dict[str, Entry], name: str, config: type) -> Callable:
    def decorator(build: Callable) -> Callable:
        if name in registry:
            raise ValueError(f"'{name}' is registered twice")
        registry[name] = Entry(build, config)
        return build

    return decorator


def lookup(registry: dict[str, Entry], name: str, what: str) -> Entry:
    if name not in registry:
        raise KeyError(f"unknown {what} '{name}'; registered: {', '.join(sorted(registry))}")
    return registry[name]
