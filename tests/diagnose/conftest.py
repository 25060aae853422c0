"""The diagnose tests run tiny models: one intra-op thread is faster than two spinning ones
on a shared, busy machine, and leaves the cores to whoever else is testing."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
