"""Text cells and grids of the tables' text views: an estimate with its interval, plurals, a fixed-width or
Markdown grid and its blocks that fit a terminal."""

from __future__ import annotations


def interval_cell(mean: float, low: float, high: float, digits: int = 3) -> str:
    """`mean [low, high]`; a value every seed and image gave alike has no interval to show: `mean (constant)`."""
    text = f"{mean:.{digits}f}"
    if f"{low:.{digits}f}" == f"{high:.{digits}f}" == text:
        return f"{text} (constant)"
    return f"{text} [{low:.{digits}f}, {high:.{digits}f}]"


def plural(n: int, word: str) -> str:
    """`1 seed`, `3 seeds`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def grid(rows: list[list[str]], markdown: bool = False) -> list[str]:
    """Rows of cells (the first the header) as fixed-width lines, or as a Markdown table."""
    if markdown:
        lines = [f"| {' | '.join(c.replace('|', chr(92) + '|') for c in r)} |" for r in rows]
        return [lines[0], f"|{'---|' * len(rows[0])}", *lines[1:]]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


TERMINAL_WIDTH = 120  # the text tables' width unless `--wide`


def column_blocks(rows: list[list[str]], width: int | None) -> list[list[list[str]]]:
    """Rows of cells split into blocks of columns, each repeating the first column, so that every line of `grid`
    fits `width` characters (one block where it fits or `width` is None; a column wider than the rest gets a block
    of its own)."""
    if width is None or not rows:
        return [rows]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    blocks: list[list[int]] = []
    used = widths[0]
    for c in range(1, len(widths)):
        if blocks and used + 2 + widths[c] <= width:
            blocks[-1].append(c)
            used += 2 + widths[c]
        else:
            blocks.append([c])
            used = widths[0] + 2 + widths[c]
    return [[[r[0], *(r[c] for c in block)] for r in rows] for block in blocks] or [rows]
