"""The patch registry behind :func:`instrument` and :func:`uninstrument`.

An SDK is *armed* by ``instrument()`` and patched once the application has imported it:
a post-import hook (:mod:`._hooks`) watches the SDK's package (:data:`SDKS`). When the
package has been imported (or at once, if it already was), our module for that SDK is
loaded and its ``targets()`` say which modules hold the entry points; each of those is
patched as soon as it has been imported too (SDKs such as openai import theirs on first
use). So ``instrument()`` imports no SDK, and our measuring code only for an SDK already
imported.

Locks: ``_lock`` guards the patches and what is armed; it is never held while importing or
while waiting for an import, since a hook runs inside an import, holding that module's
import lock, and then takes ``_lock``.
"""

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from functools import partial
from types import ModuleType
from typing import Any, Callable, Dict, List, Set, Tuple

from ..runtime import IDENTITY, on_fork_call
from . import _hooks

# wrapt and the measuring code are imported once an SDK is: the metrics core imports this
# package and must stay importable where wrapt's compiled extension is not.

#: Supported SDKs: name -> (the module that must be importable, our module).
SDKS: Dict[str, Tuple[str, str]] = {
    "openai": ("openai", "openai"),
    "anthropic": ("anthropic", "anthropic"),
    "google_genai": ("google.genai", "google_genai"),
    "bedrock": ("botocore", "bedrock"),
    "groq": ("groq", "groq"),
    # mistralai's top-level package is a namespace package, which the hooks do not watch.
    "mistralai": ("mistralai.client", "mistral"),
    "cohere": ("cohere", "cohere"),
    "litellm": ("litellm", "litellm"),
}

_lock = threading.RLock()
# (owner object, attribute name, our FunctionWrapper) of every patch in place
_patches: List[Tuple[Any, str, Any]] = []
_enabled: Dict[int, bool] = {}  # id(our wrapper function) -> whether it measures
_armed: Set[str] = set()  # the SDKs instrument() asked for, until uninstrument()
_collector: Dict[str, Any] = {"collector": None}  # what instrument() was given last

