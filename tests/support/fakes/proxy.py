"""`Proxy`: the real service with a few methods replaced, for the rare test that needs
an engine answer the real catalogue can't give (a failing call, a collage)."""

from __future__ import annotations


class Proxy:
    """The real service with some methods replaced (and ``hidden`` attributes removed)."""

    def __init__(self, real, hidden: tuple[str, ...] = (), **methods) -> None:
        self._real, self._hidden, self._methods = real, hidden, methods

    def __getattr__(self, name):
        if name in self._hidden:
            raise AttributeError(name)
        if name in self._methods:
            return self._methods[name]
        return getattr(self._real, name)
