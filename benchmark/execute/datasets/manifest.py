"""Biased splits: the two shifted groups of an audited class and its context ("boat without water" and "water without
boat", the paper's test) from a folder of two sub-folders or from a CSV manifest.

Folder convention: `<dir>/<class>_without_<context>/` and `<dir>/<context>_without_<class>/`, image files directly
inside (.jpg, .jpeg, .png, .bmp, .webp; anything else is ignored). Images of the first hold the class (label: the
class), images of the second show the context without it (no label known, has context).

CSV manifest: header `path,labels,group` plus optional `mask_path`, `context_mask_path` and `id`; `labels` is the
`;`-joined class names of the image, `group` the folder name of its group. Paths are relative to the manifest's
folder and may not leave it (no absolute paths, no `..` above it).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from benchmark.execute.datasets.images import IMAGE_SUFFIXES, DataError, ImageItem

ROLES = ("class_without_context", "context_without_class")
COLUMNS = ("path", "labels", "group", "mask_path", "context_mask_path", "id")
REQUIRED = ("path", "labels", "group")


@dataclass(frozen=True)
class BiasedSplit:
    """The two shifted groups, keyed by role, and the class and context they are about."""

    audited_class: str
    context: str
    groups: dict[str, list[ImageItem]]
    source: str


def _group(name: str, classes: tuple[str, ...], where: str) -> tuple[str, str, str]:
    """(role, class, context) of a group name `<class>_without_<context>` or `<context>_without_<class>`."""
    parts = name.split("_without_")
    if len(parts) == 2 and all(parts):
        first, second = parts
        if first in classes and second not in classes:
            return "class_without_context", first, second
        if second in classes and first not in classes:
            return "context_without_class", second, first
    raise DataError(
        f"{where}: group {name!r} is not <class>_without_<context> or <context>_without_<class> with exactly one "
        "of the two a class of this dataset (e.g. boat_without_water, water_without_boat); classes: "
        + ", ".join(classes)
    )


def _pair(found: dict[str, tuple[str, str]], source: Path) -> tuple[str, str]:
    """The one (class, context) both roles agree on."""
    missing = [role for role in ROLES if role not in found]
    if missing:
        raise DataError(
            f"{source}: no {' and no '.join(missing)} group; a biased split needs both, e.g. boat_without_water and "
            "water_without_boat"
        )
    if found[ROLES[0]] != found[ROLES[1]]:
        (c1, x1), (c2, x2) = found[ROLES[0]], found[ROLES[1]]
        raise DataError(
            f"{source}: the groups disagree: {c1}_without_{x1} and {x2}_without_{c2}; expected "
            f"{c1}_without_{x1} and {x1}_without_{c1}"
        )
    return found[ROLES[0]]


def read_folder(folder: Path, classes: tuple[str, ...]) -> BiasedSplit:
    """The folder convention (see the module's docstring)."""
    groups: dict[str, list[ImageItem]] = {}
    found: dict[str, tuple[str, str]] = {}
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and "_without_" in p.name)
    for sub in subdirs:
        role, cls, context = _group(sub.name, classes, str(sub))
        if role in found:
            raise DataError(f"{folder}: two folders for {role}: {sub.name} and another; keep one")
        found[role] = (cls, context)
        files = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{sub}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
        labels = (classes.index(cls),) if role == "class_without_context" else ()
        groups[role] = [
            ImageItem(
                id=f"{sub.name}/{p.name}",
                image=p,
                labels=labels,
                has_context=role == "context_without_class",
                origin=f"{sub}/",
            )
            for p in files
        ]
    if not subdirs:
        raise DataError(
            f"{folder}: no <class>_without_<context>/ and <context>_without_<class>/ sub-folders "
            "(e.g. boat_without_water/, water_without_boat/)"
        )
    cls, context = _pair(found, folder)
    return BiasedSplit(cls, context, groups, str(folder))


def inside(folder: Path, value: str, where: str) -> Path:
    """`folder / value` for a relative path that stays inside `folder`; anything else is a DataError."""
    norm = os.path.normpath(value)
    if os.path.isabs(value) or norm == ".." or norm.startswith(".." + os.sep):
        raise DataError(
            f"{where}: path {value!r} escapes the manifest's folder {folder}; paths must be relative to it and stay "
            "inside it"
        )
    return folder / norm


def read_manifest(path: Path, classes: tuple[str, ...]) -> BiasedSplit:
    """The CSV manifest (see the module's docstring)."""
    folder = path.parent
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read the manifest ({err})") from None
    unknown = [c for c in header if c not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    if unknown or missing:
        problem = f"unknown column(s) {', '.join(unknown)}" if unknown else f"missing column(s) {', '.join(missing)}"
        optional = ", ".join(c for c in COLUMNS if c not in REQUIRED)
        raise DataError(f"{path}: {problem}; columns: {', '.join(REQUIRED)} (required), {optional} (optional)")
    groups: dict[str, list[ImageItem]] = {role: [] for role in ROLES}
    found: dict[str, tuple[str, str]] = {}
    for line, row in enumerate(rows, start=2):
        where = f"{path} line {line}"
        if not (row.get("path") or "").strip():
            raise DataError(f"{where}: empty path")
        role, cls, context = _group((row["group"] or "").strip(), classes, where)
        if found.setdefault(role, (cls, context)) != (cls, context):
            raise DataError(f"{where}: group {row['group']!r} names another class or context than earlier rows")
        names = [n.strip() for n in (row["labels"] or "").split(";") if n.strip()]
        for name in names:
            if name not in classes:
                raise DataError(f"{where}: unknown class {name!r} in labels; classes: {', '.join(classes)}")
        if (cls in names) != (role == "class_without_context"):
            want = "must hold" if role == "class_without_context" else "may not hold"
            raise DataError(f"{where}: labels {row['labels']!r} {want} {cls!r} in group {row['group']!r}")
        mask = (row.get("mask_path") or "").strip()
        context_mask = (row.get("context_mask_path") or "").strip()
        groups[role].append(
            ImageItem(
                id=(row.get("id") or "").strip() or row["path"].strip(),
                image=inside(folder, row["path"].strip(), where),
                labels=tuple(sorted(classes.index(n) for n in names)),
                mask=inside(folder, mask, where) if mask else None,
                context=inside(folder, context_mask, where) if context_mask else None,
                has_context=role == "context_without_class",
                origin=where,
            )
        )
    cls, context = _pair(found, path)
    return BiasedSplit(cls, context, groups, str(path))


def read_biased_split(path: Path, classes: tuple[str, ...]) -> BiasedSplit:
    """A biased split from a folder (convention) or a `.csv` manifest."""
    if path.is_dir():
        return read_folder(path, classes)
    if path.is_file():
        return read_manifest(path, classes)
    raise DataError(
        f"biased split {path} not found: expected a folder holding <class>_without_<context>/ and "
        "<context>_without_<class>/ (e.g. boat_without_water/, water_without_boat/) or a CSV manifest "
        "(path,labels,group[,mask_path,context_mask_path]); see datasets/README.md"
    )
