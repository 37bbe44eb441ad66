import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Every network in the tests is tiny. On a shared 2-core machine a second intra-op thread
    makes each small op wait for a CPU (chapters 1 and 2 measure it), so tests use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
