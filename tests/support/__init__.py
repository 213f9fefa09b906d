"""What the tests share, as plain modules; the fixtures built on them are in
``tests/conftest.py``.

- :mod:`support.paths`: where the repository, the tests' data and the examples are.
- :mod:`support.records`: records built for a test (:func:`~support.records.request_record`).
- :mod:`support.sinks`: sinks that record what they get, fail, hang, or write to a file.
- :mod:`support.collectors`: collectors with the tests' defaults, remembered for teardown.
- :mod:`support.clocks`: a clock moved by hand.
- :mod:`support.waiting`: bounded waits (a condition, a value, a child process).
- :mod:`support.network`: free loopback ports, waiting for a server to answer.
- :mod:`support.local`: a ``SteerLLMClient`` on a ``LocalLLMServer``, and the server the
  ``llm_server`` mark configures.
- :mod:`support.sdk_clients`: the official SDKs' clients: made for a local server, closed,
  and the ones left open found.
- :mod:`support.spawn`: subprocesses without fork, and the interpreters to run them with.
- :mod:`support.cassettes`, :mod:`support.corpus`, :mod:`support.matrix`: recorded provider
  traffic, and what the pattern matrix replays of it.
- :mod:`support.peers`: the peer instrumentations some tests run beside ours.
- :mod:`support.prometheus`: a real Prometheus server, and reading expositions.

Nothing is imported here: scripts that tests run in a fresh interpreter import only the
module they need.
"""
