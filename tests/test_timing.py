import os
import shutil
import subprocess
import sys

import pytest
import torch

from benchmark.execute.denormals import denormals_flushed
from benchmark.execute.methods import build_method
from benchmark.execute.models import build_model
from benchmark.execute.timing import TimingSettings, autocast, measure


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
    batch = _batch()
    batch["labels"][1, 3] = 1.0  # a second label on one image: five (image, class) pairs for four images
    assert measure(model, build_method("gradcam"), batch, 0, TimingSettings(warmup=0, iterations=1))["label_pairs"] == 5
    assert figures["device"] == "cpu" and figures["precision"] == "fp32" and figures["threads"] >= 1
    assert figures["peak_memory_mb"] > 0 and figures["memory_kind"] == "process_peak_rss"
    shares = {}
    for flush in (False, True):
        with denormals_flushed(flush):
            timed = measure(model, build_method("gradcam"), batch, 0, TimingSettings(warmup=0, iterations=1))
        shares[flush] = timed["denormals_flushed"]
    assert 0.0 <= shares[False] < shares[True] <= 1.0, (
        "the calling thread's share follows the flag (benchmark.execute.denormals)"
    )
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "timing trains a copy"


@pytest.mark.parametrize("method", ["gradcam", "gain", "gain_ext"])
def test_bf16_autocast_runs_on_cpu_and_is_recorded(method):
    settings = TimingSettings(batch_size=4, warmup=1, iterations=1, precision="bf16")
    figures = measure(build_model("small_cnn", 5), build_method(method), _batch(), 0, settings)
    assert figures["precision"] == "bf16" and figures["train_images_per_s"] > 0
    assert figures["attention_images_per_s"] > 0


def test_fp16_off_cuda_is_a_clear_error_and_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match=r"fp16.*CUDA"):
        measure(build_model("small_cnn", 5), build_method("gradcam"), _batch(), 0, TimingSettings(precision="fp16"))
    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        TimingSettings(precision="fp64")


def test_bf16_autocast_changes_the_computation():
    """Guards against a precision switch that is recorded but never applied."""
    model = build_model("small_cnn", 5)
    x = torch.randn(2, 3, 48, 48)
    with autocast(torch.device("cpu"), "bf16"):
        assert model(x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert model(x).dtype == torch.float32


@pytest.mark.parametrize("channels_last", [None, True, False])
def test_memory_format_switch_is_applied_and_recorded(channels_last):
    model = build_model("small_cnn", 5).to(memory_format=torch.channels_last)
    figures = measure(
        model, build_method("gradcam"), _batch(), 0, TimingSettings(warmup=0, iterations=1, channels_last=channels_last)
    )
    assert figures["channels_last"] is (True if channels_last is None else channels_last)
    assert figures["compiled"] is False and figures["timer"] == "perf_counter"
    assert model.features[0][0].weight.is_contiguous(memory_format=torch.channels_last), "the caller's model is kept"


@pytest.mark.slow
def test_compile_switch_is_recorded_and_leaves_the_callers_model_alone():
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile (inductor) needs a C compiler on PATH")
    model = build_model("small_cnn", 5)
    figures = measure(model, build_method("gain"), _batch(), 0, TimingSettings(warmup=1, iterations=1, compile=True))
    assert figures["compiled"] is True and figures["train_images_per_s"] > 0
    assert not hasattr(model.features, "_orig_mod")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA-event timing, fp16 GradScaler)")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_timing_uses_events_and_reports_device_memory(precision):
    device = torch.device("cuda")
    batch = {k: v.to(device) for k, v in _batch(8).items()}
    figures = measure(
        build_model("small_cnn", 5), build_method("gain_ext"), batch, 0, TimingSettings(precision=precision)
    )
    assert figures["device"].startswith("cuda") and figures["timer"] == "cuda_events"
    assert figures["precision"] == precision and figures["memory_kind"] == "cuda_max_allocated"
    assert figures["peak_memory_mb"] > 0 and figures["train_images_per_s"] > 0
    assert figures["device_name"] == torch.cuda.get_device_name(device)


