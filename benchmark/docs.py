"""The repository's documentation, kept true by a command: `gain-bench docs` rewrites what is generated, and
`gain-bench docs --check` (run by .ci/run) fails when a page is out of step with the code or its results.

What it keeps:

- **Generated pages and blocks.** `docs/suite-reference.md` is the settings schema's reference. A block between
  `<!-- generated: NAME -->` and `<!-- end generated: SEAL -->` holds the output of NAME: one of `GENERATORS`
  (`bench-time`, `ci-times`, `perf-threshold`, `methods`, `metrics`, `paper-table4`, `paper-segmentation`,
  `selection-rules`; the first three from the measurements their scripts record) or a `gain-bench table DIR ...
  --markdown` command run on a results folder. SEAL is the first 12 hex digits of the block's SHA-256, so a table
  edited by hand no longer matches its seal, even where its results folder is not at hand (a fresh clone: `reports/`
  is not tracked).
- **Links.** Every relative link and image of every page resolves to a file, and an anchor to a heading of it.
- **Commands.** Every `gain-bench ...` command shown in a page's code parses with the command line's own parser, and
  a `gain-bench run` command's suite loads with its `--set`, `--seeds`, `--only` and plugins. A synopsis (a command
  with placeholders such as `DIR`, `M`, `[--set ...]` or `...`) is left alone.
- **Numbers.** A decimal in the prose of the README's headline, a findings page or a `docs/` page is one its
  generated blocks print (`number_problems`): results are quoted, not typed; settings go in code spans, and a cited
  section, arXiv id or software version is not a result (`CITED`). `NUMBERS_NOT_YET` names a page not covered yet,
  and why. A findings page's claims are evaluated against its results folder where it is here.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import os
import pickle
import re
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from benchmark import cli
from benchmark.analyse.claims import FAILS, HOLDS, ClaimError, Result, declared, evaluate, has_claims
from benchmark.analyse.report.verdict import PAPER_TABLE4
from benchmark.commands import suite_of
from benchmark.core.label_costs import costs_table
from benchmark.core.metric_defs import metrics
from benchmark.core.plugins import BUILTIN
from benchmark.core.selection_rules import RULES
from benchmark.core.settings import reference
from benchmark.execute.methods import METHODS
from benchmark.execute.methods.base import BUDGET_WORDS

PAGE_GLOBS = ("README.md", "docs/**/*.md", "findings/**/*.md", "reports/README.md", "datasets/README.md",
              "examples/**/*.md", "measurements/**/*.md")
GENERATED_PAGES: dict[str, Callable[[], str]] = {"docs/suite-reference.md": reference}
BLOCK = re.compile(
    r"<!-- generated: (?P<name>[^\n]+?) -->\n(?P<body>(?:(?!<!-- generated:).)*?)"
    r"<!-- end generated:\s*(?P<seal>[0-9a-f]*)\s*-->",
    re.DOTALL,
)
READ_COMMANDS = ("table", "curves", "compare", "claims")  # a results block's commands: they read results folders
FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)
LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(<?(?P<target>(?:[^()\s<>]|\([^()\s]*\))+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\)"
)
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(?P<target>\S+?)>?(?:\s|$)", re.MULTILINE)
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "&"}
PLACEHOLDER = re.compile(r"^(\.\.\.|[A-Z][A-Z0-9_]*|<.*>|\[.*|.*\.\.\.\]?)$")


def methods_reference() -> str:
    """Every built-in method's hyperparameters: default, search distribution and meaning (`HParams`)."""
    lines = []
    for entry in METHODS.entries():
        if str(entry.origin) != BUILTIN:  # a plugin loaded in this process is not the package's
            continue
        name, cls = entry.name, entry.obj
        uses = BUDGET_WORDS[cls.budget_labels]
        lines += ["", f"**`{name}`** ({uses})", ""]
        if not cls.HPARAMS:
            lines.append("No hyperparameters of its own.")
            continue
        lines += ["| parameter | default | search | meaning |", "|---|---|---|---|"]
        lines += [f"| `{key}` | `{h.default!r}` | {h.describe()} | {h.doc} |" for key, h in cls.HPARAMS.items()]
    return "\n".join(lines[1:]) + "\n"


def metrics_reference() -> str:
    """Every metric the tables and the report show: its definition, the splits it reads, its direction and test."""
    lines = ["| metric | label in the report | definition | splits read | better | per image |", "|---" * 6 + "|"]
    for m in (m for m in metrics() if not m.declared_only):
        column = f" `{m.column}`" if m.column else ""
        per_image = f"0/1{column} (McNemar)" if m.binary else column.strip() or "—"
        label = m.label.format(cls="boat", context="water")
        roles = ", ".join(f"`{r}`" for r in m.roles)
        better = "higher" if m.higher_is_better else "lower"
        lines.append(f"| `{m.name}` | {label} | {m.definition} | {roles} | {better} | {per_image} |")
    return "\n".join(lines) + "\n"


