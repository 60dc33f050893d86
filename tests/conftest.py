import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Test models are tiny; on a shared 2-core machine torch's OpenMP threads wait on each other
    # (measured: a resnet step took 1.1 s with 2 threads under load, 5 ms with 1).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
