"""ImageNet (ILSVRC 2012) validation images with their class boxes as regions.

Layout (the public localisation challenge): ``<root>/imagenet-val/ILSVRC/Data/CLS-LOC/val/*.JPEG``,
``<root>/imagenet-val/LOC_val_solution.csv`` (``ImageId,PredictionString``, the string being
repeated ``wnid xmin ymin xmax ymax`` in 0-based inclusive pixels) and
``<root>/imagenet-val/LOC_synset_mapping.txt`` (``wnid description`` per line, in class-index
order). The region of an image is the union of its boxes of its class, clipped to the image.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

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
    """Read ``LOC_synset_mapping.txt`` as ``{wnid: description}`` in class-index order."""
    synsets: dict[str, str] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            wnid, _, description = line.strip().partition(" ")
            if not wnid.startswith("n") or wnid in synsets:
                raise ValueError(f"corrupt synset mapping {path}, line {number}: {line.strip()!r}")
            synsets[wnid] = description
    return synsets


def read_solution(
    path: Path, synsets: dict[str, str], *, bad_rows: dict[str, str] | None = None
) -> dict[str, tuple[str, torch.Tensor]]:
    """Read ``LOC_val_solution.csv`` as ``{image id: (wnid, boxes [M, 4] of that wnid)}``.

    The image's class is the wnid of its first box; its boxes are all boxes of that wnid.

    Args:
        path: the solution file.
        synsets: the class list (:func:`read_synsets`).
        bad_rows: when given, a corrupt row that names an image id is recorded here as
            ``{image id: reason}`` instead of raising; a bad header always raises.

    Raises:
        ValueError: a bad header, or a corrupt row when ``bad_rows`` is not given.
    """
    solution: dict[str, tuple[str, torch.Tensor]] = {}
    with path.open(newline="", encoding="utf-8") as rows:
        reader = csv.reader(rows)
        if next(reader, None) != ["ImageId", "PredictionString"]:
            raise ValueError(
                f"corrupt solution file {path}: header must be ImageId,PredictionString"
            )
        for number, row in enumerate(reader, start=2):
            try:
                solution[row[0]] = _solution_row(row, synsets, f"{path}, line {number}")
            except ValueError as error:
                if bad_rows is None or not row or not row[0]:
                    raise
                bad_rows[row[0]] = str(error)
    return solution


def _solution_row(row: list[str], synsets: dict[str, str], where: str) -> tuple[str, torch.Tensor]:
    """Parse one ``ImageId,PredictionString`` row as ``(wnid, boxes of that wnid)``."""
    tokens = row[1].split() if len(row) == 2 else []
    if not tokens or len(tokens) % 5:
        raise ValueError(f"corrupt solution file {where}: {row!r}")
    groups = [tokens[i : i + 5] for i in range(0, len(tokens), 5)]
    wnid = groups[0][0]
    try:
        boxes = [[float(v) for v in g[1:]] for g in groups if g[0] == wnid]
    except ValueError as error:
        raise ValueError(f"corrupt solution file {where}: {error}") from error
    if wnid not in synsets:
        raise ValueError(f"solution file {where}: unknown wnid {wnid}")
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
        required = ("ILSVRC/Data/CLS-LOC/val", "LOC_val_solution.csv", "LOC_synset_mapping.txt")
        if base is None or not all((base / name).exists() for name in required):
            raise self.missing(root)
        self.descriptions = read_synsets(base / "LOC_synset_mapping.txt")
        solution_file = base / "LOC_val_solution.csv"
        bad_rows: dict[str, str] = {}
        solution = read_solution(solution_file, self.descriptions, bad_rows=bad_rows)
        label_space, labels = preprocessing.labels(
            list(self.descriptions), class_space=self.class_space
        )
        records = []
        unreadable = []
        for image in sorted((base / "ILSVRC/Data/CLS-LOC/val").glob("*.JPEG")):
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
