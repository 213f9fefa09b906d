"""Where the Prometheus sink reaches into prometheus_client's internals, all in this module.

Both repairs touch private parts of prometheus_client (written against 0.26, checked with
0.20). A release that moves them makes :func:`problems` non-empty, and
``tests/pipeline/test_fork_locks.py`` and ``tests/sinks/test_prometheus_disk.py`` fail on
that, instead of the hang or the crash coming back quietly.

* **Locks across fork.** In multiprocess mode every value of the process shares one
  ``threading.Lock``, kept in a closure of ``prometheus_client.values.MultiProcessValue``;
  each family has a lock of its own taken by ``labels()``; in single-process mode each value
  has one. The sink's delivery thread takes them on every record, so a child forked by
  another thread meanwhile inherits one locked and hangs on its first record.
  :func:`renew_value_lock` and :func:`renew_metric_locks` put fresh locks in their place;
  the sink runs them in every forked child.
* **Disk space before the mapping grows.** ``MmapedDict`` grows its file with ``truncate()``,
  which allocates no blocks, and writes through ``mmap``: on a full filesystem the first
  write to a page without a block raises SIGBUS and kills the process. :func:`install`
  makes every multiprocess file a :class:`ReservingMmapedDict`, which reserves the blocks
  with ``os.posix_fallocate`` before the file grows and raises ``OSError`` (``ENOSPC``)
  when it cannot, before anything is mapped or written.
"""

import errno
import os
import threading
from typing import Any, Iterable, List, Optional, cast

from prometheus_client import mmap_dict as _mmap_dict
from prometheus_client import values as _values

_BaseDict = _mmap_dict.MmapedDict
_LOCK_TYPE = type(threading.Lock())
#: The errors of a filesystem that cannot ``fallocate`` (blocks are then written instead).
_UNSUPPORTED = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS)


# ---------------------------------------------------------------------- locks
def _cell(value_class: Any, name: str) -> Optional[Any]:
    """The closure cell ``name`` shared by ``value_class``'s methods (None if none has it:
    a single-process value class, or a layout this module does not know)."""
    for member in vars(value_class).values():
        function = getattr(member, "__func__", member)
        code = getattr(function, "__code__", None)
        closure = getattr(function, "__closure__", None)
        if code is None or not closure:
            continue
        for free, cell in zip(code.co_freevars, closure):
            if free == name:
                return cell
    return None


def renew_value_lock() -> None:
    """In a forked child: a fresh multiprocess value lock (the inherited one may be held by
    a thread that does not exist here). A no-op in single-process mode."""
    cell = _cell(_values.ValueClass, "lock")
    if cell is not None:
        cell.cell_contents = threading.Lock()


def _renew(owner: Any) -> None:
    if isinstance(getattr(owner, "_lock", None), _LOCK_TYPE):
        owner._lock = threading.Lock()


def renew_metric_locks(metrics: Iterable[Any]) -> None:
    """In a forked child: fresh locks in these metric families and, in single-process mode,
    in each value of their children (a walk over every label set)."""
    per_value = not getattr(_values.ValueClass, "_multiprocess", False)
    for metric in metrics:
        _renew(metric)
        if per_value:
            for child in list(getattr(metric, "_metrics", {}).values()):
                for value in _values_of(child):
                    _renew(value)


def _values_of(child: Any) -> List[Any]:
    found = [getattr(child, name, None) for name in ("_value", "_sum", "_count")]
    return [v for v in found if v is not None] + list(getattr(child, "_buckets", ()))


def renew_registry_lock(registry: Any) -> None:
    """In a forked child: a fresh lock in a ``CollectorRegistry`` (taken by a scrape)."""
    _renew(registry)


# ---------------------------------------------------------------------- disk space
def reserve(fd: int, size: int) -> None:
    """Allocate blocks for the first ``size`` bytes of ``fd``, growing it to ``size``.

    Raises:
        OSError: the blocks cannot be had (``ENOSPC``, ``EDQUOT``, ...); the file keeps the
            size it had.
    """
    before = os.fstat(fd).st_size
    try:
        _allocate(fd, before, size)
    except OSError:
        try:
            if os.fstat(fd).st_size != before:
                os.ftruncate(fd, before)
        except OSError:
            pass
        raise


def _allocate(fd: int, before: int, size: int) -> None:
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
    # No fallocate here: write the new range, so the filesystem says ENOSPC now.
    block = b"\0" * 65536
    for offset in range(before, size, len(block)):
        os.pwrite(fd, block[: min(len(block), size - offset)], offset)


