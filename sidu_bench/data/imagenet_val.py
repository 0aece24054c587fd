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
from typing import TYPE_CHECKING

import torch

from sidu_bench.data._api import (
    REAL_DATA_TOLERANCE,
    FileDataset,
    Record,
    label_space_labels,
    missing_root,
    register_dataset,
)
from sidu_bench.data.regions import boxes_mask

if TYPE_CHECKING:
    from sidu_bench.models import ModelSpec

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


def read_solution(path: Path, synsets: dict[str, str]) -> dict[str, tuple[str, torch.Tensor]]:
    """Read ``LOC_val_solution.csv`` as ``{image id: (wnid, boxes [M, 4] of that wnid)}``.

    The image's class is the wnid of its first box; its boxes are all boxes of that wnid.
    """
    solution: dict[str, tuple[str, torch.Tensor]] = {}
    with path.open(newline="", encoding="utf-8") as rows:
        reader = csv.reader(rows)
        if next(reader, None) != ["ImageId", "PredictionString"]:
            raise ValueError(
                f"corrupt solution file {path}: header must be ImageId,PredictionString"
            )
        for number, row in enumerate(reader, start=2):
            tokens = row[1].split() if len(row) == 2 else []
            if not tokens or len(tokens) % 5:
                raise ValueError(f"corrupt solution file {path}, line {number}: {row!r}")
            groups = [tokens[i : i + 5] for i in range(0, len(tokens), 5)]
            wnid = groups[0][0]
            try:
                boxes = [[float(v) for v in g[1:]] for g in groups if g[0] == wnid]
            except ValueError as error:
                raise ValueError(f"corrupt solution file {path}, line {number}: {error}") from error
            if wnid not in synsets:
                raise ValueError(f"solution file {path}, line {number}: unknown wnid {wnid}")
            solution[row[0]] = (wnid, torch.tensor(boxes, dtype=torch.float64))
    return solution


@register_dataset("imagenet-val")
class ImageNetVal(FileDataset):
    """ImageNet validation images present on disk; category = wnid, label = class index."""

    name = "imagenet-val"
    class_space = CLASS_SPACE

    def __init__(
        self, root: Path | None, *, model_spec: ModelSpec, tolerance: float = REAL_DATA_TOLERANCE
    ) -> None:
        base = root / "imagenet-val" if root is not None else None
        required = ("ILSVRC/Data/CLS-LOC/val", "LOC_val_solution.csv", "LOC_synset_mapping.txt")
        if base is None or not all((base / name).exists() for name in required):
            raise missing_root(self.name, root, LAYOUT)
        self.descriptions = read_synsets(base / "LOC_synset_mapping.txt")
        solution = read_solution(base / "LOC_val_solution.csv", self.descriptions)
        label_space, labels = label_space_labels(
            list(self.descriptions), class_space=self.class_space, model_spec=model_spec
        )
        records = []
        for image in sorted((base / "ILSVRC/Data/CLS-LOC/val").glob("*.JPEG")):
            if image.stem not in solution:
                raise ValueError(f"{base / 'LOC_val_solution.csv'} has no row for {image.name}")
            wnid, boxes = solution[image.stem]
            records.append(Record(image.stem, image, wnid, labels[wnid], boxes))
        if not records:
            raise missing_root(self.name, root, LAYOUT)
        super().__init__(
            records,
            model_spec=model_spec,
            tolerance=tolerance,
            label_space=label_space,
        )

    def _region(self, record: Record, size: tuple[int, int]) -> torch.Tensor:
        return boxes_mask(record.annotation, size)
