"""Shared fixtures. Slow end-to-end tests share one conversion per model per session,
and every conversion here runs with network access blocked."""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.support import Run, refuse_network, run_cli


@pytest.fixture(scope="session")
def no_network():
    """Block every IP connection and DNS lookup for the fixtures and tests that use it."""
    patch = pytest.MonkeyPatch()
    original_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse_network(address)
        return original_connect(self, address)

    patch.setattr(socket.socket, "connect", connect)
    patch.setattr(socket, "create_connection", refuse_network)
    patch.setattr(socket, "getaddrinfo", refuse_network)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def onnx_test_data() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


@pytest.fixture(scope="session")
def seed_run(tmp_path_factory, no_network) -> Run:
    """`convert seed_ym` once per session, offline."""
    root = tmp_path_factory.mktemp("seed_ym")
    code = run_cli("convert", "seed_ym", "--out", str(root))
    return Run(code, root)


@pytest.fixture
def seed_copy(seed_run, tmp_path) -> Path:
    """A private copy of the seed artifacts, for tests that modify them."""
    target = tmp_path / "seed_ym"
    shutil.copytree(seed_run.root, target)
    return target