class _ReservingFile:
    """An ``MmapedDict``'s file, whose ``truncate(size)`` (how the dict grows it) reserves
    the blocks first. Everything else is the file's own."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def truncate(self, size: int) -> int:
        reserve(self._file.fileno(), size)
        return int(self._file.truncate(size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class ReservingMmapedDict(_BaseDict):
    """prometheus_client's ``MmapedDict`` with every block of its file reserved before it is
    mapped: a full filesystem raises ``OSError`` from the call that needed the space
    (creating a value or growing the file) instead of SIGBUS from a later write."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            _reserve_file(filename, _mmap_dict._INITIAL_MMAP_SIZE)
        super().__init__(filename, read_mode)
        if not read_mode:
            self._f = cast(Any, _ReservingFile(self._f))

    def _init_value(self, key: str) -> None:
        try:
            super()._init_value(key)
        except BaseException:  # noqa: B036 - restored whatever interrupted the growth
            # The file did not grow: keep the capacity the current mapping has.
            self._capacity = len(self._m)
            raise


def _reserve_file(filename: str, minimum: int) -> None:
    """Create ``filename`` if needed and reserve at least ``minimum`` bytes, all of an
    existing file's included. A file left empty by a failure is removed: a scrape cannot
    read an empty file."""
    fd = os.open(filename, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            reserve(fd, max(size, minimum))
        except OSError:
            if size == 0:
                os.unlink(filename)
            raise
    finally:
        os.close(fd)


_install_lock = threading.Lock()


def install() -> None:
    """Make prometheus_client's multiprocess values use :class:`ReservingMmapedDict`: new
    files, and the files this process already has open (their blocks reserved now).
    Idempotent.

    Raises:
        OSError: the blocks of an open file cannot be reserved (the filesystem is full).
    """
    with _install_lock:
        if _values.MmapedDict is _BaseDict:
            _values.MmapedDict = ReservingMmapedDict  # type: ignore[misc]
    lock = _cell(_values.ValueClass, "lock")
    files = _cell(_values.ValueClass, "files")
    if lock is None or files is None:
        return
    with lock.cell_contents:
        for mmaped in list(files.cell_contents.values()):
            if type(mmaped) is _BaseDict and mmaped._f is not None:
                mmaped._f = cast(Any, _ReservingFile(mmaped._f))
                mmaped.__class__ = ReservingMmapedDict
                reserve(mmaped._f.fileno(), mmaped._capacity)


# ---------------------------------------------------------------------- the contract
def problems() -> List[str]:
    """What this module relies on and the installed prometheus_client no longer has: empty
    when every repair applies. For the tests, which assert it is empty (each call leaves a
    small cleanup entry in prometheus_client)."""
    found: List[str] = []
    probe = _values.MultiProcessValue()
    for name in ("lock", "files"):
        cell = _cell(probe, name)
        if cell is None:
            found.append(f"values.MultiProcessValue() has no closure variable {name!r}")
    lock = _cell(probe, "lock")
    if lock is not None and not isinstance(lock.cell_contents, _LOCK_TYPE):
        found.append("values.MultiProcessValue()'s 'lock' is not a threading.Lock")
    if not hasattr(_values, "MmapedDict"):
        found.append("values.MmapedDict is gone: the values module no longer opens the files")
    for name in ("_init_value", "_capacity", "_f", "_m"):
        if name not in _BaseDict.__dict__ and name not in _instance_attributes():
            found.append(f"MmapedDict has no {name!r}")
    if not hasattr(_mmap_dict, "_INITIAL_MMAP_SIZE"):
        found.append("mmap_dict._INITIAL_MMAP_SIZE is gone")
    found += _metric_problems()
    return found


def _instance_attributes() -> List[str]:
    code = _BaseDict.__init__.__code__
    return [n for n in code.co_names if n.startswith("_")]


def _metric_problems() -> List[str]:
    from prometheus_client import CollectorRegistry, Counter

    counter = Counter("probe", "probe", ["label"], registry=CollectorRegistry())
    found: List[str] = []
    if not isinstance(getattr(counter, "_lock", None), _LOCK_TYPE):
        found.append("a labelled family has no '_lock' of its own")
    if not isinstance(getattr(counter, "_metrics", None), dict):
        found.append("a labelled family keeps no '_metrics' dict of children")
    if not isinstance(getattr(CollectorRegistry(), "_lock", None), _LOCK_TYPE):
        found.append("CollectorRegistry has no '_lock'")
    if not isinstance(getattr(_values.MutexValue(*_PROBE_ARGS), "_lock", None), _LOCK_TYPE):
        found.append("values.MutexValue has no '_lock'")
    return found


_PROBE_ARGS = ("counter", "probe", "probe_total", (), (), "probe")
