import base64
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tiny import tiny_suite

from benchmark.analyse.report import costs, figures, gallery
from benchmark.execute import gallery_maps, post_run, runner, suite_file
from benchmark.execute.suites import load

TINY = tiny_suite("tiny-gallery", timing=False)

METRICS = [("class_without_context", "boat without water"), ("overall", "overall")]


def png(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    image.load()
    assert image.format == "PNG" and image.width > 0 and image.height > 0
    return image


def aggregated(methods: dict[str, list[int]], metrics=("class_without_context", "overall")) -> pd.DataFrame:
    rows = []
    for method, budgets in methods.items():
        for budget in budgets:
            config = json.dumps({"method": method, "budget": budget, "method_params": {}, "seed_free": True})
            for i, metric in enumerate(metrics):
                mean = 0.1 + 0.1 * i + budget / 2000
                rows.append(
                    {"config": config, "label": f"{method}-{budget}", "method": method, "budget": budget}
                    | {"metric": metric, "mean": mean, "ci_low": mean - 0.05, "ci_high": mean + 0.05}
                    | {"n_seeds": 2, "sd": 0.01, "degenerate_seeds": int(budget == 9)}
                )
    return pd.DataFrame(rows)


PAPER = {"gradcam": [0], "gain": [0], "gain_ext": [9, 23, 78, 200, 1464]}


def test_budget_curves_full_suite_is_a_png_and_deterministic():
    table = aggregated(PAPER)
    first = figures.budget_curves(table, METRICS)
    assert png(first).width > 300
    assert figures.budget_curves(table, METRICS) == first


@pytest.mark.parametrize(
    "methods",
    [
        {"gradcam": [0], "gain_ext": [9, 78]},  # no GAIN
        {"gain_ext": [23]},  # no baseline, one budget
        {"gradcam": [0], "gain": [0]},  # no mask-using method
        {"gradcam": [0], "gain_ext": [9, 1464], "gain_other": [78]},  # another mask-using method
    ],
)
def test_budget_curves_tolerate_missing_methods_and_budgets(methods):
    png(figures.budget_curves(aggregated(methods), METRICS))


def test_budget_curves_panel_for_an_absent_metric_and_an_empty_table():
    table = aggregated(PAPER, metrics=("overall",))
    png(figures.budget_curves(table, [*METRICS, ("no_such_metric", "nothing")]))
    png(figures.budget_curves(table.iloc[0:0], METRICS))


def record(method: str, budget: int, seed: int, epochs: int = 3) -> dict:
    parts = ["total", "cl"] + (["am", "e"] if method != "gradcam" else [])
    curve = [
        {"epoch": e, "seconds": 0.1, "steps_images": 64} | {p: 1.0 / (e + seed + 1) for p in parts}
        for e in range(epochs)
    ]
    spec = {"method": method, "budget": budget, "seed": seed, "method_params": {}, "suite": "t"}
    return {"spec": spec, "curve": curve, "status": "complete"}


def test_training_curves_two_seeds_per_configuration():
    records = [record(m, b, s) for m, b in [("gradcam", 0), ("gain_ext", 9), ("gain_ext", 78)] for s in (0, 1)]
    uri = figures.training_curves(records)
    assert png(uri).width > 300
    assert figures.training_curves(list(reversed(records))) == uri, "order of records does not matter"
    png(figures.training_curves([{"spec": records[0]["spec"], "curve": []}]))


ROWS = [
    {"config": "gradcam", "method": "gradcam", "train_images_per_s": 1000.0, "attention_images_per_s": 4000.0},
    {"config": "gain", "method": "gain", "train_images_per_s": 400.0, "attention_images_per_s": 4000.0},
    {"config": "gain_ext-78", "train_images_per_s": 250.0, "attention_images_per_s": None},
]


def _costs(rows, key="train_images_per_s"):
    cost, against = costs.COSTS[key]
    return [(r[cost], r[against]) for r in costs.with_costs(rows)]


def test_every_cost_is_the_baseline_figure_it_names_over_the_rows_own():
    assert _costs(ROWS) == [(1.0, 1000.0), (2.5, 1000.0), (4.0, 1000.0)]
    assert _costs(ROWS, "attention_images_per_s") == [(1.0, 4000.0), (1.0, 4000.0), (None, None)]
    assert _costs(ROWS[1:]) == [(None, None), (None, None)], "no baseline, no cost"
    for row in costs.with_costs(ROWS):
        for key, (cost, against) in costs.COSTS.items():
            if row[cost] is not None:
                assert row[cost] == pytest.approx(row[against] / row[key]), "cost = baseline images/s / images/s"


def test_a_paired_timing_keeps_its_rounds_cost_and_names_the_baseline_speed_in_those_rounds():
    """Rows timed round by round with the baseline (post_run.measure_throughput) carry the ratio of those rounds; the
    baseline figure beside it is the baseline's speed in the same rounds (here 800, not its own row's 1000), so the
    table's and the chart's numbers agree with each other."""
    paired = [
        row | {"train_cost_ratio": cost, "attention_speed_ratio": speed}
        for row, cost, speed in zip(ROWS[:2], (1.0, 2.0), (1.0, 0.8), strict=True)
    ]
    rows = costs.with_costs(paired)
    assert [(r["train_cost_ratio"], r["baseline_train_images_per_s"]) for r in rows] == [(1.0, 1000.0), (2.0, 800.0)]
    assert rows[1]["attention_cost_ratio"] == pytest.approx(1.25)
    assert rows[1]["baseline_attention_images_per_s"] == pytest.approx(5000.0)
    assert [r["paired"] for r in rows] == [False, True]
    png(figures.throughput_chart(paired))


def test_throughput_chart_with_and_without_a_baseline():
    png(figures.throughput_chart(ROWS))
    png(figures.throughput_chart(ROWS[1:]))
    png(figures.throughput_chart([]))


def test_png_data_uri_closes_pyplot_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.add_subplot().plot([0, 1])
    png(figures.png_data_uri(fig))
    assert not plt.fignum_exists(fig.number)


def test_shades_are_distinct_and_method_colours_fixed():
    shades = figures.config_colours([("gain_ext", b) for b in (9, 23, 78, 200, 1464)])
    assert len(set(shades)) == 5
    assert figures.method_colour("gain") == figures.method_colour("gain") != figures.method_colour("gradcam")


@pytest.fixture(scope="module")
def suite_out(tmp_path_factory):
    """A tiny suite trained once (gradcam and gain_ext-9, seeds 0 and 1): its results folder and data root."""
    root = tmp_path_factory.mktemp("gallery")
    path = root / "tiny.toml"
    path.write_text(TINY)
    out, data_root = root / "out", root / "data"
    result = runner.run_suite(load(path), out, quiet=True, data_root=data_root, threads=1)
    assert all(f["status"] == "complete" for f in result.finished)
    return out, data_root


def _gallery(out, data_root, **kwargs):
    """The post-run step computes the gallery into the folder (afresh); the report's side reads it back."""
    (out / "gallery.json").unlink(missing_ok=True)
    gallery_maps.write_gallery(out, post_run.gallery_picks(suite_file.read_suite_file(out), out), data_root, **kwargs)
    return gallery.read_gallery(out)


def test_gallery_shows_the_same_images_for_every_configuration(suite_out):
    out, data_root = suite_out
    data = _gallery(out, data_root, per_group=3)
    assert data is not None
    assert [r.run_id.split("-")[0] for r in data.rows] == ["gradcam", "gain_ext"]
    assert all(r.run_id.split("-")[2] == "s0" for r in data.rows), "the lowest seed"
    chosen = [i for ids in data.groups.values() for i in ids]
    assert [len(ids) for ids in data.groups.values()] == [3, 3, 3]
    assert list(data.groups)[:2] == ["boat without water", "water without boat"]
    assert all(r.ids == chosen for r in data.rows)
    assert all(r.maps.shape == (9, 48, 48) and np.all((r.maps >= 0) & (r.maps <= 1)) for r in data.rows)
    assert all(np.all((r.scores > 0) & (r.scores < 1)) for r in data.rows)
    assert _gallery(out, data_root, per_group=3).groups == data.groups, "deterministic"
    seeded = _gallery(out, data_root, per_group=3, seed=1)
    assert all(r.ids == [i for ids in seeded.groups.values() for i in ids] for r in seeded.rows)
    _gallery(out, data_root, per_group=3)
    uri = gallery.gallery(out)
    assert png(uri).width > 300
    assert gallery.gallery(out) == uri


def test_gallery_skips_a_configuration_without_checkpoint_and_none_without_any(suite_out, tmp_path):
    out, data_root = suite_out
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    for path in copy.glob("runs/gradcam-*/model.pt"):
        path.unlink()
    (next(copy.glob("runs/gain_ext-b9-s0-*")) / "model.pt").unlink()
    data = _gallery(copy, data_root, per_group=2)
    assert data.rows[0].scores is None and "checkpoint" in data.rows[0].note
    assert data.rows[1].run_id.startswith("gain_ext-b9-s1"), "the next seed with a checkpoint"
    png(gallery.gallery(copy))
    (next(copy.glob("runs/gain_ext-b9-s1-*")) / "model.pt").write_bytes(b"not a checkpoint")
    data = _gallery(copy, data_root, per_group=2)
    assert [r.scores for r in data.rows] == [None, None] and "unreadable" in data.rows[1].note
    assert [len(ids) for ids in data.groups.values()] == [2, 2, 2]
    png(gallery.draw(data))
    for path in copy.glob("runs/*/model.pt"):
        path.unlink()
    assert _gallery(copy, data_root) is None and gallery.gallery(copy) is None


def test_the_report_draws_the_gallery_from_the_folder_alone(suite_out, tmp_path):
    """After the post-run step, no checkpoint and no data are needed: the report renders the same gallery with every
    model.pt removed and no data root."""
    out, data_root = suite_out
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    _gallery(copy, data_root, per_group=2)
    before = gallery.gallery(copy)
    for path in copy.glob("runs/*/model.pt"):
        path.unlink()
    assert gallery.gallery(copy) == before
    last = gallery_maps.write_gallery(copy, post_run.gallery_picks(suite_file.read_suite_file(copy), copy), data_root)
    assert last is None and gallery.gallery(copy) is None, "no checkpoint left: the stale gallery goes too"


def test_the_report_opens_no_checkpoint_and_no_data_file(suite_out, tmp_path):
    """`write_report` on a folder whose gallery was written: an audit hook sees every file it opens; none is a
    checkpoint or under a data root."""
    out, data_root = suite_out
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    _gallery(copy, data_root, per_group=2)
    code = f"""
import sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" and args else None)
from benchmark.analyse.report import write_report
write_report({str(copy)!r}, n_resamples=50)
bad = [p for p in opened if p.endswith(".pt") or p.startswith({str(data_root)!r})]
print("BAD", bad)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "BAD []" in done.stdout, done.stdout
    assert 'alt="attention maps of every configuration on the same images"' in (copy / "index.html").read_text()


BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, _NoTorch())
"""


@pytest.mark.slow
def test_the_analysis_commands_run_without_torch(suite_out, tmp_path):
    """Where torch cannot be imported at all (an analysis-only install), `report`, `status`, `table` and `curves`
    work from the results folder alone, and nothing imports torch on the way."""
    out, _ = suite_out
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    for path in copy.glob("runs/*/record.json"):  # records from before they carried keys: suite.json lists them
        record = json.loads(path.read_text())
        del record["keys"]
        path.write_text(json.dumps(record))
    code = BLOCK_TORCH + f"""
from benchmark.cli import main
for argv in (["report", {str(copy)!r}], ["status", {str(copy)!r}], ["table", {str(copy)!r}],
             ["curves", {str(copy)!r}]):
    assert main(argv) == 0, argv
assert not any(m.split(".")[0] in ("torch", "torchvision") for m in sys.modules)
print("OK")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout and "no post-run steps here" in done.stderr
    html = (copy / "index.html").read_text()
    assert "Grad-CAM" in html, "method names from the folder, without the registry"
    assert 'alt="attention maps of every configuration on the same images"' in html
