import copy
import gc
import weakref

import pytest
import torch
from numerics import assert_close_scaled, randomise_batchnorm

import benchmark.execute.methods.gain as gain_module
from benchmark.execute.folding import folded, folded_for
from benchmark.execute.methods import build_method
from benchmark.execute.models import build_model
from benchmark.execute.timing import example_batch


def _outputs_and_grads(model, fn, x):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    grads = torch.autograd.grad(y.square().sum(), [x, *model.parameters()])
    return y, grads


@pytest.mark.parametrize("name,size", [("small_cnn", 48), ("resnet18", 64)])
def test_folded_eval_model_computes_the_same_outputs_and_gradients(name, size):
    model = randomise_batchnorm(build_model(name, 5)).eval()
    fast = folded(model)
    assert fast is not model and folded(model) is fast, "traced once, then cached"
    x = torch.randn(3, 3, size, size)
    y, grads = _outputs_and_grads(model, model, x)
    y_fast, grads_fast = _outputs_and_grads(model, fast, x)
    torch.testing.assert_close(y_fast, y, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, grads_fast, strict=True):
        assert_close_scaled(b, a)


def _count_batchnorm_calls(monkeypatch) -> list[int]:
    """Counts BatchNorm2d forward calls (patched on the class: a hook on a module would turn folding off)."""
    calls: list[int] = []
    forward = torch.nn.BatchNorm2d.forward

    def counted(self, x):
        calls.append(1)
        return forward(self, x)

    monkeypatch.setattr(torch.nn.BatchNorm2d, "forward", counted)
    return calls


def test_folding_removes_batchnorm_from_the_eval_graph_and_keeps_it_in_training(monkeypatch):
    model = randomise_batchnorm(build_model("small_cnn", 5))
    n_norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    calls = _count_batchnorm_calls(monkeypatch)
    x = torch.randn(4, 3, 48, 48)
    folded(model.eval())(x)
    assert calls == [], "eval mode: every conv -> BatchNorm pair runs as one convolution"
    model.train()
    twin = copy.deepcopy(model)
    y_fast, y = folded(model)(x), twin(x)
    assert len(calls) == 2 * n_norms, "training mode: BatchNorm runs, with batch statistics"
    torch.testing.assert_close(y_fast, y, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(model.state_dict().values(), twin.state_dict().values(), strict=True):
        torch.testing.assert_close(ours, theirs)  # running statistics updated alike


def test_code_reading_the_training_flag_is_traced_again_after_a_mode_change():
    class ModeDependent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.bn(self.conv(x))
            return y * 2 if self.training else y

    module = randomise_batchnorm(ModeDependent())
    x = torch.randn(2, 3, 8, 8)
    for mode in (True, False, True, False):
        module.train(mode)
        twin = copy.deepcopy(module)
        torch.testing.assert_close(folded(module)(x), twin(x), rtol=1e-5, atol=1e-5)


def test_hooked_modules_are_not_folded_and_mixed_dtypes_fold():
    model = randomise_batchnorm(build_model("small_cnn", 5)).eval()
    handle = model.features[0][1].register_forward_hook(lambda *_: None)
    assert folded(model) is model, "a traced module would bypass the hook"
    handle.remove()
    assert folded(model) is not model
    conv, bn = torch.nn.Conv2d(3, 4, 3).to(torch.bfloat16), randomise_batchnorm(torch.nn.BatchNorm2d(4)).eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.bfloat16)
    fast = folded(torch.nn.Sequential(conv, bn))(x)
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), bn(conv(x).float()), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("name", ["vgg16", "small_cnn"])
def test_the_cache_does_not_keep_models_alive(name):
    """With nothing to fold (VGG-16) or something (small CNN), a model dropped by its owner is freed."""
    model = build_model(name, 5).eval()
    folded(model)(torch.randn(1, 3, 32, 32))
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None


def test_folded_model_follows_optimizer_steps_and_replaced_layers():
    model = randomise_batchnorm(build_model("small_cnn", 5)).eval()
    x = torch.randn(2, 3, 48, 48)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    folded(model)(x).sum().backward()
    optimizer.step()
    torch.testing.assert_close(folded(model)(x), model(x), rtol=1e-5, atol=1e-5)
    model.head[-1] = torch.nn.Linear(64, 5)
    torch.testing.assert_close(folded(model)(x), model(x), rtol=1e-5, atol=1e-5)


def test_models_without_batchnorm_or_untraceable_are_left_as_they_are():
    vgg = build_model("vgg16", 5)
    assert folded(vgg) is vgg
    compiled = build_model("small_cnn", 5)
    compiled.features = torch.compile(compiled.features)
    assert folded(compiled) is compiled


