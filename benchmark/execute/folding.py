"""Convolution + eval-mode BatchNorm as one convolution with folded weights, differentiably and without copies.

A BatchNorm layer in eval mode is a per-channel affine map, `bn(y) = (y - mean) * s + beta` with
`s = gamma / sqrt(var + eps)`, so `bn(conv(x, W, b)) == conv(x, W * s, (b - mean) * s + beta)`. The folded weights
are computed from the live parameters on every call (a weight-sized product, no cached copy), so gradients reach
`W`, `b`, `gamma` and `beta` exactly as through the two layers, and an optimizer step is seen at the next call. What
goes away is BatchNorm's own pass over the activations, forward and backward: GAIN's masked pass runs with
BatchNorm in eval mode (`masked_bn = "eval"`), and Grad-CAM inference runs the model in eval mode.

`folded(module)` traces the module with torch.fx and rewrites each Conv2d whose output feeds only a BatchNorm2d.
A BatchNorm found in training mode at call time, or without running statistics, is run as usual. The trace is cached
per module object and per layout: the identity and `training` flag of every sub-module (fx freezes code that reads
`self.training` at trace time, so a mode change traces again). The module is run as it is, not folded, when fx
cannot trace it (a compiled one, say), when it holds nothing to fold, or when any sub-module has hooks (a traced
module would bypass them).
"""

from __future__ import annotations

import weakref

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from benchmark.execute.models import has_hooks

_Layout = tuple[tuple[int, bool], ...]
# module -> {layout: its folded trace, or None where there is nothing to fold}. A value never refers to its key (the
# trace holds the sub-modules, not the root), so a module's entry goes when the module does.
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[_Layout, nn.Module | None]] = weakref.WeakKeyDictionary()


def folded(module: nn.Module) -> nn.Module:
    """`module` with every conv -> BatchNorm pair folded whenever that BatchNorm is in eval mode (see the module).

    The traced copy shares the module's sub-modules and parameters; it is traced again when a sub-module was
    replaced or switched mode since (checked on every call)."""
    modules = list(module.modules())
    if has_hooks(modules):
        return module
    layout = tuple((id(m), m.training) for m in modules)
    traces = _CACHE.setdefault(module, {})
    if layout not in traces:
        if len(traces) >= 4:  # train/eval combinations; anything beyond means sub-modules keep changing
            traces.clear()
        traces[layout] = _fold(module)
    trace = traces[layout]
    return module if trace is None else trace


def folded_for(module: nn.Module, device: torch.device) -> nn.Module:
    """`folded(module)` on a CPU, `module` itself elsewhere. On a CPU BatchNorm's passes over the activations are
    memory-bound work that folding removes (GAIN's step and Grad-CAM inference, tests/perf). On CUDA, at the sizes
    measured (ResNet-18, batch 16, H200), the small kernels that fold the weights cost more than BatchNorm's."""
    return folded(module) if device.type == "cpu" else module


def conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """`bn(conv(x))`, as one convolution with folded weights when `bn` is in eval mode with running statistics."""
    if bn.training or bn.running_mean is None or bn.running_var is None:
        return bn(conv(x))
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    weight = conv.weight * scale.view(-1, 1, 1, 1).to(conv.weight.dtype)
    shift = shift.to(weight.dtype)
    # Where the shift needs a gradient it is added after the convolution, not passed as its bias: oneDNN's backward
    # computes a bias gradient several times slower than this sum over the batch and the pixels (1.5 ms of 8 at
    # GAIN's first masked layer, tests/perf). Without a gradient (inference) the bias costs nothing extra.
    split = shift.requires_grad  # computed here from the parameters: False under no_grad and inference_mode
    bias = None if split else shift
    if conv.padding_mode != "zeros":
        y = conv._conv_forward(x, weight, bias)
    else:
        y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return y + shift.view(1, -1, 1, 1).to(y.dtype) if split else y  # autocast: y may be in a lower precision


def _fold(module: nn.Module) -> nn.Module | None:
    """The folded trace of `module`, or None where there is nothing to fold or fx cannot trace it."""
    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception:  # not traceable (compiled, data-dependent control flow): run it as it is
        return None
    submodules = dict(traced.named_modules())
    changed = False
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or type(submodules[node.target]) is not nn.BatchNorm2d:
            continue
        source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        if not (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and type(submodules[source.target]) is nn.Conv2d
            and len(source.users) == 1
            and len(source.args) == 1
            and not source.kwargs
        ):
            continue
        with traced.graph.inserting_before(node):
            conv = traced.graph.get_attr(source.target)
            bn = traced.graph.get_attr(node.target)
            fused = traced.graph.call_function(conv_bn, (source.args[0], conv, bn))
        node.replace_all_uses_with(fused)
        traced.graph.erase_node(node)
        traced.graph.erase_node(source)
        changed = True
    if not changed:
        return None
    traced.graph.lint()
    traced.recompile()
    return traced
