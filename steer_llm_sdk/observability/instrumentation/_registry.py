"""The patch registry behind :func:`instrument` and :func:`uninstrument`."""

import importlib
import importlib.util
import sys
import threading
from typing import Any, Callable, Dict, List, Tuple

# wrapt and the measuring code are imported by instrument() only: the metrics core imports
# this package and must stay importable where wrapt's compiled extension is not.

#: Supported SDKs: name -> (the module that must be importable, our module).
SDKS: Dict[str, Tuple[str, str]] = {
    "openai": ("openai", "openai"),
    "anthropic": ("anthropic", "anthropic"),
    "google_genai": ("google.genai", "google_genai"),
    "bedrock": ("botocore", "bedrock"),
}

_lock = threading.RLock()
# (owner object, attribute name, our FunctionWrapper) of every patch in place
_patches: List[Tuple[Any, str, Any]] = []
_enabled: Dict[int, bool] = {}  # id(our wrapper function) -> whether it measures


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def instrument(*sdks: str, collector: Any = None) -> List[str]:
    """Measure the sync calls of the official SDKs.

    Args:
        *sdks: any of ``openai``, ``anthropic``, ``google_genai``, ``bedrock``; none means
            every supported SDK that is installed (none that is not is imported).
        collector: where records go; None means the default collector at the time of each
            call (so ``testing.capture_metrics()`` sees them).

    Returns:
        The SDKs now instrumented.

    Raises:
        ValueError: an unknown SDK name.
        ImportError: a named SDK is not installed.
    """
    for name in sdks:
        if name not in SDKS:
            raise ValueError(f"unknown SDK {name!r}; supported: {sorted(SDKS)}")
    names = list(sdks) or [n for n, (module, _) in SDKS.items() if _installed(module)]
    from . import _measure

    with _lock:
        _measure._target["collector"] = collector
        done = []
        for name in names:
            module_name, ours = SDKS[name]
            if not _installed(module_name):
                raise ImportError(f"{name} is not installed (import {module_name!r} failed)")
            sdk_module = importlib.import_module(f"{__package__}.{ours}")
            for target_module, path, function in sdk_module.targets():
                _patch(target_module, path, function)
            done.append(name)
        return done


def _patch(module_name: str, path: str, function: Callable[..., Any]) -> None:
    try:
        module = importlib.import_module(module_name)
        owner_name, attribute = path.rsplit(".", 1)
        owner = getattr(module, owner_name)
    except (ImportError, AttributeError):
        return  # this version of the SDK has no such entry point
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
    import wrapt

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


def uninstrument() -> None:
    """Remove our wrappers (idempotent). A wrapper that another instrumentation has wrapped
    since stays in the chain as a pass-through."""
    with _lock:
        remaining = []
        for owner, attribute, wrapper in reversed(_patches):
            _enabled[id(wrapper._self_wrapper)] = False
            if owner.__dict__.get(attribute) is wrapper:
                setattr(owner, attribute, wrapper.__wrapped__)
                _enabled.pop(id(wrapper._self_wrapper), None)  # its id may be reused
            elif _in_chain(owner, attribute, wrapper):  # wrapped again by someone else:
                remaining.append((owner, attribute, wrapper))  # stays, switched off
        _patches[:] = remaining
        measure = sys.modules.get(f"{__package__}._measure")
        if measure is not None:
            measure._target["collector"] = None


def instrumented() -> List[str]:
    """The (owner, attribute) paths measured now, as ``module.Class.method`` strings."""
    with _lock:
        return [
            f"{owner.__module__}.{owner.__qualname__}.{attribute}"
            for owner, attribute, wrapper in _patches
            if _enabled.get(id(wrapper._self_wrapper)) and _in_chain(owner, attribute, wrapper)
        ]
