"""Shared test configuration."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Run every test on one torch thread: the tensors here are tiny, and with two threads on a busy
    CPU small ops (notably conv2d) spend most of their time waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
