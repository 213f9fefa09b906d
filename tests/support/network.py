"""Loopback servers the tests start: a free port to give one, and waiting until it answers."""

import socket
import subprocess
from typing import Any

import requests

from support.waiting import wait_for


def free_port() -> int:
    """A TCP port of 127.0.0.1 free now (a server given it binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(url: str, process: "subprocess.Popen[Any]", timeout: float = 30.0) -> None:
    """Wait until ``url`` answers 200.

    Raises:
        AssertionError: at once, with its output, if ``process`` (the server) exits first;
            after ``timeout`` seconds if it never answers.
    """

    def answers() -> bool:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout is not None else ""
            raise AssertionError(f"{process.args!r} exited early: {output}")
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(answers, timeout, f"{url} to answer", interval=0.1)
