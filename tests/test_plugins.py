"""Plugins: methods, models and datasets registered from outside the package reach every process that trains, are
named with their origin, enter the config hash, and fail clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiny import tiny_suite

from benchmark.cli import main
from benchmark.core.plugins import Plugin, PluginError
from benchmark.core.registry import METHODS, MODELS, load_plugins
from benchmark.execute import suites

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = """
from benchmark.execute.methods.gradcam import GradCAMBaseline
from benchmark.core.registry import register_method


@register_method(display="Plain {tag}", colour="#123456")
class Plain{tag}(GradCAMBaseline):
    name = "plain_{tag}"
"""


def _plugin(folder: Path, tag: str, body: str = PLUGIN) -> Path:
    path = folder / f"plugin_{tag}.py"
    path.write_text(body.format(tag=tag))
    return path


def _suite(folder: Path, plugins: list[str], methods: tuple[str, ...]) -> Path:
    text = tiny_suite(methods=methods, timing=False)
    path = folder / "suite.toml"
    path.write_text(f"plugins = {json.dumps(plugins)}\n" + text)
    return path


def test_a_file_plugin_registers_with_its_origin_and_enters_the_hash(tmp_path: Path) -> None:
    plugin = _plugin(tmp_path, "a")
    suite = suites.load(_suite(tmp_path, ["plugin_a.py"], ("gradcam", "plain_a")))  # relative to the suite
    entry = METHODS.entry("plain_a")
    assert entry.display == "Plain a" and entry.colour == "#123456"
    assert entry.origin.kind == "plugin" and entry.origin.identity.startswith("plugin_a.py@sha256:")
    specs = {s.method: s for s in suite.runs() if s.seed == 0}
    assert specs["plain_a"].resolved()["plugins"] == [entry.origin.identity]
    assert "plugins" not in specs["gradcam"].resolved()  # built-in runs keep their hash
    # the same file changed: a new identity, so new run ids (here loaded as a second plugin under a new name)
    plugin_b = _plugin(tmp_path, "b")
    load_plugins([str(plugin_b)])
    assert METHODS.entry("plain_b").origin.identity != entry.origin.identity
    assert Plugin.resolve(str(plugin)).identity == entry.origin.identity  # stable for the same bytes
    plugin.write_text(plugin.read_text() + "\n# changed\n")
    assert Plugin.resolve(str(plugin)).identity != entry.origin.identity


def test_a_name_clash_is_refused_with_both_origins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clash = tmp_path / "clash.py"
    clash.write_text(
        "from benchmark.execute.methods.gradcam import GradCAMBaseline\n"
        "from benchmark.core.registry import register_method\n"
        "register_method(type('X', (GradCAMBaseline,), {'name': 'gain'}))\n"
    )
    with pytest.raises(PluginError, match=r"method 'gain' from plugin .*clash.py.* clashes with .* built-in"):
        load_plugins([str(clash)])
    assert METHODS.entry("gain").origin.kind == "built-in"
    assert main(["list", "--plugin", str(clash)]) == 2
    assert "clashes with" in capsys.readouterr().err


def test_a_plugin_that_fails_to_import_names_itself_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(PLUGIN.format(tag="broken") + "\nraise RuntimeError('no GPU driver here')\n")
    with pytest.raises(PluginError, match=r"plugin '.*broken.py' failed to import: RuntimeError: no GPU driver here"):
        load_plugins([str(broken)])
    assert "plain_broken" not in METHODS
    suite = _suite(tmp_path, ["broken.py"], ("gradcam",))
    assert main(["run", str(suite), "--dry-run"]) == 2
    assert "failed to import: RuntimeError" in capsys.readouterr().err
    assert main(["train", "--method", "gradcam", "--plugin", "no_such_module_xyz", "--out", str(tmp_path)]) == 2
    assert "no module of that name" in capsys.readouterr().err


def test_a_plugin_written_against_the_old_module_paths_is_told_where_they_went(tmp_path: Path) -> None:
    old = tmp_path / "old_paths.py"
    old.write_text("from benchmark.registry import register_method\n")
    with pytest.raises(PluginError, match=r"No module named 'benchmark.registry'.* imports what it needs from "
                                          r"benchmark.api"):  # fmt: skip
        load_plugins([str(old)])


def test_list_shows_where_each_name_comes_from(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = _plugin(tmp_path, "listed")
    assert main(["list", "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert "gain (GAIN; built-in)" in out
    assert f"plain_listed (Plain listed; plugin {plugin} (plugin_listed.py@sha256:" in out


@pytest.mark.slow
def test_pool_workers_import_the_suite_plugins(tmp_path: Path) -> None:
    """Spawned workers know nothing of this process's registries: the runs complete only if each worker imports
    the plugin itself."""
    _plugin(tmp_path, "pool")
    suite = _suite(tmp_path, ["plugin_pool.py"], ("plain_pool",))
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--jobs", "2", "--quiet", "--no-report"]) == 0
    records = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    assert len(records) == 2 and {r["status"] for r in records} == {"complete"}
    assert records[0]["components"]["method"]["display"] == "Plain pool"
    assert records[0]["components"]["method"]["origin"].startswith("plugin ")


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_installed_packages_announce_plugins_through_the_entry_point_group(tmp_path: Path) -> None:
    """A real distribution on the path (its dist-info with `entry_points.txt`), found by importlib.metadata."""
    (tmp_path / "lab_plugin.py").write_text(PLUGIN.format(tag="ep"))
    dist = tmp_path / "lab_plugin-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-plugin\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[gain_bench.plugins]\nlab = lab_plugin\n")
    (dist / "top_level.txt").write_text("lab_plugin\n")
    done = _run(
        "from benchmark.core.registry import METHODS; e = METHODS.entry('plain_ep'); print(e.origin.identity)",
        PYTHONPATH=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "lab_plugin==1.2.3"


def test_the_example_plugin_comes_from_outside_the_package() -> None:
    done = _run(
        """
        from benchmark.execute import suites
        from benchmark.core.registry import DATASETS, METHODS, MODELS
        suite = suites.load("examples/harbour.toml")
        for registry, name in ((METHODS, "outside_energy"), (MODELS, "shufflenet_small"), (DATASETS, "harbour-csv")):
            entry = registry.entry(name)
            code = entry.obj.load if registry is DATASETS else entry.obj
            assert entry.origin.kind == "plugin" and code.__module__.startswith("harbour_lab."), entry
        print(len(suite.runs()))
        """,
        PYTHONPATH=str(ROOT / "examples"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6"


def test_registries_are_the_built_ins_in_their_order() -> None:
    assert list(METHODS)[:3] == ["gradcam", "gain", "gain_ext"]
    assert {"small_cnn", "resnet18", "resnet50", "vgg16"} <= set(MODELS)


@pytest.mark.slow
def test_a_report_renders_where_the_suite_plugin_is_not_installed(tmp_path: Path) -> None:
    """The results folder is enough: another machine without the plugin renders the report (names and colours from
    the folder), skipping only the post-run steps that need the plugin."""
    plugin = _plugin(tmp_path, "away")
    suite = _suite(tmp_path, ["plugin_away.py"], ("gradcam", "plain_away"))
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--quiet", "--no-report"]) == 0
    plugin.unlink()  # "another machine": the plugin file is gone; this process must not use what it imported
    code = f"from benchmark.cli import main; raise SystemExit(main(['report', {str(out)!r}]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "post-run steps were skipped" in done.stderr and "no such file" in done.stderr
    assert "Plain away" in (out / "index.html").read_text(), "the plugin's display name, from the folder"
