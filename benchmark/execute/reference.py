"""The unbiased reference for attention shares: where a model that never saw the bias looks.

"63% of the boat map lies on water" means little alone: water covers much of a boat-on-water image, and a model
that knows boats still spreads some attention over the shore. So the report puts each configuration's share of the
map on the context beside the context's area share and beside the same share for the model pre-trained on the
generator's unbiased corpus (rho = q = 0.5, `benchmark.execute.pretrain`), measured on the same in-distribution images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmark.core.predictions import audited_view
from benchmark.core.spec import RunSpec, configuration_key
from benchmark.core.store import REFERENCE_FILE, read_references, write_atomic
from benchmark.execute.checkpoints import load_trained
from benchmark.execute.datasets import synthetic
from benchmark.execute.metrics import context_attention
from benchmark.execute.prediction import predict
from benchmark.execute.pretrain import ensure_pretrained, pretrain_spec
from benchmark.execute.train import load_data


def setting_key(spec: RunSpec) -> str:
    """What an unbiased reference depends on: the data and the model (not the method, budget, seed or training)."""
    return configuration_key({"dataset": spec.dataset, "dataset_params": spec.dataset_params, "model": spec.model,
                              "model_params": {k: v for k, v in spec.model_params.items() if k != "init"}})  # fmt: skip


def unbiased_reference(spec: RunSpec, data_root: Path | None = None, *, device: str = "cpu") -> dict[str, Any]:
    """The context attention share of the unbiased pre-trained model on `spec`'s val images (pre-training it first
    if it is not cached), with the context's area share and the run id of that model."""
    pre = pretrain_spec(spec)
    checkpoint = ensure_pretrained(spec, data_root, device=device)
    classes = synthetic.CLASSES
    class_index = classes.index(spec.audited_class)
    model = load_trained(pre, checkpoint, len(classes)).to(device)
    val = load_data(spec, data_root)["val"]
    preds = predict(model, {"val": val}, class_index, spec, device)
    return {"pretrained_run": pre.run_id, **context_attention(audited_view(preds["val"], class_index))}


def write_references(
    specs: list[RunSpec], out_root: Path, data_root: Path | None = None, *, device: str = "cpu"
) -> dict[str, dict[str, Any]]:
    """One reference per data and model setting of `specs` (built-in data only), kept in `<out_root>/reference.json`
    keyed by `setting_key`; settings already there are not measured again."""
    path = Path(out_root) / REFERENCE_FILE
    found = read_references(out_root)
    for spec in specs:
        key = setting_key(spec)
        if spec.dataset == synthetic.NAME and key not in found:
            found[key] = unbiased_reference(spec, data_root, device=device)
    write_atomic(path, json.dumps(found, indent=1, sort_keys=True))
    return found
