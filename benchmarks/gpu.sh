#!/usr/bin/env bash
# The cloak benchmarks on a GPU machine in under 5 minutes of device time (three runs of at most 85 s each, plus
# the ART install); prints one JSON document and writes it to $OUT_JSON.
#
#   benchmarks/gpu.sh prepare   here, with the repo's .venv and a package registry: writes .bench-gpu/ with the
#                               bundled sample's 100 faces aligned at dlib-150 (faces.npy, so the GPU machine needs
#                               no face detector) and the ART wheel (for a GPU machine without a package registry)
#   benchmarks/gpu.sh           on the GPU machine, from a checkout (with .bench-gpu/ copied along): installs ART
#                               (from .bench-gpu/wheels if there, else from the registry), then runs the benchmarks
#                               three times: every mode in float32 (equal precision with ART) and in bfloat16
#                               autocast at batch $BATCH, and fawkes-v1.0:low in float32 at batch $BIG_BATCH
#
# What the GPU path does (attacks/, benchmarks/): channels-last surrogates and batches, cuDNN autotuning inside the
# cloak's step loop (attacks.surrogates.cuda_autotune; fixed shapes), no host-device sync in the loop. bf16 (--amp)
# and TF32 (--tf32, add it with EXTRA_ARGS) are opt-in: neither is on unless asked, and both are no-ops on a CPU.
#
# Settings (environment): PYTHON (default python3), BATCH (128), BIG_BATCH (512), DEVICE (cuda), ROUNDS (3),
# OUT_JSON (benchmark-gpu.json), EXTRA_ARGS (passed on to python -m benchmarks, e.g. --quick for a dry run on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BATCH=${BATCH:-128}
BIG_BATCH=${BIG_BATCH:-512}
ROUNDS=${ROUNDS:-3}
DEVICE=${DEVICE:-cuda}
OUT_JSON=${OUT_JSON:-benchmark-gpu.json}
PREP=.bench-gpu

if [[ "${1:-run}" == prepare ]]; then
    PY=.venv/bin/python
    mkdir -p "$PREP/wheels"
    "$PY" - <<'EOF'
import numpy as np
from benchmarks import DEMO_DATA
from benchmarks.faces import benchmark_faces
faces = benchmark_faces(100, "dlib-150", None, DEMO_DATA)
np.save(".bench-gpu/faces.npy", faces.faces[: faces.distinct], allow_pickle=False)
print(f".bench-gpu/faces.npy: {faces.source}")
EOF
    art=$("$PY" -c "import art; print(art.__version__)")
    "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$PREP/wheels" "adversarial-robustness-toolbox==$art"
    ls -l "$PREP" "$PREP/wheels"
    exit 0
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PYTHON" -c "import art" 2>/dev/null; then
    if compgen -G "$PREP/wheels/*.whl" >/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --target /tmp/fawkes-eval-site "$PREP"/wheels/*.whl >&2
    else
        "$PYTHON" -m pip install -q --target /tmp/fawkes-eval-site adversarial-robustness-toolbox >&2
    fi
    export PYTHONPATH="$PYTHONPATH:/tmp/fawkes-eval-site"
fi
faces=()
if [[ -f "$PREP/faces.npy" ]]; then
    faces=(--faces-file "$PREP/faces.npy")
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() {  # NAME ARGS...: one benchmark process of at most 85 s; a run that fails or times out is reported, not fatal
    local name=$1
    shift
    # shellcheck disable=SC2086  # EXTRA_ARGS is a list of words
    timeout 85 "$PYTHON" -m benchmarks --device "$DEVICE" --skip-evaluation --rounds "$ROUNDS" "${faces[@]}" "$@" \
        ${EXTRA_ARGS:-} --out "$tmp/$name.json" >/dev/null || echo "{\"failed\": \"exit $?\"}" >"$tmp/$name.json"
}
run fp32 --batch "$BATCH" --one-at-a-time 4
run amp --batch "$BATCH" --one-at-a-time 4 --amp
run "fp32-batch$BIG_BATCH" --batch "$BIG_BATCH" --one-at-a-time 0 --modes low
"$PYTHON" - "$tmp" "$OUT_JSON" <<'EOF'
import json, sys
from pathlib import Path
tmp, out = Path(sys.argv[1]), Path(sys.argv[2])
report = {p.stem: json.loads(p.read_text()) for p in sorted(tmp.glob("*.json"))}
text = json.dumps(report, indent=1)
out.write_text(text + "\n")
print(text)
EOF
