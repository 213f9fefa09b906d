"""Post-import hooks: a function run on a module as soon as the application has imported it.

``instrument()`` patches an SDK when the application imports it, not before: importing the
supported SDKs takes seconds, and most applications use one. While any module name is
watched, one finder sits first on ``sys.meta_path``. It answers for the watched names only:
it asks the finders after it, in their order and with the same arguments, as the import
system would next, and returns the spec they found with its loader wrapped. The wrapper
puts the real loader back on the spec and the module before the module runs, runs it with
that loader, then runs the watcher. The finder finds nothing by itself, so the module
imported, its spec, file and loader are those of an import without it.

Not watched, left to the import system unchanged: a namespace package (it has no code to
run), a module whose loader only has the legacy ``load_module()``, and a module found by a
finder that has only the legacy ``find_module()`` (Python 3.9 to 3.11) or by one placed
before ours on ``sys.meta_path``.

A watcher runs in the importing thread, after the module has run, while the import system
still holds that module's import lock; it must not wait for other threads' imports. Its
exceptions are logged (rate-limited), never raised into the application's import, except one
that a signal handler raised (the host stopping a task). A module that fails to run raises
its own exception unchanged, and no watcher runs.
"""

import sys
import threading
from types import ModuleType
from typing import Any, Callable, Dict, Optional, Sequence

from .._log import describe, rate_limited
from ..runtime import IDENTITY, on_fork_call

#: ``watcher(module)``: what runs once a watched module has run.
Watcher = Callable[[ModuleType], None]

_lock = threading.Lock()  # serialises changes of _watchers and of our place in sys.meta_path
# Module name -> its watcher. Read without the lock by the finder (one dict lookup, atomic
# under the GIL): an import must not wait for instrument().
_watchers: Dict[str, Watcher] = {}


class _Finder:
    """The finder first on ``sys.meta_path`` while a module is watched (see the module's
    docstring). One per process."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Any = None) -> Any:
        if fullname not in _watchers:
            return None
        found = _find_after(self, fullname, path, target)
        if found is None:
            return None  # not found, or not ours to find: the import system carries on
        loader = found.loader
        if loader is not None and hasattr(loader, "exec_module"):
            found.loader = _Loader(loader, fullname)
        return found

    def __repr__(self) -> str:
        return "<steer_llm_sdk post-import hooks>"


_FINDER = _Finder()


def _find_after(finder: _Finder, fullname: str, path: Any, target: Any) -> Any:
    """The spec the finders after ``finder`` on ``sys.meta_path`` find first, or None: none
    found it, ``finder`` is not on ``sys.meta_path`` (any more), or a legacy finder without
    ``find_spec()`` stands in the way (the import system knows how to ask it)."""
    finders = sys.meta_path
    ours = next((i for i, candidate in enumerate(finders) if candidate is finder), None)
    if ours is None:
        return None
    for later in finders[ours + 1 :]:
        find_spec = getattr(later, "find_spec", None)
        if find_spec is None:
            return None
        spec = find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


class _Loader:
    """``loader``, and after it has run a watched module, the module's watcher.

    Every other attribute is the real loader's (``get_resource_reader``, ``get_data``,
    ``is_package``, ...).
    """

    __slots__ = ("_loader", "_name")

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: Any) -> Optional[ModuleType]:
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module runs with its real loader in place: code that reads its own
        # __loader__ or __spec__.loader (resources, source lookups) sees no difference.
        self._restore(module)
        self._loader.exec_module(module)  # its exceptions are the application's: unchanged
        watcher = _watchers.get(self._name)  # None once no longer watched
        if watcher is not None:
            run(watcher, module, self._name)

    def _restore(self, module: ModuleType) -> None:
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_loader"), name)

    def __repr__(self) -> str:
        return f"<watched {self._loader!r}>"


def run(watcher: Watcher, module: ModuleType, name: str) -> None:
    """``watcher(module)`` for module ``name``. An exception it raises is logged
    (rate-limited) instead, unless a signal handler raised it (then it propagates)."""
    try:
        watcher(module)
    except Exception as exc:  # our failure must not fail the application's import
        # Imported here: it is needed on failures only, and this module loads with the
        # metrics API, whose import is kept short.
        from .._signals import signal_exception

        timeout = signal_exception(exc)
        if timeout is not None:
            raise timeout
        rate_limited.warning(
            f"import-hook:{name}",
            "instrumenting an imported module failed",
            module=name,
            error=f"{type(exc).__name__}: {describe(exc)}",
        )


def watch(name: str, watcher: Watcher) -> None:
    """Run ``watcher(module)`` each time module ``name`` has been imported or reloaded from
    now on, until :func:`unwatch_all` (a later call for the same name replaces the watcher).

    A module already imported is not touched: the caller handles it. Thread-safe.
    """
    with _lock:
        _watchers[name] = watcher
        if not any(finder is _FINDER for finder in sys.meta_path):
            # In place: a thread iterating sys.meta_path meanwhile may ask one finder twice,
            # which finds the same again, but skips none.
            sys.meta_path.insert(0, _FINDER)


def unwatch_all() -> None:
    """Watch no module any more and leave ``sys.meta_path`` (idempotent, thread-safe).

    An import whose spec was found before this call still runs with our loader, which then
    finds no watcher. ``sys.meta_path`` is replaced by a copy without our finder, not changed
    in place: an import iterating the list meanwhile would skip the finder after ours.
    """
    with _lock:
        _watchers.clear()
        if any(finder is _FINDER for finder in sys.meta_path):
            sys.meta_path = [finder for finder in sys.meta_path if finder is not _FINDER]


def _renew_lock() -> None:
    # Another thread may have held it at the fork: a held lock stays held in the child, whose
    # next import of a watched module would wait for it forever.
    global _lock
    _lock = threading.Lock()


on_fork_call(_renew_lock, IDENTITY)