def test_interleaved_measurement_rotates_the_contenders_and_keeps_their_figures_apart():
    from benchmark.execute.methods.gradcam import GradCAMBaseline
    from benchmark.execute.timing import measure_interleaved

    order: list[str] = []

    class Tagged(GradCAMBaseline):
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

        def training_loss(self, model, batch, *, epoch):
            order.append(self.tag)
            return super().training_loss(model, batch, epoch=epoch)

    model = build_model("small_cnn", 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    contenders = {tag: (model, Tagged(tag)) for tag in ("a", "b", "c")}
    figures = measure_interleaved(contenders, _batch(), 0, TimingSettings(warmup=1, iterations=4))
    warmup, rounds = ["a", "b", "c"], ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert order == [*warmup, *rounds], "warm-up one by one, then rounds starting at the next contender"
    assert set(figures) == {"a", "b", "c"}
    assert all(f["timing"] == "interleaved" and f["train_images_per_s"] > 0 for f in figures.values())
    assert all(f["attention_images_per_s"] > 0 and f["iterations"] == 4 for f in figures.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "each contender trains a copy"


def test_interleaved_measurement_needs_a_warm_up_round():
    from benchmark.execute.timing import measure_interleaved

    with pytest.raises(ValueError, match="warmup >= 1"):
        contenders = {"a": (build_model("small_cnn", 5), build_method("gradcam"))}
        measure_interleaved(contenders, _batch(), 0, TimingSettings(warmup=0))


def test_timing_applies_and_records_the_training_allocator_settings_in_a_fresh_process():
    """A process that only times (the suite-level timing in the runner's main process, scripts/gpu_check.py) gets
    the malloc settings training runs with, so its figures are comparable with those taken after each run."""
    code = (
        "import torch\n"
        "from benchmark.execute.allocator import retain_freed_memory\n"
        "from benchmark.execute.methods import build_method\n"
        "from benchmark.execute.models import build_model\n"
        "from benchmark.execute.timing import TimingSettings, example_batch, measure\n"
        "assert retain_freed_memory.cache_info().currsize == 0\n"
        "f = measure(build_model('small_cnn', 5), build_method('gradcam'), example_batch(2, 48, 5), 0,\n"
        "            TimingSettings(warmup=0, iterations=1))\n"
        "assert retain_freed_memory.cache_info().currsize == 1, 'measure applied the settings'\n"
        "print(repr(f['allocator']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GAIN_BENCH_MALLOC"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    if sys.platform.startswith("linux"):
        assert "malloc: mmap_threshold=32 MiB" in result.stdout


def test_measure_paired_prepares_the_baseline_once_and_pairs_each_contender(monkeypatch):
    """The baseline's copy is made and warmed up once however many contenders it is paired with (a compiled or large
    baseline would otherwise be copied and compiled again for each), and each contender carries the ratios of its
    own rounds with the baseline."""
    import benchmark.execute.timing as timing

    copies = []
    steps = timing._steps

    def counted(*args, **kwargs):
        copies.append(args[1].name)
        return steps(*args, **kwargs)

    monkeypatch.setattr(timing, "_steps", counted)
    batch = _batch()
    baseline = (build_model("small_cnn", 5), build_method("gradcam"), batch, 0)
    contenders = {
        name: (build_model("small_cnn", 5), build_method(name, warmup_epochs=0), batch, 0)
        for name in ("gain", "gain_ext")
    }
    base, paired = timing.measure_paired(baseline, contenders, TimingSettings(warmup=1, iterations=2))
    assert copies == ["gradcam", "gain", "gain_ext"], "one copy of the baseline, one per contender"
    assert base["train_cost_ratio"] == 1.0 and "(2)" in base["timing"]
    assert base["train_images_per_s"] == 4 / base["train_step_seconds"]
    for figures in paired.values():
        assert figures["timing"] == "paired with the baseline" and figures["train_cost_ratio"] > 0
        assert figures["attention_speed_ratio"] > 0 and figures["peak_memory_mb"] > 0
    with pytest.raises(ValueError, match="at least one contender"):
        timing.measure_paired(baseline, {}, TimingSettings(warmup=1, iterations=1))
