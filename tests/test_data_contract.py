"""One data contract for every task: each data set yields images as float RGB in [0, 1] (or uint8), and the
model's ``preprocess`` makes its input from them. Checked on a few SynthFace samples of each task's data set."""

from __future__ import annotations

import torch

from facelearn.data import identities, wflw
from facelearn.data.synthface.export import export_identities, export_wflw, export_widerface


def _is_unit_rgb(image: torch.Tensor, size: tuple[int, int] | None = None) -> None:
    assert image.dim() == 3 and image.shape[0] == 3, tuple(image.shape)
    assert size is None or tuple(image.shape[1:]) == size
    if image.dtype == torch.uint8:
        return
    assert image.dtype == torch.float32, image.dtype
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0, (float(image.min()), float(image.max()))
    assert float(image.max()) - float(image.min()) > 0.2  # a real picture, not a constant


def test_detection_dataset_yields_rgb_in_unit_range(tmp_path):
    from facelearn.detection.dataset import WiderFaceDetection
    from facelearn.data.transforms import DetectionAugment

    export_widerface(tmp_path, n_train=2, n_val=1, image_size=96, progress=False)
    for ds in (WiderFaceDetection(tmp_path, "train", augment=DetectionAugment(size=64), seed=0),
               WiderFaceDetection(tmp_path, "val", train=False, size=96)):
        for i in range(len(ds)):
            _is_unit_rgb(ds[i][0])


def test_recognition_datasets_yield_rgb_in_unit_range(tmp_path):
    export_identities(tmp_path, n_identities=3, images_per_identity=2, n_test_identities=20, image_size=32,
                      progress=False)
    folder = identities.IdentityFolder(tmp_path / "train", 32, flip=True)
    for i in range(len(folder)):
        _is_unit_rgb(folder[i][0], (32, 32))
    images, _ = folder.load_all()
    assert images.dtype == torch.float32 and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    pairs, _ = identities.read_bin(tmp_path / "synthface.bin", size=32)
    for image in pairs[:4]:
        _is_unit_rgb(image, (32, 32))
    jpegs = [(tmp_path / "train" / folder.classes[0] / name).read_bytes() for name in ("1.jpg", "2.jpg")]
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    identities.write_recordio(rec, idx, [identities.pack_record(k, b) for k, b in enumerate(jpegs)])
    record = identities.RecordIODataset(rec, idx, 32)
    for i in range(len(record)):
        _is_unit_rgb(record[i][0], (32, 32))


def test_landmark_crops_yield_rgb_in_unit_range(tmp_path):
    from facelearn.landmarks.crops import LandmarkCrops

    export_wflw(tmp_path, n_train=2, n_test=1, progress=False)
    files = wflw.wflw_files(tmp_path)
    for augment in (True, False):
        crops = LandmarkCrops(wflw.read_wflw(files["train"]), files["images"], augment=augment)
        for i in range(len(crops)):
            _is_unit_rgb(crops[i]["image"], (112, 112))
