import pytest

from benchmark.execute import suites
from benchmark.execute.pretrain import pretrain_spec
from benchmark.execute.suites import SuiteError, apply_overrides, from_dict, load

MINIMAL = {"name": "t", "methods": {"gradcam": {}, "gain_ext": {}}}


def test_shipped_suites_load_and_expand():
    budgets = load("budgets")
    runs = budgets.runs()
    assert {r.method for r in runs} == {"gradcam", "gain", "gain_ext"}
    assert sorted({r.budget for r in runs if r.method == "gain_ext"}) == [9, 23, 78, 200, 1464]
    assert {r.budget for r in runs if r.method != "gain_ext"} == {0}
    assert len(budgets.seeds) >= 3 and len(runs) == 9 * len(budgets.seeds)
    bn = {(r.method, r.budget, r.method_params.get("masked_bn")) for r in runs if r.method != "gradcam"}
    assert {b for m, b, mode in bn if mode == "batch"} == {0, 9, 23, 78, 200, 1464}, "GAIN on batch statistics"
    assert {(m, b) for m, b, mode in bn if mode == "eval"} == {("gain", 0), ("gain_ext", 78)}, "and running ones"
    assert all(r.suite == "budgets" for r in runs)
    assert len({r.run_id for r in runs}) == len(runs)
    # the quick suite: 8 full replicates (the fewest a claim rests on) of the headline configurations
    quick = load("quick")
    runs = quick.runs()
    assert quick.seed_scope == "full" and len(quick.seeds) >= 8
    assert {r.method_label for r in runs} == {"gradcam", "no_finetune", "gain masked_bn=batch",
                                              "gain_ext-78 masked_bn=batch",
                                              "copy_paste-78"}  # fmt: skip
    assert all(r.model_params["pretrain"]["corpus"] == "biased" for r in runs)
    verdict = {s.run_id for s in load("verdict").runs()}
    assert {r.run_id for r in runs} <= verdict, "the verdict suite's biased-corpus runs, id for id"
    smoke = load("smoke")
    assert smoke.train.epochs <= 2 and smoke.dataset_params["n_train"] <= 400


def test_run_order_follows_the_file_and_entries_resolve_params():
    suite = from_dict(
        {
            "name": "t",
            "seeds": [3],
            "budgets": [9],
            "methods": {
                "gain_ext": {"budgets": [78, 9]},
                "energy": {"method": "gain_ext", "e_loss": "outside_energy"},
                "gradcam": {},
            },
        }
    )
    runs = suite.runs()
    assert [(r.method, r.budget) for r in runs] == [("gain_ext", 78), ("gain_ext", 9), ("gain_ext", 9), ("gradcam", 0)]
    assert runs[2].method_params == {"e_loss": "outside_energy"} and runs[2].run_id != runs[1].run_id
    assert {r.seed for r in runs} == {3}


