import torch

from benchmark.methods import build_method
from benchmark.models import build_model
from benchmark.timing import TimingSettings, measure


def _batch(n: int = 4) -> dict[str, torch.Tensor]:
    labels = torch.zeros(n, 5)
    labels[:, 0] = 1
    mask = torch.zeros(n, 48, 48, dtype=torch.long)
    mask[:, 10:20, 10:20] = 1
    return {
        "image": torch.randn(n, 3, 48, 48),
        "labels": labels,
        "mask": mask,
        "has_mask": torch.ones(n, dtype=torch.bool),
        "index": torch.arange(n),
    }


def test_measure_records_figures_and_context_without_touching_the_model():
    model = build_model("small_cnn", 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    figures = measure(model, build_method("gain_ext"), _batch(), 0, TimingSettings(warmup=1, iterations=2))
    assert figures["train_images_per_s"] > 0 and figures["attention_images_per_s"] > 0
    assert figures["train_images_per_s"] == 4 / figures["train_step_seconds"]
    assert figures["batch_size"] == 4 and figures["image_size"] == [48, 48]
    assert figures["device"] == "cpu" and figures["precision"] == "fp32" and figures["threads"] >= 1
    assert figures["peak_memory_mb"] > 0 and figures["memory_kind"] == "process_peak_rss"
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "timing trains a copy"
