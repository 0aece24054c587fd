"""Time insertion/deletion per model and dtype against plain batched forwards (for check.sh).

``python tests/gpu/time_insertion_deletion.py --device cuda --out FILE.md`` builds each bench
model (``sidu_bench.bench.cases``: seeded random weights, one seeded input), draws a seeded random
saliency map and times one insertion/deletion call (``2 * steps + 1`` forwards, the chunk size
chosen by the library's policy) at IEEE float32 or under bf16 autocast. Beside it: the same
number of images forwarded plainly in chunks of the same size ("same chunks"), and in batches of
512 ("batch 512"), so that ``ratio = plain seconds / insertion-deletion seconds`` says how close
the metric comes to the forward passes it cannot avoid. Times are the median of ``--repeats``
calls after one warm-up call. Writes a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sidu.engine import forward_context, synchronize
from sidu.precision import fp32_precision
from sidu_bench.bench.cases import build_case
from sidu_bench.metrics import insertion_deletion

DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
PLAIN_BATCH = 512
_metric = importlib.import_module("sidu_bench.metrics.insertion_deletion")


def seconds(call: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``call`` after one warm-up call, synchronising the device."""
    call()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def chunks(count: int, chunk: int) -> list[int]:
    """Sizes of the chunks of ``count`` images at most ``chunk`` each."""
    return [min(chunk, count - start) for start in range(0, count, chunk)]


def plain_forwards(model, image, sizes: list[int]) -> Callable[[], None]:
    """Forward batches of copies of ``image`` of the given ``sizes`` (inputs built beforehand)."""
    batches = {size: image.expand(size, *image.shape[1:]).contiguous() for size in set(sizes)}

    def run() -> None:
        with torch.inference_mode():
            for size in sizes:
                model(batches[size])

    return run


def measure(model_name: str, device: str, dtype_name: str, steps: int, repeats: int) -> dict:
    """One table row."""
    case = build_case(model_name, device, images=1)
    model, image = case.module, case.images[:1]
    size = image.shape[-2:]
    saliency = torch.rand(1, *size, generator=torch.Generator().manual_seed(5)).to(image.device)
    dtype = DTYPES[dtype_name]
    forwards = 2 * steps + 1
    with fp32_precision("ieee"), forward_context(image.device, dtype):
        chunk = _metric._chunk_size(image, None, total=steps, model=model)
        metric = seconds(
            lambda: insertion_deletion(model, image, saliency, steps=steps),
            image.device,
            repeats,
        )
        # the clean image, then the deletion and the insertion pass in chunks of `chunk`
        same_sizes = [1, *chunks(steps, chunk), *chunks(steps, chunk)]
        same = seconds(plain_forwards(model, image, same_sizes), image.device, repeats)
        large_sizes = chunks(forwards, PLAIN_BATCH)
        large = seconds(plain_forwards(model, image, large_sizes), image.device, repeats)
    return {
        "model": model_name,
        "dtype": dtype_name,
        "steps": steps,
        "forwards": forwards,
        "chunk": chunk,
        "seconds": metric,
        "images_per_s": forwards / metric,
        "same_chunks_images_per_s": forwards / same,
        "batch512_images_per_s": forwards / large,
        "ratio_same_chunks": same / metric,
        "ratio_batch512": large / metric,
    }


def table(rows: list[dict], device: str) -> str:
    """The Markdown table of ``rows``."""
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    lines = [
        f"# insertion/deletion on {device} ({name}), torch {torch.__version__}, IEEE float32",
        "",
        "| model | dtype | steps | forwards | chunk | ms | images/s | plain, same chunks "
        "(images/s) | plain, batch 512 (images/s) | ratio to same chunks | ratio to batch 512 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['dtype']} | {row['steps']} | {row['forwards']} | "
            f"{row['chunk']} | {row['seconds'] * 1e3:.1f} | {row['images_per_s']:.0f} | "
            f"{row['same_chunks_images_per_s']:.0f} | {row['batch512_images_per_s']:.0f} | "
            f"{row['ratio_same_chunks']:.2f} | {row['ratio_batch512']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure every (model, dtype) and write the table after each row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default="resnet18,resnet50,vgg19")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--steps", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = []
    for model_name in args.models.split(","):
        for dtype_name in args.dtypes.split(","):
            rows.append(measure(model_name, args.device, dtype_name, args.steps, args.repeats))
            args.out.write_text(table(rows, args.device))
            print(table(rows[-1:], args.device).splitlines()[-1], flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