def test_duplicate_entries_are_one_run():
    suite = from_dict({"name": "t", "seeds": [0], "methods": {"gradcam": {}, "again": {"method": "gradcam"}}})
    assert len(suite.runs()) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bogus": 1}, "unknown key bogus"),
        ({"seeds": []}, "seeds = []: allowed: a non-empty list of integers >= 0"),
        ({"seeds": [0, "1"]}, "seeds"),
        ({"budgets": [0]}, "budgets = [0]"),
        ({"device": "tpu"}, "device = 'tpu'"),
        ({"name": ""}, "name = ''"),
        ({"train": {"epochs": 0}}, "train.epochs = 0: allowed: an integer >= 1"),
        ({"train": {"epoch": 2}}, "unknown key train.epoch; allowed: epochs,"),
        ({"timing": {"iterations": 0}}, "timing.iterations = 0"),
        ({"timing": {"speed": 1}}, "unknown key timing.speed"),
        ({"slurm": {"gpus_per_node": -1}}, "slurm.gpus_per_node = -1"),
        ({"methods": {}}, "at least one method"),
        ({"methods": {"gian": {}}}, "methods.gian: unknown method 'gian'"),
        ({"methods": {"gain": {"alpah": 1}}}, "methods.gain: method 'gain': unknown parameter(s) alpah"),
        ({"methods": {"gradcam": {"budgets": [9]}}}, "uses no pixel labels"),
        ({"methods": {"gain_ext": {"budgets": [0]}}}, "methods.gain_ext.budgets = [0]"),
        ({"data": {"rho": 2.0}}, "[data]: data.rho = 2.0 (synthetic-boats): allowed: a number in [0, 1]"),
        ({"data": {"name": "imagenet"}}, "[data]: unknown dataset 'imagenet'; available: synthetic-boats, voc"),
        ({"data": {"name": "voc", "rho": 0.9}}, "[data]: unknown data key(s) rho for dataset voc; allowed: root,"),
        ({"data": {"name": "voc", "pool": "all"}}, "[data]: data.pool = 'all' (voc): allowed: class, pixel"),
        ({"data": {"name": "voc", "difficult": 1}}, "data.difficult = 1 (voc): allowed: include, exclude"),
        ({"data": {"name": "waterbirds", "image_size": 8}}, "data.image_size = 8 (waterbirds): allowed: an integer"),
        ({"data": {"name": "waterbirds"}, "audited_class": "boat"}, "'boat': not a class of waterbirds; allowed: la"),
        ({"methods": {"gain_ext": {"data": {"pool": "x"}}}}, "methods.gain_ext.data: unknown data key(s) pool"),
        ({"model": {"pretrain": {"lr": 1e-4}}}, "model.pretrain sets the pre-training of model.init"),
        ({"model": {"init": "pretrained-synthetic", "pretrain": {"lr": "fast"}}}, "model.pretrain: "),
        ({"model": {"init": "pretrained-synthetic", "pretrain": {"seed": 1}}}, "unknown key(s) seed; allowed: epochs"),
        ({"model": {"init": "pretrained-synthetic", "pretrain": 3}}, "model.pretrain must be a table of epochs"),
        ({"model": {"attention_layer": "block9"}}, "[model]: small_cnn: unknown attention_layer 'block9'"),
        ({"model": {"name": "vgg17"}}, "[model]: unknown model 'vgg17'"),
        ({"audited_class": "ship"}, "audited_class = 'ship': not a class"),
    ],
)
def test_invalid_suites_name_the_key_and_what_is_allowed(change, message):
    with pytest.raises(SuiteError) as err:
        from_dict(MINIMAL | change)
    assert message in str(err.value)


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[methods.gradcam\n')
    with pytest.raises(SuiteError, match=r"broken.toml: not valid TOML"):
        load(path)
    path.write_text('name = "x"\nseeds = [0]\n[methods.gradcam]\nlr = 1\n')
    with pytest.raises(SuiteError, match=r"broken.toml: methods.gradcam: .*unknown parameter"):
        load(path)
    with pytest.raises(SuiteError, match=r"not found.*available: .*quick"):
        load("no-such-suite")


def test_overrides_are_validated_like_the_file():
    raw = apply_overrides(
        MINIMAL, ["train.epochs=2", "methods.gain_ext.alpha=0.3", "seeds=[0, 1]", "data.rho=0.95", "name=other"]
    )
    suite = from_dict(raw)
    assert suite.train.epochs == 2 and suite.seeds == (0, 1) and suite.name == "other"
    assert suite.methods[1].params == {"alpha": 0.3} and suite.dataset_params == {"rho": 0.95}
    assert MINIMAL["methods"]["gain_ext"] == {}, "overrides work on a copy"
    with pytest.raises(SuiteError, match="unknown key 'trian'"):
        apply_overrides(MINIMAL, ["trian.epochs=2"])
    with pytest.raises(SuiteError, match=r"no method entry 'gain'.*--set methods.gain.method=NAME"):
        apply_overrides(MINIMAL, ["methods.gain.alpha=0.3"])
    added = from_dict(
        apply_overrides(MINIMAL, ["methods.energy.method=gain_ext", "methods.energy.e_loss=outside_energy"])
    )
    assert added.methods[-1].method == "gain_ext" and added.methods[-1].params == {"e_loss": "outside_energy"}
    with pytest.raises(SuiteError, match="expected KEY=VALUE"):
        apply_overrides(MINIMAL, ["train.epochs"])
    with pytest.raises(SuiteError, match=r"train.epochs = 0"):
        from_dict(apply_overrides(MINIMAL, ["train.epochs=0"]))


def test_an_invalid_value_from_the_command_line_names_the_command_line_not_the_file(tmp_path):
    with pytest.raises(SuiteError, match=r"^--set train.lr=abc \(command line, over .*quick.toml\): train.lr = 'abc'"):
        load("quick", ["train.epochs=2", "train.lr=abc"])
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[train]\nlr = "y"\n')
    with pytest.raises(SuiteError, match=r"^\S*bad.toml: train.lr = 'y'"):
        load(bad, ["train.epochs=2"])


def test_load_with_seeds_and_overrides(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[methods.gradcam]\n')
    suite = load(path, ["train.lr=0.01"], seeds=[4, 5])
    assert suite.seeds == (4, 5) and suite.train.lr == 0.01
    assert suite.digest != load(path).digest, "the digest covers overrides"
    assert suite.source == str(path)


def test_available_lists_shipped_suites():
    assert {"quick", "smoke"} <= set(suites.available())


def test_every_shipped_suite_loads_and_expands_to_distinct_runs():
    for name in suites.available():
        runs = load(name).runs()
        assert runs and len({r.run_id for r in runs}) == len(runs), name


def test_the_learning_rate_check_trains_with_the_search_s_chosen_gain_ext_trial():
    """suites/search-lr-check.toml pins GAIN_ext-78's trial 2 of suites/search.toml (the trial the search chose,
    findings/search.md): the same method parameters, learning rate and weight decay as that trial draws."""
    trial = next(r for r in load("search").runs() if r.method == "gain_ext" and r.search["trial"] == 2)
    check = load("search-lr-check")
    gain_ext = next(r for r in check.runs() if r.method == "gain_ext")
    assert gain_ext.method_params == trial.method_params and gain_ext.budget == trial.budget == 78
    for r in check.runs():
        assert r.train == trial.train, f"{r.method}: trial 2's learning rate and weight decay, training as in search"
        assert (r.dataset, r.dataset_params, r.model, r.model_params) == (
            trial.dataset,
            trial.dataset_params,
            trial.model,
            trial.model_params,
        )
    assert {r.method for r in check.runs()} == {"gradcam", "gain_ext", "ext_only"}
    ext_only = next(r for r in check.runs() if r.method == "ext_only")
    assert ext_only.method_params == {k: trial.method_params[k] for k in ("omega_e", "warmup_epochs")}


def test_the_suite_reference_is_generated_from_the_schema():
    """docs/suite-reference.md is `python -m benchmark.core.settings`'s output: regenerate it when a key changes."""
    from pathlib import Path

    from benchmark.core.settings import SCHEMA, reference

    doc = Path(__file__).resolve().parent.parent / "docs" / "suite-reference.md"
    assert doc.read_text() == reference(), "run: python -m benchmark.core.settings > docs/suite-reference.md"
    for cls in SCHEMA.values():
        for name in cls.__dataclass_fields__:
            assert f"| `{name}` |" in doc.read_text()


def test_the_paper_scale_suites_expand_to_vgg16_at_224_px_pre_trained_on_the_unbiased_corpus():
    paper = load("paper-scale")
    runs = paper.runs()
    assert len(runs) == 21 and paper.device == "cuda"
    assert {(s.method, s.budget) for s in runs} == {
        ("gradcam", 0), ("gain", 0), ("gain_ext", 9), ("gain_ext", 78), ("gain_ext", 1464),
        ("copy_paste", 78), ("object_removal", 78),
    }  # fmt: skip
    spec = runs[0]
    assert spec.model == "vgg16" and spec.dataset_params["image_size"] == 224 and spec.train.precision == "bf16"
    assert spec.model_params["init"] == "pretrained-synthetic" and spec.model_params["pretrain"]["lr"] == 1e-4
    voc = load("voc-synthetic")
    assert len(voc.runs()) == 21 and {s.dataset for s in voc.runs()} == {"voc"}
    same = {pretrain_spec(s).run_id for s in (*runs, *voc.runs())}
    assert len(same) == 1, "both suites start from one pre-trained VGG-16"
