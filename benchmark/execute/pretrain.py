"""Pre-training on a corpus of the generator's: the built-in data's stand-in for ImageNet pre-training.

From scratch on biased boats no attention or mask loss removed the shortcut, while pre-training on unbiased data
(rho = q = 0.5) removed most of it (findings/budgets.md, findings/from-scratch.md), as ImageNet pre-training does
for the paper's VGG-16.
A run with
`model.init = "pretrained-synthetic"` starts from a model trained, with the Grad-CAM baseline's plain `L_cl`, on a
corpus drawn by the same generator with its own seed (so no image of any evaluation split is in it), same image
size and model; by default with no bias, or without the audited class, or with a bias of its own
(`model.pretrain.corpus`, `corpus_config`). A full replicate (`seed_scope = "full"`) pre-trains its own model.
The pre-training is itself a run, cached by its config hash under `<data root>/pretrained/runs/<run_id>/`: trained
once, then reused by every run that names it.

Any model can start so, the torchvision backbones too, and so can a run on other data (the VOC-format export of
the generator, a plugin's dataset): the corpus is then drawn at that data's image size, and a classifier layer whose
shape differs (other classes) starts fresh, as a new head on ImageNet weights does (`checkpoints.load_start`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from benchmark.core.phases import phase
from benchmark.core.spec import (
    CORPUS_KEYS,
    PRETRAIN_SUITE,
    RunSpec,
    TrainSettings,
    architecture_params,
    build_model_params,
)
from benchmark.core.store import COMPLETE, RunLock, run_dir, run_state
from benchmark.execute.datasets import registry, synthetic
from benchmark.execute.train import run

SEED_OFFSET = 1_000_003  # the corpus's generator seed = the evaluation data's seed + this


def corpus_config(spec: RunSpec) -> synthetic.SyntheticConfig:
    """The corpus `spec` pre-trains on: on the built-in data, its own configuration with its own seed; on any other
    dataset, the generator's defaults at that dataset's `image_size` (seed 0 + the offset), as ImageNet is one
    corpus whatever the data set fine-tuned on. What it holds is `model.pretrain.corpus` (`spec.CORPORA`):
    "unbiased" rho = q = 0.5; "without-class" no image of the audited class (`boat_fraction` 0, water in half the
    images); "biased" rho = `model.pretrain.rho` and q = 1 - rho, as ImageNet's boats sit mostly on water."""
    if spec.dataset == synthetic.NAME:
        data = synthetic.data_config(spec.dataset, spec.dataset_params)
    else:
        size = getattr(registry.dataset(spec.dataset).config(spec.dataset_params), "image_size", None)
        if not isinstance(size, int):
            raise ValueError(
                f"model.init = 'pretrained-synthetic' pre-trains at the data's image size, and dataset "
                f"{spec.dataset!r} declares no data.image_size"
            )
        data = synthetic.SyntheticConfig(image_size=size)
    table = pretrain_table(spec)
    corpus = table.get("corpus", "unbiased")
    if corpus == "biased":  # `model.pretrain.rho` is always there beside it (spec._corpus_checked)
        bias = {"rho": table["rho"], "q": 1.0 - table["rho"]}
    else:
        bias = {"rho": 0.5, "q": 0.5} | ({"boat_fraction": 0.0} if corpus == "without-class" else {})
    # The corpus is read for its training split only, which every generator version writes alike: one version for all
    # keeps one cached pre-training per corpus whatever the evaluation data's version.
    version = synthetic.GENERATOR_VERSION
    return dataclasses.replace(data, **bias, seed=data.seed + SEED_OFFSET, generator_version=version)


def pretrain_table(spec: RunSpec) -> dict[str, object]:
    """`model.pretrain` of `spec`, checked and with its defaults (`spec.build_model_params`); {} where unset."""
    return dict(build_model_params(spec.model, spec.model_params).get("pretrain", {}))


def corpus_name(spec: RunSpec) -> str:
    """The corpus in words: "unbiased", "without-class" or "biased rho=0.9"."""
    table = pretrain_table(spec)
    corpus = str(table.get("corpus", "unbiased"))
    return f"{corpus} rho={table['rho']:g}" if corpus == "biased" else corpus


def pretrain_spec(spec: RunSpec) -> RunSpec:
    """The pre-training run for `spec`: its corpus (`corpus_config`), the same architecture (from scratch), the
    default training settings (8 epochs, Adam one-cycle lr 3e-3, as the built-in findings used) with what
    `model.pretrain` sets instead (a deep network without BatchNorm, such as VGG-16, needs a lower lr)."""
    recipe = {k: v for k, v in pretrain_table(spec).items() if k not in CORPUS_KEYS}
    return RunSpec(
        method="gradcam",
        seed=spec.pretrain_seed,
        dataset=synthetic.NAME,
        dataset_params=dataclasses.asdict(corpus_config(spec)),
        model=spec.model,
        model_params=architecture_params(spec.model_params),
        train=TrainSettings(
            channels_last=spec.train.channels_last,
            flush_denormal=spec.train.flush_denormal,
            diagnostics=False,
            **recipe,
        ),
        audited_class=spec.audited_class,
        suite=PRETRAIN_SUITE,
    )


def cache_root(data_root: Path | None = None) -> Path:
    return Path(data_root if data_root is not None else synthetic.default_root()) / PRETRAIN_SUITE


def ensure_pretrained(spec: RunSpec, data_root: Path | None = None, *, device: str = "cpu") -> Path:
    """The pre-trained checkpoint for `spec`, training it first if no complete one is cached. Concurrent callers
    wait on the pre-training run's lock, so it is trained once."""
    pre = pretrain_spec(spec)
    root = cache_root(data_root)
    checkpoint = run_dir(root, pre.run_id) / "model.pt"
    if run_state(root, pre.run_id, pre.config_hash)[0] == COMPLETE and checkpoint.is_file():
        return checkpoint
    lock = RunLock(root, pre.run_id)
    while not lock.acquire():
        time.sleep(0.5)
    try:
        if run_state(root, pre.run_id, pre.config_hash)[0] != COMPLETE or not checkpoint.is_file():
            corpus = pre.dataset_params
            what = (
                f"pre-training {pre.model} on the {corpus_name(spec)} corpus ({corpus['n_train']} images of "
                f"{corpus['image_size']} px, {pre.train.epochs} epochs; trained once, the start of the runs naming it, "
                f"cached in {run_dir(root, pre.run_id)})"
            )
            with phase(what):
                record = run(pre, root, data_root=data_root, progress=sys.stderr.isatty(), device=device)
            if record["status"] != "complete":
                raise RuntimeError(f"pre-training run {pre.run_id} failed: {record['error']}")
    finally:
        lock.release()
    return checkpoint


def start_checkpoint(spec: RunSpec, data_root: Path | None = None, *, device: str = "cpu") -> Path | None:
    """The checkpoint `spec` starts from, handed to `train.run` as `start`: the pre-trained model for
    `model.init = "pretrained-synthetic"` (trained first if it is not cached), None for any other start."""
    if spec.model_params.get("init", "scratch") != "pretrained-synthetic":
        return None
    return ensure_pretrained(spec, data_root, device=device)
