"""Skip GPU / TensorRT tests automatically where the hardware or library is absent."""

import importlib.util

import pytest


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    has_cuda = _cuda_available()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU here"))
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="TensorRT not installed"))


def pytest_configure(config):
    # Tiny networks: one intra-op thread is fastest and avoids oversubscribing CI's 2 cores.
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
