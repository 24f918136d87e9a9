"""``facelearn embed``, ``facelearn landmarks`` and ``facelearn detect --draw`` on crops and photographs."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelearn import pipeline as P
from facelearn.cli import main
from facelearn.data.synthface import render_identity_crop, sample_identity
from facelearn.data.synthface.people import render_people_scene, sample_people

PACKAGE = Path(__file__).resolve().parents[1] / "facelearn"
DETECTOR = str(PACKAGE / "detection/checkpoints/retinaface_mnet025_quick.pt")
ARCFACE = str(PACKAGE / "recognition/checkpoints/quick-arcface.pt")
PFLD = str(PACKAGE / "landmarks/checkpoints/pfld-quick.pt")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two SynthFace group photos (3 and 2 people) and three aligned 112-px crops, as files."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    people = sample_people(rng, 5)
    for name, who in (("a.jpg", [0, 1, 2]), ("b.png", [3, 4])):
        image, _ = render_people_scene(rng, people, who)
        (root / "scenes").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "scenes" / name), image)
    (root / "crops").mkdir()
    for k in range(3):
        cv2.imwrite(str(root / "crops" / f"{k}.png"), render_identity_crop(rng, sample_identity(rng), 112)[0])
    (root / "blank").mkdir()
    for k in range(3):
        cv2.imwrite(str(root / "blank" / f"{k}.png"), np.full((120, 160, 3), 90 + 40 * k, np.uint8))
    return root


def test_embed_crops_gives_one_unit_row_per_image(photos, tmp_path, capsys):
    out = tmp_path / "E.npy"
    assert main(["embed", str(photos / "crops"), "--checkpoint", ARCFACE, "--out", str(out), "--quiet"]) == 0
    e = np.load(out)
    sources = json.loads(out.with_suffix(".json").read_text())
    assert e.shape[0] == 3 and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert [s["source"] for s in sources] == [str(photos / "crops" / f"{k}.png") for k in range(3)]
    model, size = P.load_model("recognition", ARCFACE)
    crop = cv2.cvtColor(cv2.imread(str(photos / "crops" / "1.png")), cv2.COLOR_BGR2RGB)
    direct = P.embed_crops(model, cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)[None]).numpy()
    assert np.allclose(e[1], direct[0], atol=1e-6)


def test_embed_detect_finds_the_people_of_each_photograph(photos, tmp_path):
    out = tmp_path / "E.npy"
    assert main(["embed", str(photos / "scenes"), "--detect", DETECTOR, "--checkpoint", ARCFACE, "--out", str(out),
                 "--quiet"]) == 0
    e, sources = np.load(out), json.loads(out.with_suffix(".json").read_text())
    assert len(e) == len(sources) and {Path(s["source"]).name for s in sources} == {"a.jpg", "b.png"}
    per_photo = {n: sum(Path(s["source"]).name == n for s in sources) for n in ("a.jpg", "b.png")}
    assert per_photo == {"a.jpg": 3, "b.png": 2}
    assert all(s["score"] >= 0.5 and len(s["landmarks"]) == 5 for s in sources)


def test_landmarks_on_crops_and_photographs(photos, tmp_path):
    out = tmp_path / "L.json"
    assert main(["landmarks", str(photos / "crops" / "0.png"), "--checkpoint", PFLD, "--out", str(out), "--quiet"]) == 0
    [face] = json.loads(out.read_text())
    pts = np.array(face["landmarks"])
    assert pts.shape == (98, 2) and (pts > 0).all() and (pts < 112).all()
    assert main(["landmarks", str(photos / "scenes"), "--detect", DETECTOR, "--checkpoint", PFLD, "--out", str(out),
                 "--quiet"]) == 0
    faces = json.loads(out.read_text())
    assert len(faces) == 5
    for f in faces:  # the points lie around their face's box
        x1, y1, x2, y2 = f["box"]
        pts = np.array(f["landmarks"])
        assert (pts.mean(0) > [x1, y1]).all() and (pts.mean(0) < [x2, y2]).all()


def test_detect_draw_writes_the_image_with_its_faces(photos, tmp_path):
    assert main(["detect", str(photos / "scenes" / "a.jpg"), "--checkpoint", DETECTOR, "--out", str(tmp_path),
                 "--threshold", "0.5", "--draw", "--quiet"]) == 0
    drawn = cv2.imread(str(tmp_path / "scenes" / "a.jpg"))
    original = cv2.imread(str(photos / "scenes" / "a.jpg"))
    assert drawn.shape == original.shape and (drawn != original).any()
    assert (tmp_path / "scenes" / "a.txt").is_file()


@pytest.mark.parametrize("argv, message", [
    (["embed", "{tmp}/nothing", "--checkpoint", ARCFACE, "--out", "{tmp}/E.npy"], ("{tmp}/nothing", "no such")),
    (["embed", "{crops}", "--checkpoint", PFLD, "--out", "{tmp}/E.npy"],
     PFLD + ": holds a landmarks model (pfld-0.25x); expected a recognition model"),
    (["landmarks", "{crops}", "--checkpoint", ARCFACE, "--out", "{tmp}/L.json"], ARCFACE + ": holds a recognition model (synthface-cnn); expected a landmarks model"),
    (["embed", "{crops}", "--detect", ARCFACE, "--checkpoint", ARCFACE, "--out", "{tmp}/E.npy"],
     ARCFACE + ": holds a recognition model (synthface-cnn); expected a detection model"),
    (["embed", "{crops}", "--checkpoint", "{tmp}/missing.pt", "--out", "{tmp}/E.npy"], ("{tmp}/missing.pt", "no such")),
    (["embed", "{blank}", "--detect", DETECTOR, "--checkpoint", ARCFACE, "--out", "{tmp}/E.npy"],
     "no faces found in 3 images"),
])
def test_bad_input_is_one_line_and_exit_2(photos, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, crops=photos / "crops", blank=photos / "blank") for a in argv]
    assert main(argv + ["--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"facelearn {argv[0]}: error: ")
    for part in (message,) if isinstance(message, str) else message:
        assert part.format(tmp=tmp_path) in err[0]


REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "reference_models"


@pytest.mark.skipif(not (REFERENCE / "biubug6_mobilenet025").is_dir(),
                    reason="the reference-model fixtures (a shared folder beside the checkout) are absent")
def test_a_released_detector_serves_the_commands(photos, tmp_path):
    release = str(REFERENCE / "biubug6_mobilenet025" / "mobilenet0.25_like.pth")
    out = tmp_path / "E.npy"
    assert main(["embed", str(photos / "scenes"), "--detect", release, "--checkpoint", ARCFACE, "--out", str(out),
                 "--quiet"]) == 0
    assert len(np.load(out)) == len(json.loads(out.with_suffix(".json").read_text())) >= 5
