"""The ways users consume a stream, as functions of a thunk that makes it: each returns the
items it took. Shared by the tests that run every entry point through every way."""

import gc
import threading
from typing import Any, Callable, Dict, List, Tuple

#: Items the partial forms take before they stop.
K = 2
#: Bound of every wait on a thread.
JOIN = 20.0


def inline(make: Callable[[], Any]) -> List[Any]:
    got = []
    for item in make():  # the call in the for statement: nothing else holds the stream
        got.append(item)
    return got


def assigned(make: Callable[[], Any]) -> List[Any]:
    stream = make()
    got = []
    for item in stream:
        got.append(item)
    return got


def with_block(make: Callable[[], Any]) -> List[Any]:
    got = []
    with make() as stream:
        for item in stream:
            got.append(item)
    return got


def to_list(make: Callable[[], Any]) -> List[Any]:
    return list(make())


def on_thread(work: Callable[[], None], timeout: float = JOIN) -> None:
    """Run ``work()`` on a thread of its own and wait for it (at most ``timeout`` seconds:
    a consumer still running then fails the test); its exception is raised here."""
    errors: List[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # handed back to the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="stream-consumer")
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the consumer thread did not finish"
    if errors:
        raise errors[0]


def other_thread(make: Callable[[], Any]) -> List[Any]:
    stream = make()
    got: List[Any] = []
    on_thread(lambda: got.extend(stream))
    return got


def break_early(make: Callable[[], Any]) -> List[Any]:
    got = []
    for item in make():
        got.append(item)
        if len(got) == K:
            break
    return got


def next_then_close(make: Callable[[], Any]) -> List[Any]:
    stream = make()
    iterator = iter(stream)
    got = [next(iterator) for _ in range(K)]
    stream.close()
    return got


def abandon(make: Callable[[], Any]) -> List[Any]:
    stream = make()
    iterator = iter(stream)
    got = [next(iterator) for _ in range(K)]
    del stream, iterator
    gc.collect()
    return got


#: Each form, and whether it reads the stream to its end.
FORMS: Dict[str, Tuple[Callable[[Callable[[], Any]], List[Any]], bool]] = {
    form.__name__: (form, full)
    for form, full in (
        (inline, True),
        (assigned, True),
        (with_block, True),
        (to_list, True),
        (other_thread, True),
        (break_early, False),
        (next_then_close, False),
        (abandon, False),
    )
}
