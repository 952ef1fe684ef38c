"""GPU training steps: VGG-16 (the paper's backbone) at 224 px, bf16 autocast, one row per method (group
"train-step-vgg16-cuda-bf16"). Skipped without CUDA; `scripts/gpu_check.py` runs them and prints the ratios."""

import pytest
import torch

from benchmark.execute.methods import build_method
from benchmark.execute.models import build_model
from benchmark.execute.timing import example_batch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (VGG-16 at 224 px is GPU work)"),
]

BATCH, SIZE, CLASSES = 16, 224, 20


@pytest.mark.benchmark(group="train-step-vgg16-cuda-bf16")
@pytest.mark.parametrize("method", ["gradcam", "gain", "gain_ext"])
def test_vgg16_train_step_bf16(benchmark, method):
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model("vgg16", CLASSES).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)
    loss_fn = build_method(method, warmup_epochs=0) if method != "gradcam" else build_method(method)
    batch = example_batch(BATCH, SIZE, CLASSES, device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            parts = loss_fn.training_loss(model, batch, epoch=1)
        optimizer.zero_grad(set_to_none=True)
        parts["total"].backward()
        optimizer.step()
        torch.cuda.synchronize(device)  # pytest-benchmark reads the wall clock: count the queued kernels

    benchmark.pedantic(step, rounds=10, warmup_rounds=3, iterations=1)
    assert all(torch.isfinite(p).all() for p in model.parameters())
