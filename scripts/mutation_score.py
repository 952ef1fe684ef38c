"""The mutation score of each module from mutmut's results (`mutants/**/*.py.meta`), after `tox -e mutation`.

    python scripts/mutation_score.py [mutants]

One line per mutated module: killed (timeouts count as killed), survived, no tests, other, and killed / checked.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

# mutmut 3's exit codes (mutmut/stats.py): 1 and 3 killed; 0 survived; 5 and 33 no tests; 24, 36, 152, 255 timeout
KILLED, SURVIVED, NO_TESTS, TIMEOUT = {1, 3}, {0}, {5, 33}, {24, -24, 36, 152, 255}


def _status(code: int | None) -> str:
    if code in KILLED | TIMEOUT:
        return "killed"
    return "survived" if code in SURVIVED else "no tests" if code in NO_TESTS else "other"


def main(root: Path) -> int:
    metas = sorted(root.rglob("*.py.meta"))
    if not metas:
        print(f"no mutmut results under {root}/ (run `tox -e mutation` first)")
        return 1
    print(f"{'module':<36} {'killed':>7} {'survived':>9} {'no tests':>9} {'other':>6} {'score':>16}")
    for meta in metas:
        codes = list(json.loads(meta.read_text())["exit_code_by_key"].values())
        if all(c is None for c in codes):
            continue  # not run this time
        count = Counter(_status(c) for c in codes)
        total = sum(count.values())
        module = meta.relative_to(root).as_posix().removesuffix(".meta")
        score = f"{count['killed']}/{total} {100 * count['killed'] / total:5.1f}%"
        print(
            f"{module:<36} {count['killed']:>7} {count['survived']:>9} {count['no tests']:>9} {count['other']:>6} "
            f"{score:>16}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "mutants")))
