"""The CUDA paths against the CPU ones: Grad-CAM maps, GAIN/GAIN_ext losses and gradients, bf16 autocast, folded
BatchNorm, a whole suite trained on the GPU with its report, and compiled timing. Skipped without a CUDA GPU; run them
with `pytest -m cuda` (scripts/gpu_check.py does, and prints the train-step figures)."""

import json

import pytest
import torch
from numerics import assert_close_scaled, randomise_batchnorm
from tiny import tiny_suite

from benchmark.analyse.report import write_report
from benchmark.execute import runner
from benchmark.execute.attention import grad_cam
from benchmark.execute.checkpoints import load_checkpoint
from benchmark.execute.datasets.tensors import TensorSplit
from benchmark.execute.folding import folded
from benchmark.execute.methods import build_method
from benchmark.execute.models import build_model
from benchmark.execute.suites import load
from benchmark.execute.timing import TimingSettings, example_batch, measure

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _exact_float32():
    """fp32 on the GPU as on the CPU: no TF32 in convolutions and matrix products, so the two can be compared."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("name,size", [("small_cnn", 48), ("resnet18", 96), ("vgg16", 64)])
def test_grad_cam_on_cuda_matches_cpu(name, size):
    model = randomise_batchnorm(build_model(name, 5)).eval()
    images = torch.randn(6, 3, size, size)
    classes = torch.tensor([0, 1, 2, 3, 4, 0])
    with torch.no_grad():
        on_cpu = grad_cam(model, images, classes)
    gpu_model = model.to(CUDA)
    with torch.no_grad():
        inference = grad_cam(gpu_model, images.to(CUDA), classes.to(CUDA))
    differentiable = grad_cam(gpu_model, images.to(CUDA), classes.to(CUDA))
    assert inference.device.type == "cuda" and inference.shape == (6, size, size)
    torch.testing.assert_close(inference.cpu(), on_cpu, atol=1e-4, rtol=0)
    torch.testing.assert_close(differentiable.detach().cpu(), on_cpu, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["gain", "gain_ext"])
def test_gain_losses_and_gradients_on_cuda_match_cpu(method):
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("small_cnn", 5)).train()
    batch = example_batch(12, 48, 5)
    loss_fn = build_method(method, warmup_epochs=0)

    def losses_and_grads(m: torch.nn.Module, b: dict[str, torch.Tensor]) -> tuple[dict[str, float], list[torch.Tensor]]:
        parts = loss_fn.training_loss(m, b, epoch=1)
        grads = torch.autograd.grad(parts["total"], list(m.parameters()))
        return {k: float(v.detach()) for k, v in parts.items()}, [g.cpu() for g in grads]

    gpu_model = build_model("small_cnn", 5).train()
    gpu_model.load_state_dict(model.state_dict())  # before the CPU step updates BatchNorm's running statistics
    cpu_parts, cpu_grads = losses_and_grads(model, batch)
    gpu_parts, gpu_grads = losses_and_grads(gpu_model.to(CUDA), {k: v.to(CUDA) for k, v in batch.items()})
    assert cpu_parts["am"] > 0 and (method == "gain" or cpu_parts["e"] > 0), "the attention losses ran"
    assert gpu_parts == pytest.approx(cpu_parts, rel=1e-4, abs=1e-6)
    for cpu_grad, gpu_grad in zip(cpu_grads, gpu_grads, strict=True):
        assert_close_scaled(gpu_grad, cpu_grad)


def test_folded_batchnorm_on_cuda_matches_the_unfolded_model():
    model = randomise_batchnorm(build_model("resnet18", 5)).to(CUDA).eval()
    x = torch.randn(4, 3, 64, 64, device=CUDA, requires_grad=True)
    plain, fast = model(x), folded(model)(x)
    assert_close_scaled(fast, plain)
    grads = torch.autograd.grad(plain.square().sum(), [x, *model.parameters()])
    fast_grads = torch.autograd.grad(fast.square().sum(), [x, *model.parameters()])
    for a, b in zip(grads, fast_grads, strict=True):
        assert_close_scaled(b, a)


@pytest.mark.parametrize("method", ["gradcam", "gain", "gain_ext"])
def test_bf16_training_step_on_cuda_is_finite_and_its_maps_follow_fp32(method):
    torch.manual_seed(0)
    model = build_model("vgg16", 5).to(CUDA).train()
    batch = example_batch(4, 64, 5, CUDA)
    loss_fn = build_method(method, warmup_epochs=0) if method != "gradcam" else build_method(method)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        parts = loss_fn.training_loss(model, batch, epoch=1)
    parts["total"].backward()
    assert torch.isfinite(parts["total"]) and all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    classes = torch.arange(4, device=CUDA)
    with torch.no_grad():
        exact = grad_cam(model, batch["image"], classes)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = grad_cam(model, batch["image"], classes)
    assert low.min() >= 0 and low.max() <= 1.01
    corr = torch.corrcoef(torch.stack([exact.flatten(), low.float().flatten()]))[0, 1]
    assert corr > 0.9, f"bf16 maps drift from fp32 maps (correlation {corr:.3f})"


def test_a_suite_trains_on_cuda_resumes_and_reports(tmp_path):
    (tmp_path / "tiny.toml").write_text(tiny_suite("tiny-cuda", ("gradcam", "gain", "gain_ext")))
    suite = load(tmp_path / "tiny.toml")
    out, data = tmp_path / "out", tmp_path / "data"
    result = runner.run_suite(suite, out, quiet=True, data_root=data, device="cuda")
    assert [f["status"] for f in result.finished] == ["complete"] * len(suite.runs())
    for record_file in out.glob("runs/*/record.json"):
        record = json.loads(record_file.read_text())
        assert record["environment"]["device"] == "cuda"
        throughput = record["timings"]["throughput"]
        assert throughput["timer"] == "cuda_events" and throughput["memory_kind"] == "cuda_max_allocated"
        assert throughput["device_name"] == torch.cuda.get_device_name(CUDA)
        spec = next(s for s in suite.runs() if s.run_id == record_file.parent.name)
        load_checkpoint(record_file.parent / "model.pt", build_model(spec.model, 5, **spec.model_params))
    again = runner.run_suite(suite, out, quiet=True, data_root=data, device="cuda")
    assert again.finished == [], "complete runs are not retrained"
    html = write_report(out, n_resamples=100).read_text()
    assert "tiny-cuda" in html and torch.cuda.get_device_name(CUDA) in html


def test_compiled_timing_on_cuda_runs_gain_and_grad_cam():
    batch = example_batch(8, 48, 5, CUDA)
    settings = TimingSettings(warmup=2, iterations=2, compile=True, channels_last=True, precision="bf16")
    figures = measure(build_model("small_cnn", 5), build_method("gain_ext", warmup_epochs=0), batch, 0, settings)
    assert figures["compiled"] is True and figures["channels_last"] is True and figures["precision"] == "bf16"
    assert figures["train_images_per_s"] > 0 and figures["attention_images_per_s"] > 0


def test_a_split_on_the_gpu_builds_the_batches_the_host_builds():
    """The in-memory split moved once to the GPU (masks as uint8 there) and batched through pinned memory gives the
    host's batch, bit for bit."""
    g = torch.Generator().manual_seed(0)
    split = TensorSplit(
        name="train",
        images=torch.randint(0, 256, (12, 3, 16, 16), generator=g, dtype=torch.uint8),
        labels=torch.randint(0, 2, (12, 5), generator=g).float(),
        masks=torch.randint(0, 6, (12, 16, 16), generator=g),
        context=torch.randint(0, 2, (12, 16, 16), generator=g),
        has_context=torch.zeros(12, dtype=torch.bool),
        ids=[str(i) for i in range(12)],
        classes=("a", "b", "c", "d", "e"),
        pair=torch.full((12,), -1),
    )
    on_gpu = split.to("cuda")
    assert split.to("cuda") is on_gpu, "moved once"
    rows, has_mask = torch.tensor([3, 0, 7, 11]), torch.tensor([True, False, True, False])
    host = split.batch(rows, has_mask=has_mask)
    gpu = on_gpu.batch(rows, has_mask=has_mask, device="cuda")
    assert set(host) == set(gpu)
    for key, value in host.items():
        assert gpu[key].device.type == "cuda" and gpu[key].dtype == value.dtype, key
        assert torch.equal(gpu[key].cpu(), value), key
