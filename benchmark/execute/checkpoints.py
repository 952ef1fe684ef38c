"""Loading weights: a finished run's model (`load_trained`), a start checkpoint whose head may not fit the classes
(`load_start`: a new head, as on ImageNet weights), and a checkpoint into a built model (`load_checkpoint`)."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.core.spec import RunSpec, architecture_params
from benchmark.execute.models import SplitModel, build_model


def load_trained(spec: RunSpec, checkpoint: Path, n_classes: int) -> SplitModel:
    """A finished run's model from its `model.pt`, in eval mode and in the memory format it trained in. ImageNet
    weights are not looked up: the checkpoint holds every weight."""
    params = {k: v for k, v in architecture_params(spec.model_params).items() if k != "weights"}  # in the file
    model = load_checkpoint(checkpoint, build_model(spec.model, n_classes, **params)).eval()
    return model.to(memory_format=torch.channels_last) if spec.train.channels_last else model


def load_start(path: Path, model: SplitModel, n_classes: int) -> list[str]:
    """Load a pre-trained start into `model`. Tensors whose shape differs only because the pre-training data had
    other classes (leading dimension `n_classes` here: the classifier's last layer) keep their fresh initialisation,
    as a new head on ImageNet weights does; returns their names. Any other difference is a ValueError."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    fresh = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    odd = [k for k in fresh if own[k].shape[0] != n_classes or own[k].shape[1:] != state[k].shape[1:]]
    if odd:
        raise ValueError(
            f"{path}: the pre-trained model does not fit this one ({', '.join(odd)}: "
            f"{tuple(state[odd[0]].shape)} there, {tuple(own[odd[0]].shape)} here)"
        )
    model.load_state_dict({k: own[k] if k in fresh else v for k, v in state.items()})
    return fresh


def load_checkpoint(path: Path, model: SplitModel) -> SplitModel:
    """Load a run's `model.pt` state dict safely (`weights_only=True`: no pickled code is executed)."""
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model
