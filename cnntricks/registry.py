"""One name -> factory registry, used by every concept folder (models, sources, schedules...).

Keras' `get(identifier)` and timm's `create_model(name)` in one small class: a folder makes a
`Registry("model")`, decorates its factories with `@MODELS.register("vgg")`, and callers ask
`MODELS.create("vgg", **kwargs)`. An unknown name is an error that lists the known ones and the
closest match, so a typo in a config never fails silently.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable


def closest(name: str, choices) -> str:
    """' (did you mean 'x'?)' for the nearest of `choices`, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str):
        def decorate(factory):
            if name in self._factories:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._factories[name] = factory
            return factory
        return decorate

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._factories[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} '{name}'{closest(name, self._factories)}; "
                           f"known: {', '.join(self.names())}") from None

    def create(self, name: str, *args, **kwargs):
        return self.get(name)(*args, **kwargs)