#: (module, ``Class.method`` path in it, or the name of a function of the module itself,
#: our wrapper function), as ``targets()`` lists them.
Target = Tuple[str, str, Callable[..., Any]]


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it or, for a submodule,
    its package (google-genai's ``google`` is a namespace that many distributions share)."""
    if sys.modules.get(module) is not None:
        return True
    top, _, rest = module.partition(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: nothing is imported
        name = top
        for part in rest.split(".") if rest else ():
            if spec is None or spec.submodule_search_locations is None:
                return False
            name = f"{name}.{part}"
            spec = importlib.machinery.PathFinder.find_spec(name, spec.submodule_search_locations)
        return spec is not None
    except (ImportError, ValueError):
        return False


def instrument(*sdks: str, collector: Any = None) -> List[str]:
    """Measure the sync calls of the official SDKs, those imported already and those the
    application imports later, without importing any.

    An SDK the application has imported is patched before this returns (if another thread
    is importing it right now, once that import has finished); any other is patched when
    the application imports it, as the import completes, in the importing thread.
    Idempotent: calling it again arms more SDKs and sets ``collector`` anew.

    Args:
        *sdks: any of ``openai``, ``anthropic``, ``google_genai``, ``bedrock``, ``groq``,
            ``mistralai``, ``cohere``, ``litellm``; none means every supported SDK that is
            installed.
        collector: where records go; None means the default collector at the time of each
            call (so ``testing.capture_metrics()`` sees them).

    Returns:
        The SDKs instrumented from now on, each installed: patched already if imported,
        or to be patched when imported. :func:`instrumented` lists the entry points
        patched so far.

    Raises:
        ValueError: an unknown SDK name (nothing is armed).
        ImportError: a named SDK is not installed (nothing is armed).

    Thread-safe; it may run while other threads import the SDKs.
    """
    for name in sdks:
        if name not in SDKS:
            raise ValueError(f"unknown SDK {name!r}; supported: {sorted(SDKS)}")
    names = list(dict.fromkeys(sdks)) or [n for n, (m, _) in SDKS.items() if _installed(m)]
    for name in sdks:
        if not _installed(SDKS[name][0]):
            raise ImportError(f"{name} is not installed (import {SDKS[name][0]!r} failed)")
    with _lock:
        _collector["collector"] = collector
        _aim()
        for name in names:
            _armed.add(name)
            _hooks.watch(SDKS[name][0], partial(_sdk_imported, name, False))
    for name in names:  # outside the lock: this may wait for another thread's import
        package = sys.modules.get(SDKS[name][0])
        if package is not None:
            _hooks.run(partial(_sdk_imported, name, True), package, SDKS[name][0])
    return names


def _aim() -> None:
    """Point the wrappers at the collector instrument() was given (they read it from our
    measuring module, once it is loaded; it is aimed again when it is)."""
    measuring = sys.modules.get(f"{__package__}._measure")
    if measuring is not None:
        measuring._target["collector"] = _collector["collector"]


def _sdk_imported(name: str, wait: bool, package: ModuleType) -> None:
    """SDK ``name``'s package has been imported: patch the modules of its entry points that
    are imported, and watch the others.

    Args:
        wait: True when called by instrument() for a package imported before it: a module
            found in ``sys.modules`` may still be running in another thread, and is waited
            for. False in a hook, which runs inside an import and must not wait for others
            (a module found there was imported by the package, which has run).
        package: the package's module (unused: its entry points are in its submodules).
    """
    if wait:
        importlib.import_module(SDKS[name][0])  # returns once its import has finished
    ours = importlib.import_module(f"{__package__}.{SDKS[name][1]}")
    by_module: Dict[str, List[Target]] = {}
    for target in ours.targets():
        by_module.setdefault(target[0], []).append(target)
    with _lock:
        if name not in _armed:
            return  # uninstrument() came first
        for module_name, targets in by_module.items():
            # Watched before looking in sys.modules: an import starting meanwhile is then
            # either seen below or hooked (patching twice is harmless).
            _hooks.watch(module_name, partial(_module_imported, name, targets))
    for module_name, targets in by_module.items():
        if sys.modules.get(module_name) is None:
            continue  # patched by its hook when imported
        module = importlib.import_module(module_name) if wait else sys.modules[module_name]
        _module_imported(name, targets, module)


def _module_imported(name: str, targets: List[Target], module: ModuleType) -> None:
    """Patch ``targets`` in ``module``, which has been imported, if ``name`` is still armed.
    An entry point this version of the SDK does not have is skipped."""
    import wrapt  # loaded with our measuring code already

    found = []
    for _, path, function in targets:
        owner_name, _, attribute = path.rpartition(".")
        owner = getattr(module, owner_name, None) if owner_name else module
        if owner is not None:
            found.append((owner, attribute, function))
    with _lock:
        if name not in _armed:
            return
        _aim()
        for owner, attribute, function in found:
            _patch(wrapt, owner, attribute, function)


def _patch(wrapt: Any, owner: Any, attribute: str, function: Callable[..., Any]) -> None:
    for patch in list(_patches):
        patched_owner, patched_attribute, wrapper = patch
        if patched_owner is owner and patched_attribute == attribute:
            if _in_chain(owner, attribute, wrapper):
                _enabled[id(wrapper._self_wrapper)] = True  # already ours: measure again
                return
            _patches.remove(patch)  # unwrapped by someone else meanwhile: wrap anew
            _enabled.pop(id(wrapper._self_wrapper), None)
    original = owner.__dict__.get(attribute)
    if original is None:
        return
    guarded = _guard(function)
    wrapper = wrapt.FunctionWrapper(original, guarded)
    setattr(owner, attribute, wrapper)
    _enabled[id(guarded)] = True
    _patches.append((owner, attribute, wrapper))


def _in_chain(owner: Any, attribute: str, wrapper: Any) -> bool:
    """Whether ``wrapper`` is still reached when ``owner.attribute`` is called (it may sit
    under other instrumentations' wrappers, or have been unwrapped by one of them)."""
    current = owner.__dict__.get(attribute)
    for _ in range(64):  # a chain of wrappers, each with __wrapped__
        if current is wrapper:
            return True
        current = getattr(current, "__wrapped__", None)
        if current is None:
            return False
    return False


def _guard(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` while enabled; a pass-through once uninstrumented but left in place."""

    def guarded(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if not _enabled.get(id(guarded), False):
            return wrapped(*args, **kwargs)
        return function(wrapped, instance, args, kwargs)

    return guarded


def _renew_lock() -> None:
    # Another thread may have held it at the fork: a held lock stays held in the child, whose
    # hooks take it inside the imports of the SDKs.
    global _lock
    _lock = threading.RLock()


on_fork_call(_renew_lock, IDENTITY)


def uninstrument() -> None:
    """Stop watching imports (our finder leaves ``sys.meta_path``) and remove our wrappers
    (idempotent, thread-safe). A wrapper that another instrumentation has wrapped since
    stays in the chain as a pass-through. An SDK imported afterwards is not patched."""
    with _lock:
        _armed.clear()
        _hooks.unwatch_all()
        remaining = []
        for owner, attribute, wrapper in reversed(_patches):
            _enabled[id(wrapper._self_wrapper)] = False
            if owner.__dict__.get(attribute) is wrapper:
                setattr(owner, attribute, wrapper.__wrapped__)
                _enabled.pop(id(wrapper._self_wrapper), None)  # its id may be reused
            elif _in_chain(owner, attribute, wrapper):  # wrapped again by someone else:
                remaining.append((owner, attribute, wrapper))  # stays, switched off
        _patches[:] = remaining
        _collector["collector"] = None
        _aim()


def instrumented() -> List[str]:
    """The (owner, attribute) paths measured now, as ``module.Class.method`` strings (each
    once: a reloaded module's classes are new classes with the same paths)."""
    with _lock:
        paths = [
            f"{_path_of(owner)}.{attribute}"
            for owner, attribute, wrapper in _patches
            if _enabled.get(id(wrapper._self_wrapper)) and _in_chain(owner, attribute, wrapper)
        ]
    return list(dict.fromkeys(paths))


def _path_of(owner: Any) -> str:
    """``module.Class`` of a patched class, the name of a patched module."""
    if isinstance(owner, ModuleType):
        return owner.__name__
    return f"{owner.__module__}.{owner.__qualname__}"
