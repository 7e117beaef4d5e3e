"""check_device: a device name is checked before a model loads onto it. The machine with GPUs is
simulated by patching torch.cuda's two queries (no GPU can run here); the rest is real."""
import pytest
import torch

from avatar_forcing_ros.core.device import check_device


def test_names_that_are_no_device_are_refused_with_the_choices():
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'nonsense' is not a torch device: use cpu, cuda or cuda:N"):
        check_device("nonsense")


def test_cuda_99_is_refused_on_this_machine():
    """Real: without CUDA (the set-up's CPU build) as on a machine with fewer GPUs."""
    expected = "this machine has" if torch.cuda.is_available() else "use device cpu"
    with pytest.raises(ValueError, match=expected):
        check_device("cuda:99")


def test_a_cuda_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # simulated: 2 GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == torch.device("cuda", 1)
    assert check_device("cuda") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"this machine has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        check_device("cuda:99")