def rules_reference() -> str:
    """The selection rules a searched suite may name (`selection_rules.RULES`)."""
    lines = ["| rule | chooses by | splits read | reported as |", "|---|---|---|---|"]
    for name, rule in RULES.items():
        reported = "an upper bound, never a result" if rule.upper_bound else "a result"
        roles = ", ".join(f"`{r}` (held out)" for r in rule.roles)
        lines.append(f"| `{name}` | {rule.doc} (`{rule.metric}`) | {roles} | {reported} |")
    return "\n".join(lines) + "\n"


def paper_table() -> str:
    """The paper's Table 4, as the report shows it beside a suite's numbers (`verdict.PAPER_TABLE4`)."""
    columns = PAPER_TABLE4["columns"]
    lines = [f"| test set | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | {' | '.join(f'{v:.0%}' for v in values)} |" for name, values in PAPER_TABLE4["rows"]]
    return "\n".join([*lines, "", f"Source: {PAPER_TABLE4['source']}."]) + "\n"


PAPER_SEGMENTATION: dict[str, Any] = {
    "rows": [("SEC", None, 50.7, 51.7), ("GAIN", None, 55.3, 56.8), ("GAIN_ext", 200, 58.3, 59.6),
             ("GAIN_ext", 1464, 60.5, 62.1)],
    "source": "Li et al., CVPR 2018, the weakly-supervised segmentation table: VOC 2012 val / test mIoU from 10K "
    "image-level labels",
}  # fmt: skip
"""The paper's segmentation results that set the suite's larger pixel-label budgets (200, 1464)."""


def paper_segmentation() -> str:
    """The paper's segmentation table (`PAPER_SEGMENTATION`) as Markdown."""
    lines = ["| method | pixel-labelled images | val mIoU | test mIoU |", "|---|---|---|---|"]
    lines += [f"| {name} | {n if n else '-'} | {val:.1f} | {test:.1f} |" for name, n, val, test in
              PAPER_SEGMENTATION["rows"]]  # fmt: skip
    return "\n".join([*lines, "", f"Source: {PAPER_SEGMENTATION['source']}."]) + "\n"


REPOSITORY = Path(__file__).resolve().parents[1]  # the checkout the package runs from: its measurements/
MEASUREMENTS = REPOSITORY / "measurements"
WORKFLOW = REPOSITORY / "examples" / "ci" / "github-actions.yml"


def _measured(name: str) -> dict[str, Any] | None:
    """A measurement a script recorded (`measurements/<name>`), None where it has not run yet."""
    path = MEASUREMENTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _not_measured(script: str) -> str:
    return f"(not measured yet: `python {script}`)\n"


def bench_time() -> str:
    """What `tox -e bench` took from a fresh clone, as `scripts/time_bench.py` measured and recorded it."""
    if (m := _measured("tox-bench.json")) is None:
        return _not_measured("scripts/time_bench.py")
    machine = m["machine"]
    return (
        f"From a fresh clone on a {machine['cores']}-core machine ({machine['cpu']}), `{m['command']}` took "
        f"{m['wall_s']:.0f} s to the report at commit `{m['commit']}`, {m['tox_setup_s']:.0f} s of it tox's setup "
        f"(installing PyTorch, pip's cache warm; minutes more where it is cold) and {m['tox_command_s']:.0f} s the "
        f"suite's {m['runs']} runs with their data, pre-training and report (`python scripts/time_bench.py`, "
        f"{m['measured'][:10]}; the log's first lines are in `measurements/tox-bench.json`).\n"
    )


def ci_times() -> str:
    """How long each step of the example GitHub workflow took, as `scripts/ci_steps.py --record` measured it."""
    if (m := _measured("ci-steps.json")) is None:
        return _not_measured("scripts/ci_steps.py --record")
    lines = ["| step | seconds |", "|---|---|"]
    lines += [f"| {s['name']} | {s['seconds']:.1f} |" for s in m["steps"]]
    lines += ["", f"The steps after the install, on a {m['cores']}-core machine at commit `{m['commit']}` with an "
              f"empty data root (`python scripts/ci_steps.py --record`, {m['measured'][:10]}). The install step is "
              "not timed here: on a hosted runner it is mostly PyTorch's CPU-only wheel, cached by `setup-python`."]
    return "\n".join(lines) + "\n"


def perf_threshold() -> str:
    """The regression threshold of the example workflow's throughput job, and the noise it is set against."""
    found = re.search(r"--benchmark-compare-fail=mean:(\d+)%", WORKFLOW.read_text())
    if found is None or (m := _measured("perf-noise.json")) is None:
        return _not_measured("scripts/perf_noise.py")
    threshold, noise = int(found[1]), 100 * m["largest_spread"]
    return (
        f"Over {m['runs']} runs of the same code (commit `{m['commit']}`) on a {m['cores']}-core machine, a paired "
        f"benchmark's mean (`-k {m['keywords']}`) moved by up to {noise:.1f}% (`python scripts/perf_noise.py`, "
        f"{m['measured'][:10]}). The "
        f"example workflow fails a pull request whose benchmark mean is more than {threshold}% slower than main's "
        f"(`--benchmark-compare-fail=mean:{threshold}%`), {threshold / noise:.1f} times that noise.\n"
    )


