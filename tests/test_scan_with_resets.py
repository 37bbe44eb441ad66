"""Chapter 7's resettable scan: one parallel scan over episodes laid back to back equals
the step-by-step recurrence that restarts at every reset, and equals chapter 1's scan
where there is no reset."""

import pytest
import torch

from ssm_metarl.models.linear_recurrence import parallel_scan, scan_with_resets


def recurrence(a, b, resets):
    """The reference: one step at a time, the state restarting at a reset."""
    x, states = torch.zeros_like(b[:, 0]), []
    for t in range(b.shape[1]):
        a_t = a[:, t] if a.dim() == b.dim() else a
        x = torch.where(resets[:, t, None], b[:, t], a_t * x + b[:, t])
        states.append(x)
    return torch.stack(states, dim=1)


@pytest.mark.parametrize("length", [1, 2, 7, 64, 3200])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_scan_with_resets_equals_the_recurrence(length, dtype):
    torch.manual_seed(length)
    a = torch.rand(3, 5, dtype=dtype) * 0.98
    b = torch.randn(3, length, 5, dtype=dtype)
    resets = torch.rand(3, length) < 0.05
    resets[:, 0] = True  # every sequence starts an episode
    assert torch.allclose(scan_with_resets(a, b, resets), recurrence(a, b, resets), atol=1e-5)


def test_time_varying_a_and_a_reset_that_cuts_the_past():
    torch.manual_seed(0)
    a = torch.rand(2, 9, 4) * 0.9
    b = torch.randn(2, 9, 4)
    resets = torch.zeros(2, 9, dtype=torch.bool)
    resets[:, 5] = True
    x = scan_with_resets(a, b, resets)
    assert torch.allclose(x, recurrence(a, b, resets), atol=1e-6)
    changed = b.clone()
    changed[:, :5] += 100.0  # nothing before the reset reaches past it
    assert torch.allclose(scan_with_resets(a, changed, resets)[:, 5:], x[:, 5:], atol=1e-5)


def test_without_resets_it_is_chapter_1s_scan():
    torch.manual_seed(1)
    a, b = torch.rand(6) * 0.95, torch.randn(2, 33, 6)
    none = torch.zeros(2, 33, dtype=torch.bool)
    assert torch.allclose(scan_with_resets(a, b, none), parallel_scan(a, b), atol=1e-6)


def test_scan_with_resets_names_bad_shapes():
    with pytest.raises(ValueError, match=r"resets must have shape \(B, L\)"):
        scan_with_resets(torch.rand(4), torch.randn(2, 8, 4), torch.zeros(2, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="b must be a tensor"):
        scan_with_resets(torch.rand(4), torch.randn(8), torch.zeros(8, dtype=torch.bool))
