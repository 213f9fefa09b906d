"""Public names loaded on first use: the module-level ``__getattr__`` and ``__dir__``
(PEP 562) of a package whose public names live in its submodules. A leaf: it imports
nothing of the package."""

import importlib
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Tuple


def lazy_names(
    package: str,
    namespace: Dict[str, Any],
    names: Mapping[str, str],
    submodules: FrozenSet[str],
    hidden: FrozenSet[str],
) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for ``package``.

    Args:
        package: the package's ``__name__``.
        namespace: its ``globals()``: a name loaded once is kept there, so that later
            reads do not come back here.
        names: each public name -> the submodule defining it.
        submodules: submodules reachable as attributes without importing them first.
        hidden: what ``dir()`` leaves out (the package module's own machinery).

    ``__getattr__`` raises ``AttributeError`` for any other name, as a module does.
    Thread-safe as imports are (a name two threads load at once is loaded once).
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> List[str]:
        return sorted((set(namespace) - hidden) | set(names) | submodules)

    return __getattr__, __dir__
