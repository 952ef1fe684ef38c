"""A first run talks: every phase that takes more than a few seconds says what it does, how much, and where its
result goes when it starts, and how long it took when it ends (on stderr, so stdout keeps the tables)."""

import pytest
from tiny import tiny_suite

from benchmark.cli import main
from benchmark.core.phases import Counter, phase


@pytest.mark.slow
def test_a_suite_says_each_phase_in_order_on_stderr(tmp_path, capsys):
    path = tmp_path / "talk.toml"
    path.write_text(tiny_suite("talk", ("gradcam", "gain_ext"), reference=True).replace("[model]", "") +
                    '[model]\nname = "small_cnn"\ninit = "pretrained-synthetic"\n')  # fmt: skip
    argv = ["run", str(path), "--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "data"), "--quiet"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    err = captured.err
    expected = [
        "suite talk: 4 of 4 runs to train ->",
        "generating the built-in data: 320 images of 48 px under",  # 160 + 40 + 2 x 20 + 4 x 20
        "generating the built-in data: done in",
        "pre-training small_cnn on the unbiased corpus (160 images of 48 px, 8 epochs; trained once, the start of the "
        "runs naming it, cached in",
        "pre-training small_cnn on the unbiased corpus: done in",
        "timing each configuration against its baseline (3 paired rounds each) ...",
        "drawing the gallery's attention maps ...",
        "measuring where the unbiased model looks",
        "rendering the report ...",
        "rendering the report: done in",
    ]
    positions = [err.find(line) for line in expected]
    assert all(p >= 0 for p in positions), [line for line, p in zip(expected, positions, strict=True) if p < 0]
    assert positions == sorted(positions), "in the order they happen"
    assert "report:" in captured.out and "generating" not in captured.out, "tables on stdout, phases on stderr"
    assert main(argv) == 0
    again = capsys.readouterr().err
    assert "suite talk: 0 of 4 runs to train" in again and "generating" not in again and "pre-training" not in again


def test_a_phase_says_when_it_stops_and_a_counter_speaks_at_each_quarter(capsys):
    try:
        with phase("copying the moon (1 moon)"):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    counter = Counter(10, "images", after=0)
    for _ in range(10):
        counter.add(1)
    quick = Counter(10, "images")  # a phase of a few seconds says only its start and end
    for _ in range(10):
        quick.add(1)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "copying the moon (1 moon) ..." and err[1].startswith("copying the moon: stopped after")
    assert err[2:] == ["  3/10 images", "  5/10 images", "  8/10 images", "  10/10 images"]