PAIRED_FIGURES = {  # extra_info key of a paired benchmark -> what its figure is (tests/perf)
    "speedup_over_pytorch-grad-cam": "gain-bench's Grad-CAM throughput over pytorch-grad-cam's",
    "speedup_over_captum": "gain-bench's Grad-CAM throughput over captum's `LayerGradCam` + interpolate",
    "gain_step_ratio": "GAIN step / baseline step",
    "gain_ext_step_ratio": "GAIN_ext step / baseline step",
    "floor_step_ratio": "floor step / baseline step",
    "gain exact_gradient_step_ratio": "`exact_gradient` / GAIN's default step",
    "gain masked_bn=batch_step_ratio": "`masked_bn = \"batch\"` / GAIN's default step",
    "gain masked_bn=train_step_ratio": "`masked_bn = \"train\"` / GAIN's default step",
}
PAIRED_SETTINGS = {  # a paired benchmark's pytest id -> its model, input and batch
    "test_gradcam_ratios[cpu]": "ResNet-18, 224 px, batch 16",
    "test_train_step_ratios[random]": "small CNN, 48 px, batch 64 of random images, a third with two labels",
    "test_train_step_ratios[built-in]": "small CNN, 48 px, batch 64 of the built-in data, all pixel-labelled",
    "test_gain_variant_step_ratios": "small CNN, 48 px, the built-in batch",
}


STEP_TARGETS = {"gain_step_ratio": 2.4, "gain_ext_step_ratio": 2.5}
"""The step ratios (a step's time over the baseline step's) the project holds GAIN and GAIN_ext to on the CPU."""


def throughput_cpu() -> str:
    """The paired micro-benchmarks' ratios over the runs `scripts/perf_noise.py` recorded: each figure's median and
    range, how many runs met its target, and GAIN's distance to its floor step, with where they ran."""
    m = _measured("perf-noise.json")
    if m is None or "extra_info" not in m:
        return _not_measured("scripts/perf_noise.py")
    lines = ["| benchmark | figure | median | range over the runs | target: runs at or under it |",
             "|---|---|---|---|---|"]
    for name, runs in m["extra_info"].items():
        setting = PAIRED_SETTINGS.get(name.split("::")[-1], name.split("::")[-1])
        erased = sorted({r["erased_images"] for r in runs if "erased_images" in r})
        setting += f", {erased[0]} erased images" if erased else ""
        figures = {key: [r[key] for r in runs if key in r] for key in PAIRED_FIGURES}
        if figures["gain_step_ratio"] and figures["floor_step_ratio"]:
            figures["gain_over_floor"] = [r["gain_step_ratio"] - r["floor_step_ratio"] for r in runs]
        for key, values in figures.items():
            if not values or all(v == 1.0 for v in values):  # absent, or the reference itself
                continue
            target = STEP_TARGETS.get(key)
            met = f"≤ {target}×: {sum(v <= target for v in values)} of {len(values)}" if target else ""
            unit = " baseline steps" if key == "gain_over_floor" else "×"
            label = PAIRED_FIGURES.get(key, "GAIN step − floor step")
            lines.append(f"| {setting} | {label} | {statistics.median(values):.2f}{unit} | "
                         f"{min(values):.2f} to {max(values):.2f}{unit} | {met} |")
    lines += ["", f"{m['runs']} runs of `pytest tests/perf --benchmark-only -k {m['keywords']}` at commit "
              f"`{m['commit']}` on a {m['cores']}-core machine, {m.get('threads', m['cores'])} threads "
              f"(`python scripts/perf_noise.py --runs {m['runs']}`, {m['measured'][:10]}; every run's figures are in "
              "`measurements/perf-noise.json`)."]
    return "\n".join(lines) + "\n"


PEERS_LINE = re.compile(r"^Grad-CAM .*\(CUDA\).*$", re.MULTILINE)


