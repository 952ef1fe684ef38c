"""DFR at the label budget (`dfr`, `dfr_counterfactual`): the logistic-regression fit against an independent
reference, its loss by hand and its gradient, the balanced held-out draw, the budget checks, and tiny end-to-end runs
whose only difference from the `gradcam` baseline of the same seed is the audited row of the last layer."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.optimize
import torch

from benchmark.core.spec import RunSpec, TrainSettings
from benchmark.execute.checkpoints import load_checkpoint
from benchmark.execute.datasets import synthetic
from benchmark.execute.heldout import selection_config
from benchmark.execute.methods import METHODS, build_method
from benchmark.execute.methods.dfr import (
    C_GRID,
    DRAW_ORDER,
    balanced_draw,
    choose_c,
    counterfactual_images,
    fit_logistic,
    fit_standardised,
    group_sizes,
    last_linear,
    load_pool,
    objective,
    penultimate,
    pool_config,
)
from benchmark.execute.models import build_model
from benchmark.execute.suites import SuiteError, from_dict
from benchmark.execute.train import load_data, run

SMALL = {"n_train": 240, "n_val": 60, "n_shifted": 40, "n_counterfactual": 30}
ONE_EPOCH = TrainSettings(epochs=1, batch_size=32, diagnostics=False)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def spec(**kw) -> RunSpec:
    return RunSpec(**({"method": "gradcam", "dataset_params": SMALL, "train": ONE_EPOCH} | kw))


def _problem(seed: int, n: int = 40, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]
    y = (x @ [1.0, -0.5, 2.0] + rng.normal(size=n) > -1.0).astype(float)
    return x, y


# ---- the fit ---------------------------------------------------------------------------------------------------


def test_objective_by_hand():
    """x = (1, -2), y = (1, 0), w = 0.5, b = 0.1, C = 2: z = (0.6, -0.9),
    J = 0.125 + 2 (log(1 + e^-0.6) + log(1 + e^-0.9)) = 0.125 + 2 (0.437488 + 0.341154) = 1.682284;
    sigmoid(z) = (0.645656, 0.289051), r = 2 (sigmoid(z) - y) = (-0.708687, 0.578101):
    dJ/dw = 0.5 + 1 (-0.708687) - 2 (0.578101) = -1.364889, dJ/db = -0.130586."""
    value, grad = objective(np.array([0.5, 0.1]), np.array([[1.0], [-2.0]]), np.array([1.0, 0.0]), 2.0)
    assert value == pytest.approx(1.682284, abs=1e-6)
    np.testing.assert_allclose(grad, [-1.364889, -0.130586], atol=2e-6)


def test_objective_gradient_matches_finite_differences():
    x, y = _problem(1)
    point = np.random.default_rng(2).normal(size=4)
    _, grad = objective(point, x, y, 0.3)
    eps = 1e-6
    numeric = [
        (objective(point + eps * e, x, y, 0.3)[0] - objective(point - eps * e, x, y, 0.3)[0]) / (2 * eps)
        for e in np.eye(4)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("c", [1.0, 0.07])
def test_fit_matches_an_independent_reference(c):
    """The same small problem, minimised by scipy's BFGS with finite-difference gradients on the objective written
    out again here (scikit-learn's `LogisticRegression(C=c)` form: L2 on w, the bias free)."""
    x, y = _problem(3)

    def written_out(p):
        z = x @ p[:3] + p[3]
        return 0.5 * p[:3] @ p[:3] + c * np.sum(np.log1p(np.exp(-np.where(y > 0.5, z, -z))))

    reference = scipy.optimize.minimize(written_out, np.zeros(4), method="BFGS", options={"gtol": 1e-9}).x
    w, b = fit_logistic(x, y, c)
    np.testing.assert_allclose(np.append(w, b), reference, atol=1e-4)
    assert np.abs(objective(np.append(w, b), x, y, c)[1]).max() < 1e-6, "the solution is stationary"


def test_standardised_fit_is_the_fit_on_standardised_features_mapped_back():
    x, y = _problem(4)
    x[:, 2] = 5.0  # a constant feature keeps std 1 and gets no weight
    w, b = fit_standardised(x, y, 0.3)
    mean, std = x.mean(0), np.where(x.std(0) > 0, x.std(0), 1.0)
    w_std, b_std = fit_logistic((x - mean) / std, y, 0.3)
    np.testing.assert_allclose(x @ w + b, ((x - mean) / std) @ w_std + b_std, atol=1e-9)
    assert w[2] == pytest.approx(0.0, abs=1e-9)


def test_c_rule_takes_the_best_worst_group_accuracy_and_the_strongest_on_ties():
    x, y = _problem(5, n=60)
    groups = np.where(y > 0.5, "class_with_context", "neither").astype(object)
    fit_half = np.arange(60) < 30
    c, scores = choose_c(x, y, groups, fit_half, 0.5)
    assert set(scores) == {f"{g:g}" for g in C_GRID}
    best = max(scores.values())
    assert scores[f"{c:g}"] == best and c == min(g for g in C_GRID if scores[f"{g:g}"] == best)
    same = np.full(60, "neither", dtype=object)
    flat_x = np.zeros_like(x)  # no signal: every C scores alike -> the strongest regularisation
    assert choose_c(flat_x + np.arange(60)[:, None] % 2, y, same, fit_half, 2.0)[0] == min(C_GRID)


# ---- the pool and its draw -------------------------------------------------------------------------------------


def test_group_sizes_split_the_budget_evenly_in_the_documented_order():
    assert list(group_sizes(9).values()) == [3, 2, 2, 2] and list(group_sizes(9)) == list(DRAW_ORDER)
    assert DRAW_ORDER[0] == "class_without_context"
    assert [sum(group_sizes(n).values()) for n in (8, 9, 78, 1464)] == [8, 9, 78, 1464]
    assert max(group_sizes(78).values()) - min(group_sizes(78).values()) == 1


def _digests(split) -> set[str]:
    return {hashlib.sha256(img.numpy().tobytes()).hexdigest() for img in split.images}


def test_balanced_draw_is_balanced_nested_seeded_and_disjoint_from_test_and_selection_data(data_root):
    pool, groups, seed = load_pool(spec(), data_root)
    config = synthetic.data_config(spec().dataset, SMALL)
    assert seed == pool_config(config).seed != config.seed and seed != selection_config(config).seed
    small, large = balanced_draw(groups, 9, 0), balanced_draw(groups, 20, 0)
    assert [int((groups[small] == g).sum()) for g in DRAW_ORDER] == [3, 2, 2, 2]
    label, context = (pool.labels[:, 0] > 0.5).numpy(), pool.has_context.numpy()
    want = {"class_with_context": (1, 1), "neither": (0, 0), "class_without_context": (1, 0)}
    for row in large:  # the group is the image's (label, context), as the test groups define them
        assert (label[row], context[row]) == want.get(groups[row], (0, 1))
    assert set(small) <= set(large), "budgets are nested"
    assert np.array_equal(balanced_draw(groups, 9, 0), small) and not np.array_equal(balanced_draw(groups, 9, 1), small)
    with pytest.raises(ValueError, match=r"needs .* class_without_context images; the held-out pool has"):
        balanced_draw(groups, 4 * len(groups), 0)
    drawn = {hashlib.sha256(img.numpy().tobytes()).hexdigest() for img in pool.images[torch.from_numpy(large)]}
    tests = load_data(spec(), data_root)
    selection = synthetic.load(selection_config(config), data_root)
    for split in [*tests.values(), *selection.values()]:
        assert not drawn & _digests(split), split.name


# ---- the layer -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_last_linear_splits_the_head_at_its_logits(name):
    model = build_model(name, 5).eval()
    before, linear = last_linear(model)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(linear(before(model.features(x))), model(x))
    assert linear.out_features == 5
    assert penultimate(model, x, 1, "cpu").shape == (2, linear.in_features)


# ---- budgets ---------------------------------------------------------------------------------------------------


def test_budget_checks_take_what_the_budget_counts(tmp_path):
    assert METHODS["dfr"].budget_labels == "group" and not METHODS["dfr"].uses_pixel_labels
    assert METHODS["dfr_counterfactual"].budget_labels == "pixel" and METHODS["dfr_counterfactual"].uses_pixel_labels
    assert METHODS["gain_ext"].budget_labels == "pixel" and METHODS["gradcam"].budget_labels is None
    suite = from_dict({"name": "t", "seeds": [0], "budgets": [9, 78, 1464],
                       "methods": {"gradcam": {}, "dfr": {}, "dfr_counterfactual": {"budgets": [9]}}})
    assert {(s.method, s.budget) for s in suite.runs()} == {
        ("gradcam", 0), ("dfr", 9), ("dfr", 78), ("dfr", 1464), ("dfr_counterfactual", 9)}
    with pytest.raises(SuiteError, match=r"methods\.dfr\.budgets = \[4\]: allowed: a non-empty list of integers >= 8"):
        from_dict({"name": "t", "methods": {"dfr": {"budgets": [4]}}})
    with pytest.raises(SuiteError, match="method 'dfr' needs budgets >= 8"):
        from_dict({"name": "t", "budgets": [1, 9], "methods": {"dfr": {}}})
    with pytest.raises(SuiteError, match="uses no pixel labels"):
        from_dict({"name": "t", "methods": {"dfr": {"data": {"mask_control": "shuffled"}}}})
    with pytest.raises(ValueError, match="needs a budget of at least 8, got 4"):
        run(spec(method="dfr", budget=4), tmp_path)
    with pytest.raises(ValueError, match="uses no pixel labels"):
        run(spec(method="gradcam", budget=9), tmp_path)


# ---- end to end --------------------------------------------------------------------------------------------------


def _state(tmp_path, s):
    return load_checkpoint(tmp_path / "runs" / s.run_id / "model.pt", build_model("small_cnn", 5)).state_dict()


def test_dfr_is_the_baseline_with_its_audited_row_refit(tmp_path, data_root):
    """Same seed: gradcam, dfr and dfr_counterfactual train identically (no budget image reaches the loop, even with
    `train.mask_batch`); the refit changes the audited class's row and bias of the last layer and nothing else, and
    dfr's row is the fit recomputed from the recorded images and C."""
    settings = TrainSettings(epochs=1, batch_size=32, diagnostics=False, mask_batch=4)
    base, dfr, cf = spec(train=settings), spec(method="dfr", budget=9, train=settings), spec(
        method="dfr_counterfactual", budget=9, train=settings)
    records = {s.method: run(s, tmp_path, data_root=data_root, progress=False) for s in (base, dfr, cf)}
    assert all(r["status"] == "complete" for r in records.values())
    assert "after_training" not in records["gradcam"]
    states = {s.method: _state(tmp_path, s) for s in (base, dfr, cf)}
    last = {"head.2.weight", "head.2.bias"}  # small_cnn at block4: head = pool, flatten, linear
    assert last <= set(states["gradcam"])
    for method in ("dfr", "dfr_counterfactual"):
        for key, value in states["gradcam"].items():
            if key in last:
                torch.testing.assert_close(value[1:], states[method][key][1:], rtol=0, atol=0)
                assert not torch.equal(value[0], states[method][key][0]), f"{method}: the audited row is refit"
            else:
                torch.testing.assert_close(value, states[method][key], rtol=0, atol=0, msg=f"{method}: {key}")
        after = records[method]["after_training"]
        assert after["method"] == method and after["C"] in C_GRID
        assert records[method]["timings"]["after_training_seconds"] > 0
    after = records["dfr"]["after_training"]
    assert after["group_counts"] == {"class_with_context": 2, "neither": 2, "class_without_context": 3,
                                     "context_without_class": 2}
    assert (after["fit_images"], after["held_out_images"], len(after["ids"])) == (5, 4, 9)
    made = records["dfr_counterfactual"]["after_training"]
    assert made["made"] == {"original": 9, "pasted": 9, "removed": 9, "background": 9} and made["positives"] == 18
    assert made["group_counts"]["class_without_context"] >= 9 and made["group_counts"]["neither"] >= 9
    assert (made["fit_images"], made["held_out_images"]) == (20, 16), "split by original: 5 of 9 to fit, 4 held out"

    # dfr's row, recomputed: the baseline's features of the recorded pool images, fit with the recorded C
    pool, _, _ = load_pool(dfr, data_root)
    rows = torch.tensor([pool.ids.index(i) for i in after["ids"]])
    model = load_checkpoint(tmp_path / "runs" / base.run_id / "model.pt", build_model("small_cnn", 5))
    x = penultimate(model, pool.batch(rows, mean=model.mean, std=model.std)["image"], 64, "cpu")
    w, b = fit_standardised(x, pool.labels[rows, 0].double().numpy(), after["C"])
    np.testing.assert_allclose(states["dfr"]["head.2.weight"][0].double().numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(states["dfr"]["head.2.bias"][0]), b, rtol=1e-5, atol=1e-6)


def test_counterfactual_images_paste_onto_land_and_remove_the_object(data_root):
    train = load_data(spec(), data_root)["train"]
    boats = (train.labels[:, 0] > 0.5).nonzero().squeeze(1)[:3]
    land = ((train.labels[:, 0] < 0.5) & ~train.has_context).nonzero().squeeze(1)[:3]
    model = build_model("small_cnn", 5)
    made = counterfactual_images(train, boats, land, 0, model)
    kinds = ("original", "pasted", "removed", "background")
    assert [made[k][1].tolist() for k in kinds] == [[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]]
    assert not made["pasted"][2].any() and not made["background"][2].any()
    np.testing.assert_array_equal(made["removed"][2], train.has_context[boats].numpy())
    batch = train.batch(torch.cat([boats, land]), mean=model.mean, std=model.std)
    boat = (batch["mask"][:3] == 1).unsqueeze(1)
    pasted = made["pasted"][0]
    torch.testing.assert_close(pasted * boat, batch["image"][:3] * boat)  # the boat's pixels, copied
    outside = ~boat
    on_land = [any(torch.equal(pasted[i] * outside[i], batch["image"][3 + j] * outside[i]) for j in range(3))
               for i in range(3)]
    assert all(on_land), "everything but the boat is one of the land images"
    assert not torch.equal(made["removed"][0] * boat, batch["image"][:3] * boat), "the boat is painted over"
    torch.testing.assert_close(made["background"][0], batch["image"][3:])


def test_dfr_counterfactual_reads_the_placebo_masks(tmp_path, data_root):
    """A placebo mask control reaches the refit: the same run with inverted masks refits another row, and trains
    the same network before it; without backgrounds the set has no image lacking class and context."""
    true, inverted = spec(method="dfr_counterfactual", budget=9), spec(
        method="dfr_counterfactual", budget=9, mask_control="inverted", method_params={"backgrounds": False})
    records = [run(s, tmp_path, data_root=data_root, progress=False) for s in (true, inverted)]
    assert records[1]["mask_control"]["kind"] == "inverted"
    assert records[1]["after_training"]["made"] == {"original": 9, "pasted": 9, "removed": 9}
    assert records[1]["after_training"]["group_counts"]["neither"] == 0
    a, b = (_state(tmp_path, s) for s in (true, inverted))
    assert all(torch.equal(a[k], b[k]) for k in a if k not in ("head.2.weight", "head.2.bias"))
    assert not torch.equal(a["head.2.weight"][0], b["head.2.weight"][0])


def test_build_method_rejects_parameters():
    with pytest.raises(ValueError, match="unknown parameter"):
        build_method("dfr", C=1.0)
