"""ImageNet (ILSVRC 2012) validation images with their class boxes as regions.

Layout (the public localisation challenge): ``<root>/imagenet-val/ILSVRC/Data/CLS-LOC/val/*.JPEG``,
``<root>/imagenet-val/LOC_val_solution.csv`` (``ImageId,PredictionString``, the string being
repeated ``wnid xmin ymin xmax ymax`` in 0-based inclusive pixels) and
``<root>/imagenet-val/LOC_synset_mapping.txt`` (``wnid description`` per line, in class-index
order). The region of an image is the union of its boxes of its class, clipped to the image.

A solution row is corrupt (its image is left out as unreadable, the reason naming the line) when
it is not ``wnid xmin ymin xmax ymax`` groups, names an unknown class or has a coordinate that is
no finite number (``inf``, ``nan``). An image id on several rows is left out the same way, the
reason naming every line: no row is preferred to another.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from sidu_bench.data.files import split_regular
from sidu_bench.data.items import (
    REAL_DATA_TOLERANCE,
    FileDataset,
    Preprocessing,
    Record,
    Unreadable,
)
from sidu_bench.data.regions import boxes_mask
from sidu_bench.data.registry import register_dataset
from sidu_bench.domains import NATURAL_IMAGES

LAYOUT = (
    "imagenet-val/ILSVRC/Data/CLS-LOC/val/*.JPEG, imagenet-val/LOC_val_solution.csv and "
    "imagenet-val/LOC_synset_mapping.txt"
)
CLASS_SPACE = "imagenet-1k"


def read_synsets(path: Path) -> dict[str, str]:
    """Read ``LOC_synset_mapping.txt`` as ``{wnid: description}`` in class-index order.

    Raises:
        ValueError: a corrupt line, a repeated wnid, or bytes that are not UTF-8 (the message
            names the file).
    """
    synsets: dict[str, str] = {}
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                wnid, _, description = line.strip().partition(" ")
                if not wnid.startswith("n") or wnid in synsets:
                    where = f"{path}, line {number}"
                    raise ValueError(f"corrupt synset mapping {where}: {line.strip()!r}")
                synsets[wnid] = description
    except UnicodeDecodeError as error:
        raise ValueError(f"corrupt synset mapping {path}: not UTF-8 text ({error})") from error
    return synsets


def read_solution(
    path: Path, synsets: dict[str, str], *, bad_rows: dict[str, str] | None = None
) -> dict[str, tuple[str, torch.Tensor]]:
    """Read ``LOC_val_solution.csv`` as ``{image id: (wnid, boxes [M, 4] of that wnid)}``.

    The image's class is the wnid of its first box; its boxes are all boxes of that wnid. Every
    box's coordinates must be finite numbers, and an image id must be on one row only.

    Args:
        path: the solution file.
        synsets: the class list (:func:`read_synsets`).
        bad_rows: when given, a corrupt row that names an image id, or an image id on several
            rows, is recorded here as ``{image id: reason}`` (the image is then not in the
            result) instead of raising; a bad header or non-UTF-8 bytes always raise.

    Raises:
        ValueError: a bad header, bytes that are not UTF-8, or (when ``bad_rows`` is not given)
            a corrupt row or an image id on several rows; the message names the file.
    """
    solution: dict[str, tuple[str, torch.Tensor]] = {}
    lines: dict[str, list[int]] = {}
    errors: dict[str, str] = {}
    try:
        with path.open(newline="", encoding="utf-8") as rows:
            reader = csv.reader(rows)
            if next(reader, None) != ["ImageId", "PredictionString"]:
                raise ValueError(
                    f"corrupt solution file {path}: header must be ImageId,PredictionString"
                )
            for number, row in enumerate(reader, start=2):
                if row and row[0]:
                    lines.setdefault(row[0], []).append(number)
                try:
                    solution[row[0]] = _solution_row(row, synsets, f"{path}, line {number}")
                except ValueError as error:
                    if bad_rows is None or not row or not row[0]:
                        raise
                    errors[row[0]] = str(error)
    except UnicodeDecodeError as error:
        raise ValueError(f"corrupt solution file {path}: not UTF-8 text ({error})") from error
    for image_id, numbers in lines.items():
        if len(numbers) > 1:
            where = ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"
            reason = f"solution file {path}: image id {image_id} is on several rows (lines {where})"
            if bad_rows is None:
                raise ValueError(reason)
            errors[image_id] = reason
    for image_id, reason in errors.items():
        solution.pop(image_id, None)
        if bad_rows is not None:
            bad_rows[image_id] = reason
    return solution


def _solution_row(row: list[str], synsets: dict[str, str], where: str) -> tuple[str, torch.Tensor]:
    """Parse one ``ImageId,PredictionString`` row as ``(wnid, boxes of that wnid)``.

    Every box of the row (of any class) must have four finite coordinates.
    """
    tokens = row[1].split() if len(row) == 2 else []
    if not tokens or len(tokens) % 5:
        raise ValueError(f"corrupt solution file {where}: {row!r}")
    groups = [tokens[i : i + 5] for i in range(0, len(tokens), 5)]
    wnid = groups[0][0]
    try:
        coordinates = [[float(v) for v in g[1:]] for g in groups]
    except ValueError as error:
        raise ValueError(f"corrupt solution file {where}: {error}") from error
    if not all(math.isfinite(v) for box in coordinates for v in box):
        raise ValueError(f"corrupt solution file {where}: non-finite box coordinates: {row[1]!r}")
    if wnid not in synsets:
        raise ValueError(f"solution file {where}: unknown wnid {wnid}")
    boxes = [box for g, box in zip(groups, coordinates, strict=True) if g[0] == wnid]
    return wnid, torch.tensor(boxes, dtype=torch.float64)


@register_dataset("imagenet-val")
class ImageNetVal(FileDataset):
    """ImageNet validation images present on disk; category = wnid, label = class index."""

    name = "imagenet-val"
    class_space = CLASS_SPACE
    domain = NATURAL_IMAGES
    default_model = "efficientnet_lite0"
    layout = LAYOUT

    def __init__(
        self,
        root: Path | None,
        *,
        preprocessing: Preprocessing,
        tolerance: float = REAL_DATA_TOLERANCE,
    ) -> None:
        base = root / "imagenet-val" if root is not None else None
        if base is None or not (
            (base / "ILSVRC/Data/CLS-LOC/val").is_dir()
            and (base / "LOC_val_solution.csv").is_file()
            and (base / "LOC_synset_mapping.txt").is_file()
        ):
            raise self.missing(root)
        self.descriptions = read_synsets(base / "LOC_synset_mapping.txt")
        solution_file = base / "LOC_val_solution.csv"
        bad_rows: dict[str, str] = {}
        solution = read_solution(solution_file, self.descriptions, bad_rows=bad_rows)
        label_space, labels = preprocessing.labels(
            list(self.descriptions), class_space=self.class_space
        )
        images, others = split_regular(sorted((base / "ILSVRC/Data/CLS-LOC/val").glob("*.JPEG")))
        records = []
        unreadable = [
            Unreadable(image.stem, str(image), f"unreadable image: {reason}")
            for image, reason in others
        ]
        for image in images:
            if image.stem not in solution:
                reason = bad_rows.get(image.stem, f"no row for {image.name}")
                unreadable.append(Unreadable(image.stem, str(solution_file), reason))
                continue
            wnid, boxes = solution[image.stem]
            records.append(Record(image.stem, image, wnid, labels[wnid], boxes))
        if not records and not unreadable:
            raise self.missing(root)
        super().__init__(
            records, preprocessing=preprocessing, tolerance=tolerance, label_space=label_space
        )
        self.unreadable = tuple(unreadable)

    def _region(self, record: Record, size: tuple[int, int]) -> torch.Tensor:
        return boxes_mask(record.annotation, size)
