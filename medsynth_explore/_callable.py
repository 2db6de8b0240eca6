"""Modules that are called like their main function: ``medsynth_explore.export(...)``, ``medsynth_explore.evaluate(...)``.

A package attribute and a submodule of the same name collide: importing
``medsynth_explore.export`` binds the package attribute ``export`` to the
module, whatever it held before. Rather than let the meaning of
``medsynth_explore.export`` depend on import order, the package attribute is
always the module, and the module is callable: calling it calls its main
function. ``medsynth_explore.export(...)`` and
``medsynth_explore.export.verify(...)`` both work in every order.

Examples
--------
>>> import types
>>> mod = types.ModuleType("demo")
>>> def double(x, factor=2):
...     return factor * x
>>> import sys; sys.modules["demo"] = mod
>>> make_callable("demo", double)
>>> mod(21), str(__import__("inspect").signature(mod))
(42, '(x, factor=2)')
>>> del sys.modules["demo"]
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any, Callable

__all__ = ["CallableModule", "make_callable"]


class CallableModule(types.ModuleType):
    """A module whose call runs its main function, ``__call_target__`` (see :func:`make_callable`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__call_target__(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:  # inspect.signature(module) shows the function's parameters
        return inspect.signature(self.__call_target__)


def make_callable(module_name: str, function: Callable[..., Any]) -> None:
    """Make the imported module ``module_name`` callable as ``function``; call at the end of that module."""
    module = sys.modules[module_name]
    module.__call_target__ = function
    module.__class__ = CallableModule
