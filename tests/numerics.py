"""Helpers for tests that compare two computations of the same numbers (CPU vs CUDA, folded vs plain)."""

import torch


def randomise_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Running statistics and affine parameters away from their initial values (seeded), so that folding them, or
    computing with them on another device, makes a visible difference when it is wrong."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float rounding relative to the tensor's scale: the two computations sum in different orders."""
    torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-4 * float(expected.detach().abs().max()) + 1e-7)
