#!/usr/bin/env bash
# The cloak benchmarks on a GPU machine in under 5 minutes (two runs of at most 140 s each); prints one JSON
# document and writes it to $OUT_JSON.
#
#   benchmarks/gpu.sh prepare   here, with the repo's .venv and a package registry: writes .bench-gpu/ with the
#                               bundled sample's 100 faces aligned at dlib-150 (faces.npy, so the GPU machine needs
#                               no face detector) and the ART wheel (for a GPU machine without a package registry)
#   benchmarks/gpu.sh           on the GPU machine, from a checkout (with .bench-gpu/ copied along): installs ART
#                               (from .bench-gpu/wheels if there, else from the registry), then runs the benchmarks
#                               twice, float32 (equal precision with ART) and bfloat16 autocast, at batch $BATCH
#
# Settings (environment): PYTHON (default python3), BATCH (128), DEVICE (cuda), OUT_JSON (benchmark-gpu.json),
# EXTRA_ARGS (passed on to python -m benchmarks, e.g. --quick for a dry run on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BATCH=${BATCH:-128}
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
for precision in fp32 amp; do
    amp=()
    [[ $precision == amp ]] && amp=(--amp)
    # shellcheck disable=SC2086  # EXTRA_ARGS is a list of words
    timeout 140 "$PYTHON" -m benchmarks --device "$DEVICE" --batch "$BATCH" --one-at-a-time 4 --skip-evaluation \
        "${faces[@]}" "${amp[@]}" ${EXTRA_ARGS:-} --out "$tmp/$precision.json" >/dev/null
done
"$PYTHON" - "$tmp" "$OUT_JSON" <<'EOF'
import json, sys
from pathlib import Path
tmp, out = Path(sys.argv[1]), Path(sys.argv[2])
report = {precision: json.loads((tmp / f"{precision}.json").read_text()) for precision in ("fp32", "amp")}
text = json.dumps(report, indent=1)
out.write_text(text + "\n")
print(text)
EOF