def throughput_gpu() -> str:
    """The VGG-16 training steps and Grad-CAM inference `scripts/gpu_check.py` timed on a GPU, from the latest
    `measurements/<date>-<device>/`: images/s and the ratio to the baseline step, per precision and memory format,
    and the Grad-CAM peers' paired ratios where that folder kept their log."""
    found = sorted(MEASUREMENTS.glob("*/gpu_check.json"))
    if not found:
        return _not_measured("scripts/gpu_check.py")
    folder = found[-1].parent
    rows = [r for f in sorted(folder.glob("gpu_check*.json")) for r in json.loads(f.read_text())["rows"]]
    first = rows[0]
    same = [r for r in rows if (r["model"], r["batch_size"]) == (first["model"], first["batch_size"])]
    lines = [f"| {first['model']}, {first['image_size'][0]} px, batch {first['batch_size']} | baseline | GAIN | "
             "GAIN_ext |", "|---|---|---|---|"]
    for precision, channels_last in dict.fromkeys((r["precision"], r["channels_last"]) for r in same):
        cells = {r["method"]: r for r in same if (r["precision"], r["channels_last"]) == (precision, channels_last)}
        figure = [f"{cells[m]['train_images_per_s']:.0f}" + ("" if m == "gradcam" else
                  f" ({cells[m]['train_step_ratio_to_gradcam']:.2f}×)") for m in ("gradcam", "gain", "gain_ext")
                  if m in cells]  # fmt: skip
        lines.append(f"| {precision}{', channels_last' if channels_last else ''} | " + " | ".join(figure) + " |")
    attention = [r["attention_images_per_s"] for r in same]
    lines += ["", f"Training images/s (the step's time over the baseline's in brackets) on one "
              f"{first['device_name']}, methods interleaved over {first['iterations']} rounds; Grad-CAM inference "
              f"on the same model {min(attention):.0f} to {max(attention):.0f} images/s "
              f"(`{folder.relative_to(REPOSITORY)}/`)."]
    peers = folder / "pytest_cuda_peers.log"
    if peers.is_file() and (line := PEERS_LINE.search(peers.read_text())):
        lines += ["", f"The Grad-CAM peers on the same card (`{peers.name}`): {line[0].strip()}."]
    return "\n".join(lines) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "bench-time": bench_time,
    "ci-times": ci_times,
    "perf-threshold": perf_threshold,
    "label-costs": costs_table,
    "throughput-cpu": throughput_cpu,
    "throughput-gpu": throughput_gpu,
    "methods": methods_reference,
    "metrics": metrics_reference,
    "paper-table4": paper_table,
    "paper-segmentation": paper_segmentation,
    "selection-rules": rules_reference,
}