@pytest.mark.parametrize("method", ["gain", "gain_ext"])
def test_gain_masked_pass_is_the_same_with_and_without_folding(method, monkeypatch):
    """GAIN's masked pass (BatchNorm in eval mode) runs the folded model: the losses and every parameter gradient
    are those of the plain model."""
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("small_cnn", 5)).train()
    batch = example_batch(8, 48, 5)
    loss_fn = build_method(method, warmup_epochs=0)

    def run():
        state = {k: v.clone() for k, v in model.state_dict().items()}
        parts = loss_fn.training_loss(model, batch, epoch=1)
        grads = torch.autograd.grad(parts["total"], list(model.parameters()))
        model.load_state_dict(state)  # BatchNorm's running statistics as before
        return {k: float(v.detach()) for k, v in parts.items()}, grads

    fast_parts, fast_grads = run()
    monkeypatch.setattr(gain_module, "folded_for", lambda m, device: m)
    parts, grads = run()
    assert parts["am"] > 0
    assert fast_parts == pytest.approx(parts, rel=1e-5, abs=1e-7)
    for a, b in zip(grads, fast_grads, strict=True):
        assert_close_scaled(b, a)


def test_folding_is_used_on_the_cpu_only_and_by_gain_s_masked_pass(monkeypatch):
    model = build_model("small_cnn", 5)
    assert folded_for(model, torch.device("cpu")) is folded(model)
    assert folded_for(model, torch.device("cuda")) is model, "on CUDA the plain model (see folded_for)"
    calls = _count_batchnorm_calls(monkeypatch)
    build_method("gain", warmup_epochs=0).training_loss(model.train(), example_batch(4, 48, 5), epoch=1)
    assert len(calls) == 4, "BatchNorm runs in the classification pass only: the masked pass is folded"


def test_the_folded_shift_is_a_bias_only_without_a_gradient(monkeypatch):
    """oneDNN's backward computes a convolution's bias gradient several times slower than a sum over the batch and
    the pixels, so with gradients on the folded convolution gets no bias and the shift is added after it; without
    gradients (inference) it is the convolution's bias, which costs no extra pass. Same outputs and gradients as
    conv -> BatchNorm either way."""
    model = randomise_batchnorm(build_model("small_cnn", 5)).eval()
    biases: list[object] = []
    conv2d = torch.nn.functional.conv2d

    def recorded(x, weight, bias=None, *args, **kwargs):
        biases.append(bias)
        return conv2d(x, weight, bias, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", recorded)
    x = torch.randn(2, 3, 48, 48)
    y, grads = _outputs_and_grads(model, folded(model), x)
    assert len(biases) == 4 and all(b is None for b in biases)
    with torch.no_grad():
        y_inference = folded(model)(x)
    assert len(biases) == 8 and all(b is not None for b in biases[4:])
    monkeypatch.undo()
    y_ref, grads_ref = _outputs_and_grads(model, model, x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y_inference, y_ref.detach(), rtol=1e-5, atol=1e-5)
    for a, b in zip(grads_ref, grads, strict=True):
        assert_close_scaled(b, a)


@pytest.mark.parametrize(
    "conv",
    [
        {"padding": 1},
        {"padding": 1, "stride": 2, "dilation": 2, "groups": 2, "bias": True},
        {"padding": 1, "padding_mode": "reflect"},
        {"padding": "same"},
    ],
)
def test_folded_conv_bn_has_the_gradients_of_conv_then_batchnorm_to_second_order(conv):
    """gradcheck and gradgradcheck in float64 of the folded layer against finite differences, with a gradient to
    the input, the convolution's weight and bias and BatchNorm's affine parameters; and the same values as the two
    layers."""
    from benchmark.execute.folding import conv_bn

    class ConvBN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 6, 3, **({"bias": False} | conv))
            self.bn = torch.nn.BatchNorm2d(6)

        def forward(self, x):
            return conv_bn(x, self.conv, self.bn)

    torch.manual_seed(0)
    layers = randomise_batchnorm(ConvBN()).double().eval()
    names = [name for name, _ in layers.named_parameters()]
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64, requires_grad=True)
    values = [p.detach().clone().requires_grad_(True) for p in layers.parameters()]

    def fn(x, *values):
        return torch.func.functional_call(layers, dict(zip(names, values, strict=True)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *values))
    assert torch.autograd.gradgradcheck(fn, (x, *values))
    torch.testing.assert_close(fn(x, *values), layers.bn(layers.conv(x)))


def test_folded_layers_keep_autocast_s_precision():
    """Under bf16 autocast with gradients on, the shift added after the convolution must not promote the activations
    back to float32: the folded layers give what conv -> BatchNorm gives, dtype included."""
    model = randomise_batchnorm(build_model("small_cnn", 5)).eval()
    x = torch.randn(2, 3, 48, 48, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y_fast = model.features(x), folded(model.features)(x)
    assert y_fast.dtype == y.dtype == torch.bfloat16
    scale = float(y.detach().float().abs().max())
    torch.testing.assert_close(y_fast.float(), y.float(), rtol=0.05, atol=0.05 * scale)
