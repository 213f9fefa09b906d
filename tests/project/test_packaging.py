"""The package's metadata says what the project tests: a classifier for each Python of the
tox matrix, the license file shipped, and a wrapt range whose majors tox runs."""

import configparser
import re

import pytest
from support.paths import ROOT


def _metadata():
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        return metadata("steer_llm_sdk")
    except PackageNotFoundError:
        pytest.skip("the package is not installed (make test installs it)")


def _tox_envs():
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    return [e.strip() for e in tox["tox"]["env_list"].split(",")]


def test_a_classifier_for_each_python_tox_runs():
    tested = {f"3.{m.group(1)}" for e in _tox_envs() if (m := re.fullmatch(r"py3(\d+)", e))}
    classified = {
        c.rsplit(" :: ", 1)[1]
        for c in _metadata().get_all("Classifier")
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert tested and classified == tested


def test_the_license_is_in_the_repository_and_the_metadata():
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    meta = _metadata()
    assert meta["License"] == "Apache-2.0"
    assert "LICENSE" in (meta.get_all("License-File") or [])


def test_each_wrapt_major_users_may_get_is_tested():
    requires = _metadata().get_all("Requires-Dist")
    requirement = next(r for r in requires if r.startswith("wrapt") and "extra" not in r)
    assert "<3" in requirement  # majors 1 and 2
    assert "wrapt2" in _tox_envs()