def seal(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class Block:
    page: Path
    name: str
    body: str
    seal: str

    @property
    def where(self) -> str:
        return f"{self.page}: generated block {self.name!r}"


def pages(root: Path) -> list[Path]:
    """The Markdown pages the check reads, relative to `root`."""
    found = {p.relative_to(root) for pattern in PAGE_GLOBS for p in root.glob(pattern) if p.is_file()}
    return sorted(found)


def blocks(root: Path, page: Path, text: str | None = None) -> list[Block]:
    """The generated blocks of `page` (of `text`, where the page has been read already)."""
    text = (root / page).read_text() if text is None else text
    return [Block(page, m["name"], m["body"], m["seal"]) for m in BLOCK.finditer(text)]


SCRIPTS = ("scripts/bn_reestimate.py",)  # scripts whose output a block may hold: they read a results folder, first


def results_command(name: str) -> list[str] | None:
    """The command line of a block named by a command that reads results folders (`gain-bench table|curves|compare
    ...`, or `python <one of SCRIPTS> FOLDER ...`), else None."""
    argv = shlex.split(name)
    if len(argv) > 2 and argv[0] == "gain-bench" and argv[1] in READ_COMMANDS:
        return argv
    if len(argv) > 2 and argv[0] == "python" and argv[1] in SCRIPTS:
        return argv
    return None


def _folders(argv: list[str], root: Path = Path(".")) -> list[str]:
    if argv[0] == "python":
        return [argv[2]]
    args = cli.build_parser().parse_args(argv[1:])
    if args.command == "claims":  # the folders the pages' claims name
        return [str(declared(page, root).folder) for page in args.pages]
    return [str(d) for d in (args.dirs if hasattr(args, "dirs") else (args.first, args.second))]


def _output(root: Path, argv: list[str]) -> tuple[int, str, str]:
    if argv[0] == "python":
        done = subprocess.run([sys.executable, *argv[1:]], cwd=root, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv[1:])
    return status, out.getvalue(), err.getvalue()


def render_block(root: Path, name: str) -> str | None:
    """A block's body now: a generator's output, or a results command's output where all its results folders are
    in `root` (Markdown as printed with `--markdown`, else in a code fence), None where they are not."""
    if name in GENERATORS:
        return GENERATORS[name]()
    argv = results_command(name)
    if argv is None:
        allowed = f"'gain-bench {'|'.join(READ_COMMANDS)} ...' or 'python {'|'.join(SCRIPTS)} ...'"
        raise ValueError(f"unknown generator {name!r}: one of {', '.join(GENERATORS)}, or {allowed}")
    if not all((root / d / "runs").is_dir() for d in _folders(argv, root)):
        return None
    status, out, err = _output(root, argv)
    if status != 0:
        raise ValueError(f"{name!r} failed: {err.strip()}")
    return out if "--markdown" in argv else f"```\n{out}```\n"


def refresh(root: Path, tables: bool = True, only: list[Path] | None = None) -> list[Path]:
    """Rewrite every generated page and block (results blocks only with `tables` and where their results folders
    are here), or those of the pages `only`; returns the pages that changed."""
    changed = []
    for page, make in GENERATED_PAGES.items():
        if only is None or Path(page) in only:
            if (root / page).read_text() != (text := make()):
                (root / page).write_text(text)
                changed.append(Path(page))
    for page in pages(root) if only is None else only:
        text = (root / page).read_text()
        if unclosed(text):
            raise ValueError(f"{page}: a generated block without its end marker; add it, then run this again")

        def body(match: re.Match[str]) -> str:
            """The block rendered anew and sealed; left exactly as it is (seal included) where it cannot be
            rendered here, so a hand edit is never sealed."""
            name = match["name"]
            new = None if results_command(name) is not None and not tables else render_block(root, name)
            if new is None:
                return match.group(0)
            return f"<!-- generated: {name} -->\n{new}<!-- end generated: {seal(new)} -->"

        if (new_text := BLOCK.sub(body, text)) != text:
            (root / page).write_text(new_text)
            changed.append(page)
    return changed


def unclosed(text: str) -> bool:
    """Whether a page opens more generated blocks than it closes."""
    return text.count("<!-- generated:") != len(BLOCK.findall(text))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: its rendered text (links, emphasis and code marks gone), lower case, without
    punctuation but `-` and `_`, spaces as `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    text = re.sub(r"(?<![\w`])[*_]+|[*_]+(?![\w`])", "", text.replace("`", ""))
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page: its ATX and setext headings (a repeated one gets `-1`, `-2`, ..., skipping
    any already taken) and HTML `id`/`name` attributes."""
    out: set[str] = set()
    lines = FENCE.sub("", text).splitlines()
    headings = [m[1] for line in lines if (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line))]
    headings += [a for a, b in itertools.pairwise(lines) if a.strip() and re.fullmatch(r"(=+|-+)\s*", b)
                 and not re.match(r"^\s*([-*+]|\d+\.|#|\|)", a)]
    for heading in headings:
        slug, n = _slug(heading), 0
        while (candidate := slug if n == 0 else f"{slug}-{n}") in out:
            n += 1
        out.add(candidate)
    return out | set(re.findall(r"<[a-z]+[^>]*\b(?:id|name)=[\"']([^\"']+)[\"']", text))


def control_problems(page: Path, text: str) -> list[str]:
    """Control characters in a page (a tab and a line end aside): what a "\\f" or "\\a" written into a Python
    string leaves of a LaTeX "\\frac" or "\\alpha"."""
    found = [(n, ch) for n, line in enumerate(text.split("\n"), 1) for ch in line if ord(ch) < 32 and ch not in "\t\r"]
    return [f"{page}:{n}: control character {ord(ch):#04x} (an escape sequence where a backslash was meant?)"
            for n, ch in found[:3]]  # fmt: skip


def link_problems(root: Path, page: Path, text: str, anchors_of: Callable[[Path], set[str]]) -> list[str]:
    """Relative links, images and reference definitions of a page whose file, or heading (`anchors_of` a file), is
    not there (a link starting with `/` is from the repository's root, as on its web page)."""
    prose = re.sub(r"<!--.*?-->", "", CODE_SPAN.sub("", FENCE.sub("", text)), flags=re.DOTALL)
    targets = [m["target"] for m in LINK.finditer(prose)] + [m["target"] for m in REFERENCE.finditer(prose)]
    targets += re.findall(r"<(?:img|a)\b[^>]*\b(?:src|href)=[\"']([^\"']+)[\"']", prose)
    problems = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        path, anchor = unquote(path.partition("?")[0]), unquote(anchor)
        file = root / path.lstrip("/") if path.startswith("/") else (root / page).parent / path if path else root / page
        if not file.exists():
            problems.append(f"{page}: link to {target!r}: {path} does not exist")
        elif anchor and file.suffix == ".md" and anchor not in anchors_of(file.resolve()):
            problems.append(f"{page}: link to {target!r}: no heading with the anchor #{anchor} in {path or page}")
    return problems


def commands(text: str) -> list[tuple[str, bool]]:
    """The `gain-bench ...` commands a page shows, each with whether it is a whole command: the lines of its code
    blocks (a line ending in a backslash continued as the shell does), and its inline code spans, which may also
    name a command or one of its options in passing (`gain-bench train --data`)."""
    found = []
    for block in FENCE.finditer(text):
        found += [(line.strip().removeprefix("$ "), True) for line in block.group(0).replace("\\\n", "").splitlines()]
    found += [(m[2].strip(), False) for m in CODE_SPAN.finditer(FENCE.sub("", text))]
    out = []
    for line, whole in found:  # `a && gain-bench ...`, `cd x; gain-bench ...`: every command of the line
        for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
            part = re.sub(r"^(time|env|nice(\s+-n\s*-?\d+)?)\s+", "", part.strip())
            if re.match(r"^([A-Za-z_][A-Za-z0-9_]*=\S+\s+)*gain-bench\s", part):
                out.append((part, whole))
    return out


def shown_files(text: str) -> set[str]:
    """Files a page shows in full: code blocks whose first line is a comment naming them (`# my-study.toml`)."""
    return {m[1] for m in re.finditer(r"^(?:```|~~~)\w*\n#\s*(\S+\.\w+)\s*$", text, re.MULTILINE)}


def _argv(command: str) -> tuple[dict[str, str], list[str]] | None:
    """(environment prefix, arguments after `gain-bench`), or None for a synopsis with placeholders."""
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:
        return None
    env = {}
    while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        env[key] = value
    argv = []
    for token in tokens[1:]:
        if token in SHELL_OPERATORS or re.match(r"^\d?>", token):  # a redirection ends the arguments
            break
        argv.append(token)
    if any(PLACEHOLDER.match(t) for t in argv):
        return None
    return env, argv


PARTIAL = ("the following arguments are required", "expected one argument")


def command_problem(
    root: Path, page: Path, command: str, whole: bool = True, shown: frozenset[str] | set[str] = frozenset()
) -> str | None:
    """Why a shown command would not run as shown, or None. Of a command named in passing (not `whole`), missing
    arguments are allowed; a suite file the page shows (in `shown`) is the reader's, so only its command is parsed."""
    parsed = _argv(command)
    if parsed is None:
        return None
    env, argv = parsed
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = cli.build_parser().parse_args(argv)
    except SystemExit as exit:
        message = err.getvalue().strip().splitlines()[-1] if exit.code else ""
        if not message or (not whole and any(p in message for p in PARTIAL)):
            return None
        return f"{page}: `{command}` does not parse: {message}"
    if args.command != "run" or args.suite in shown:
        return None
    error = _suite_error(root, args, env)
    return f"{page}: `{command}`: {error}" if error else None


def _load_suite(args: argparse.Namespace) -> str | None:
    """Load a `run` command's suite as `gain-bench run` does (`commands.suite_of`); the error it would print, or
    None."""
    try:
        suite_of(args)
    except Exception as err:  # whatever `gain-bench run` would stop on is the page's problem, not the check's
        return str(err) or type(err).__name__
    return None


def _suite_error(root: Path, args: argparse.Namespace, env: dict[str, str]) -> str | None:
    """`_load_suite` in this process, or, for a command that loads plugins (an import path or `--plugin`), in a
    child process, so that what the plugins register does not stay behind in this one."""
    if not env and not args.plugin:
        with contextlib.chdir(root):
            return _load_suite(args)
    code = (
        "import sys, pickle; from benchmark.docs import _load_suite; "
        "print(_load_suite(pickle.loads(sys.stdin.buffer.read())) or '', end='')"
    )
    paths = [str(root / p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] + sys.path
    done = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(args), capture_output=True, cwd=root, timeout=300,
        env=os.environ | env | {"PYTHONPATH": os.pathsep.join(paths)}, check=False,
    )
    return done.stdout.decode().strip() or (done.stderr.decode().strip().splitlines() or [None])[-1]


NUMBER = re.compile(r"(?<![\w.])[+\-−±]?(\d+\.\d+)(?![\w]|\.\d)")
NUMBERS_FROM_RESULTS = ("README.md", "findings/", "docs/")  # pages whose prose quotes only numbers their blocks print
NUMBERS_NOT_YET: dict[str, str] = {}
"""Pages the numbers rule does not cover yet, each with the reason (`gain-bench docs --check` says it)."""
CITED = re.compile(r"\b(?:sec\.|secs\.|arXiv|Python|torch|CUDA|version|v)\s?(?:≥\s?)?\d+(?:\.\d+)+")
"""A section of a cited work, an arXiv id or a software version: a reference, not a result."""
HEADLINE = "## The headline"  # the README's section that quotes the findings


def prose(text: str) -> str:
    """A page less its generated blocks, code, HTML comments and link targets: what its author typed."""
    text = BLOCK.sub("", text)
    text = re.sub(r"<!--.*?-->", "", FENCE.sub("", text), flags=re.DOTALL)
    return re.sub(r"\]\([^)]*\)", "]", CODE_SPAN.sub("", text))


def number_problems(root: Path, page: Path, text: str, printed: str) -> list[str]:
    """Decimal numbers in a finding's prose (or the README's headline section) that no generated block prints: a
    finding quotes its results (`printed`, what its blocks hold; for the README, every finding's), it does not retype
    them. A signed number (+0.096, −0.096) must be printed with that sign; settings belong in code spans."""
    if page == Path("README.md"):
        if HEADLINE not in text:
            if not (root / "findings").is_dir():
                return []
            return [f"README.md: no {HEADLINE!r} section (the numbers it quotes from the findings are checked there)"]
        text = headline_section(text)
    typed = sorted({_signed(m.group(0)) for m in NUMBER.finditer(CITED.sub("", prose(text)))} - _quoted(printed))
    return [f"{page}: {n} is not printed by any of its generated blocks (quote the results, or put a setting in "
            f"`code`)" for n in typed]


def headline_section(text: str) -> str:
    """The README's headline section ("" where it has none)."""
    return text.split(HEADLINE, 1)[1].split("\n## ", 1)[0] if HEADLINE in text else ""


def _signed(number: str) -> str:
    return number.replace("−", "-").removeprefix("±")


def _quoted(printed: str) -> set[str]:
    """Every decimal the blocks' tables print (not their provenance lines), unsigned and with its sign, and its
    shorter forms, cut or rounded half up (0.925 may be quoted as 0.92 or 0.93)."""
    out = set()
    table = "\n".join(line for line in printed.splitlines() if not line.startswith("Runs: "))
    for sign, whole, frac in re.findall(r"([+-]?)(\d+)\.(\d+)", table):  # also where a letter leads: p0.016
        value = Decimal(f"{whole}.{frac}")
        forms = {f"{whole}.{frac[:k]}" for k in range(1, len(frac) + 1)}
        forms |= {str(value.quantize(Decimal(1).scaleb(-k), rounding=ROUND_HALF_UP)) for k in range(1, len(frac))}
        out |= forms | {sign + f for f in forms}
    return out


CLAIM_REFERENCE = re.compile(r"claim (?P<page>[\w.-]+)/(?P<id>[\w.-]+)")
"""How a sentence of the README's headline or of findings/README.md cites the claim behind it, in a code span:
`claim verdict/gain-water` is claim `gain-water` of findings/verdict.md."""
CLAIMED_PAGES = ("README.md", "findings/README.md")


def claim_problems(root: Path, page: Path, text: str, evaluated: dict[Path, list[Result]] | None = None) -> list[str]:
    """The claims a page cites (`CLAIM_REFERENCE`) that its findings page does not declare, or that do not hold on a
    results folder that is here; on the README, also each headline bullet that cites no claim. Every page that
    declares claims has them evaluated where its folder is here, and a claim that fails is a problem anywhere."""
    problems = []
    evaluated = {} if evaluated is None else evaluated  # a page's claims are evaluated once per check

    def results_of(target: Path) -> list[Result]:
        if target not in evaluated:
            evaluated[target] = evaluate(target, root, n_resamples=500)
        return evaluated[target]

    if has_claims(text):
        try:
            results = results_of(page)
        except ClaimError as err:
            return [str(err)]
        problems += [f"{page}: claim {r.claim.id!r} {'fails' if r.status == FAILS else 'holds, recorded as failing,'} "
                     f"on its results folder: {r.line()}" for r in results if r.unexpected]  # fmt: skip
    if str(page) not in CLAIMED_PAGES:
        return problems
    section = headline_section(text) if page == Path("README.md") else text
    cited = [m for span in CODE_SPAN.finditer(section) for m in CLAIM_REFERENCE.finditer(span[2])]
    by_page: dict[str, dict[str, str]] = {}
    for m in cited:
        target = Path("findings") / f"{m['page']}.md"
        if m["page"] not in by_page:
            try:
                found = results_of(target) if (root / target).is_file() else []
            except ClaimError as err:
                problems.append(f"{page}: cites {target}, whose claims cannot be read: {err}")
                found = []
            by_page[m["page"]] = {r.claim.id: (r.status, r.reason) for r in found}
        status = by_page[m["page"]].get(m["id"])
        if status is None:
            problems.append(f"{page}: `claim {m['page']}/{m['id']}` is not declared on {target}")
        elif status[0] != HOLDS and "not here" not in status[1]:
            problems.append(f"{page}: `claim {m['page']}/{m['id']}` is cited but {status[0]} ({status[1]})")
    if page == Path("README.md"):
        bullets = [b for b in re.split(r"\n(?=- )", section) if b.startswith("- ")]
        uncited = [b for b in bullets if not any(CLAIM_REFERENCE.search(s[2]) for s in CODE_SPAN.finditer(b))]
        problems += [f"README.md: a headline sentence cites no claim (`claim PAGE/ID`): {b[:70]!r}..." for b in uncited]
    return problems


def tox_environments(root: Path) -> set[str] | None:
    """The environments `tox -e` may name in `root`'s tox.ini; None without one."""
    tox = root / "tox.ini"
    return {"py", *re.findall(r"^\[testenv:([\w.-]+)\]", tox.read_text(), re.MULTILINE)} if tox.is_file() else None


def tox_problems(page: Path, text: str, envs: set[str] | None) -> list[str]:
    """`tox -e NAME` shown in a page's code, where tox.ini (its `envs`) has no such environment."""
    if envs is None:
        return []
    code = "\n".join([*(m.group(0) for m in FENCE.finditer(text)), *(m[2] for m in CODE_SPAN.finditer(text))])
    named = set(re.findall(r"\btox -e ([\w.-]+)", code))
    return [f"{page}: `tox -e {name}`: tox.ini has no such environment ({', '.join(sorted(envs))})"
            for name in sorted(named - envs)]


def block_problem(root: Path, block: Block, tables: bool) -> str | None:
    """What is wrong with a generated block: a name that is no generator or results command that would run, a body
    edited by hand, or (for a generator, or with `tables` a results command whose folders are here) a body that is no
    longer what its name prints."""
    try:
        argv = results_command(block.name)
        if argv is not None and argv[0] == "gain-bench":
            with contextlib.redirect_stderr(err := io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                cli.build_parser().parse_args(argv[1:])
    except SystemExit:
        return f"{block.where}: the command does not parse: {err.getvalue().strip().splitlines()[-1]}"
    except ValueError as error:
        return f"{block.where}: {error}"
    if seal(block.body) != block.seal:
        how = f"`gain-bench docs --tables {block.page}` with its results folder" if argv else "`gain-bench docs`"
        return f"{block.where} was edited by hand (its seal does not match): regenerate it with {how}"
    if argv is not None and not tables:
        return None
    try:
        now = render_block(root, block.name)
    except ValueError as error:
        return f"{block.where}: {error}"
    return f"{block.where} is stale: run `gain-bench docs`" if now is not None and now != block.body else None


# The README's screenshot: the first screen of the quick suite's report, made by `scripts/report_screenshots.py
# REPORT --docs`, which records beside it the commit and the digest of the code that draws that screen.
SCREENSHOT = Path("docs/report.png")
SCREENSHOT_RECORD = Path("docs/report.png.json")
FIRST_SCREEN_CODE = (
    "benchmark/analyse/report/templates/report.html.j2",
    "benchmark/analyse/report/verdict.py",
    "benchmark/analyse/report/build.py",
    "benchmark/analyse/report/views.py",
)


def first_screen_digest(root: Path) -> str:
    """sha256 (first 12 hex digits) of the files that draw the report's first screen (`FIRST_SCREEN_CODE`)."""
    digest = hashlib.sha256()
    for name in FIRST_SCREEN_CODE:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def screenshot_problems(root: Path) -> list[str]:
    """The screenshot is stale when the code that draws the report's first screen changed after it was made."""
    how = "retake it: `python scripts/report_screenshots.py reports/quick/index.html --docs`"
    if not (root / SCREENSHOT).is_file():
        return []
    try:
        made = json.loads((root / SCREENSHOT_RECORD).read_text())
    except (OSError, ValueError):
        return [f"{SCREENSHOT}: no record of what it was made from ({SCREENSHOT_RECORD}); {how}"]
    if made.get("first_screen_code") != first_screen_digest(root):
        return [f"{SCREENSHOT} is older than the code that draws the report's first screen (made at commit "
                f"{str(made.get('commit', '?'))[:12]}; {', '.join(FIRST_SCREEN_CODE)} changed since); {how}"]
    return []


def check(root: Path, tables: bool = False) -> list[str]:
    """Every problem of the documentation under `root`: stale generated pages, blocks whose seal or (`tables`, where
    their results folders are here) whose table no longer matches, broken links, commands that would not run."""
    problems = screenshot_problems(root)
    for page, make in GENERATED_PAGES.items():
        if (root / page).read_text() != make():
            problems.append(f"{page} is stale: run `gain-bench docs`")
    texts = {page: (root / page).read_text() for page in pages(root)}  # every page read once
    found = {page: blocks(root, page, text) for page, text in texts.items()}
    findings = "\n".join(b.body for page, bs in found.items() if str(page).startswith("findings/") for b in bs)
    anchors_of = functools.cache(lambda file: anchors(file.read_text()))
    evaluated: dict[Path, list[Result]] = {}
    envs = tox_environments(root)
    for page, text in texts.items():
        if unclosed(text):
            problems.append(f"{page}: a generated block without its end marker")
        problems += control_problems(page, text)
        problems += [p for block in found[page] if (p := block_problem(root, block, tables))]
        problems += link_problems(root, page, text, anchors_of)
        problems += tox_problems(page, text, envs)
        problems += claim_problems(root, page, text, evaluated)
        if str(page).startswith(NUMBERS_FROM_RESULTS) and str(page) not in NUMBERS_NOT_YET:
            printed = findings if page == Path("README.md") else "\n".join(b.body for b in found[page])
            problems += number_problems(root, page, text, printed)
        shown = shown_files(text)
        problems += [p for c, whole in commands(text) if (p := command_problem(root, page, c, whole, shown))]
    return problems


def cmd_docs(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if args.check:
        problems = check(root, tables=args.tables)
        for problem in problems:
            print(problem, file=sys.stderr)
        for page, why in NUMBERS_NOT_YET.items():
            print(f"docs: note: the numbers rule does not cover {page} yet: {why}", file=sys.stderr)
        print(f"docs: {len(pages(root))} pages checked, {len(problems)} problem(s)")
        return 1 if problems else 0
    changed = refresh(root, tables=args.tables, only=[Path(p) for p in args.pages] or None)
    print(f"docs: {len(changed)} page(s) rewritten{': ' if changed else ''}{', '.join(map(str, changed))}")
    return 0
