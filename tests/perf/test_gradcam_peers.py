"""Grad-CAM maps on ResNet-18, 224 px, batch 16: gain-bench vs pytorch-grad-cam vs captum (group "gradcam-resnet18",
and "gradcam-resnet18-cuda" on a GPU).

Every row gets the same model (as built, contiguous, eval mode) and input and returns the same output: normalised maps
at image size (checked against captum's here and by tests/test_attention.py). "gain-bench" is inference, `grad_cam`
under `torch.no_grad()`: no graph for the features, and on a CPU the batch goes through the convolutions in
channels_last (see `benchmark.execute.attention.inference_features`). "gain-bench-differentiable" is `grad_cam` with
gradients on, the path GAIN trains through. `test_gradcam_ratios` interleaves the three libraries round by round and
prints the ratios of their medians (the issue's targets: >= 3x pytorch-grad-cam, >= 1.2x captum, on the CPU).
Compare the rows with `pytest tests/perf --benchmark`.
"""

import pytest
import torch
import torch.nn.functional as F
from paired import ratios_to, report

from benchmark.execute.attention import grad_cam, minmax_normalise
from benchmark.execute.models import build_model
from benchmark.execute.timing import InterleavedRounds

pytestmark = pytest.mark.slow  # timed against peer libraries: seconds each (docs/testing.md)

BATCH, SIZE, CLASSES = 16, 224, 20
ROUNDS, WARMUP = 7, 1
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")],
    ),
]


@pytest.fixture(scope="module", params=DEVICES)
def setup(request):
    """The model, images and classes on the device. On CUDA, TF32 is off while the module runs: every row computes
    in float32, so all four give the same maps to 1e-4 (TF32 rounds each library's convolutions differently)."""
    device = torch.device(request.param)
    torch.manual_seed(0)
    model = build_model("resnet18", CLASSES).eval().to(device)
    images = torch.randn(BATCH, 3, SIZE, SIZE).to(device)
    classes = (torch.arange(BATCH) % CLASSES).to(device)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield model, images, classes
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def reference(setup):
    return _captum(*setup)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ours(model, images, classes):
    with torch.no_grad():
        return grad_cam(model, images, classes)


def _ours_differentiable(model, images, classes):
    return grad_cam(model, images, classes).detach()


def _pytorch_grad_cam(model, images, classes):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=model, target_layers=[model.features[-1]]) as cam:
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes])
    return torch.from_numpy(maps).to(images.device)


def _captum(model, images, classes):
    from captum.attr import LayerGradCam

    attr = LayerGradCam(model, model.features[-1]).attribute(images, target=classes, relu_attributions=True)
    attr = F.interpolate(attr, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return minmax_normalise(attr.detach())


IMPLS = {"gain-bench": _ours, "pytorch-grad-cam": _pytorch_grad_cam, "captum": _captum}


@pytest.mark.parametrize(
    "impl",
    [_ours, _ours_differentiable, _pytorch_grad_cam, _captum],
    ids=["gain-bench", "gain-bench-differentiable", "pytorch-grad-cam", "captum"],
)
def test_gradcam_throughput(benchmark, setup, reference, impl):
    model, images, classes = setup
    benchmark.group = "gradcam-resnet18" + ("-cuda" if images.is_cuda else "")

    def call():
        maps = impl(model, images, classes)
        _sync(images.device)
        return maps

    maps = benchmark.pedantic(call, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    assert maps.shape == (BATCH, SIZE, SIZE)
    torch.testing.assert_close(maps.float(), reference, atol=1e-4, rtol=0)


def test_gradcam_ratios(benchmark, setup):
    """Throughput of gain-bench over each peer's, from interleaved rounds (the issue's acceptance figures)."""
    model, images, classes = setup
    benchmark.group = "gradcam-resnet18-paired" + ("-cuda" if images.is_cuda else "")
    rounds = InterleavedRounds(
        {name: (lambda f=f: f(model, images, classes)) for name, f in IMPLS.items()}, images.device
    )
    benchmark.pedantic(rounds, rounds=ROUNDS, warmup_rounds=WARMUP)
    speedup = ratios_to(rounds, "gain-bench", skip=WARMUP)  # a peer's time over ours
    benchmark.extra_info.update({f"speedup_over_{name}": s for name, s in speedup.items() if name != "gain-bench"})
    where = "CUDA" if images.is_cuda else f"CPU, {torch.get_num_threads()} threads"
    report(
        f"Grad-CAM ResNet-18 224 px batch 16 ({where}): gain-bench throughput over",
        {n: s for n, s in speedup.items() if n != "gain-bench"},
        ROUNDS,
    )
