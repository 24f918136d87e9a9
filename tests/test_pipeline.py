"""detect → align → embed → identify, and the accounting that charges each mistake to a stage."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facelearn import pipeline as P
from facelearn.data.synthface import render_identity_crop
from facelearn.data.synthface.people import render_people_scene, sample_people
from facelearn.landmarks.crops import crop_matrix
from facelearn.landmarks.pfld import PFLD, PFLDConfig
from facelearn.recognition.alignment import ARCFACE_TEMPLATE

CHECKPOINTS = Path(__file__).resolve().parents[1] / "facelearn"


def test_match_boxes_is_greedy_one_to_one_by_score():
    truth = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]])
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10], [50, 50, 60, 60]])
    # the first detection takes face 0; the second overlaps only face 0, already taken: a false detection
    assert P.match_boxes(boxes, truth).tolist() == [0, -1, 1, -1]
    assert P.match_boxes(boxes[:0], truth).tolist() == []
    assert P.match_boxes(boxes, truth[:0]).tolist() == [-1, -1, -1, -1]


def test_match_boxes_agrees_with_a_brute_force_loop():
    rng = np.random.default_rng(0)
    for _ in range(20):
        xy = rng.uniform(0, 50, (7, 2))
        boxes = torch.tensor(np.hstack([xy, xy + rng.uniform(5, 15, (7, 2))]), dtype=torch.float32)
        xy = rng.uniform(0, 50, (5, 2))
        truth = torch.tensor(np.hstack([xy, xy + rng.uniform(5, 15, (5, 2))]), dtype=torch.float32)
        expected, taken = [], set()
        for b in boxes.numpy():
            ious = []
            for t, g in enumerate(truth.numpy()):
                iw = max(0, min(b[2], g[2]) - max(b[0], g[0]))
                ih = max(0, min(b[3], g[3]) - max(b[1], g[1]))
                inter = iw * ih
                iou = inter / ((b[2] - b[0]) * (b[3] - b[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter)
                if t not in taken and iou >= 0.5:
                    ious.append((iou, t))
            best = max(ious)[1] if ious else -1
            taken.add(best)
            expected.append(best)
        assert P.match_boxes(boxes, truth).tolist() == expected


def test_charge_errors_puts_each_face_in_exactly_one_stage():
    people = np.array([3, 1, 4, 1, 5])
    matched = np.array([0, 1, 2, -1, 3, -1])  # face 4 missed; two false detections
    predicted = np.array([3, 2, 0, 7, 1, 9])
    with_true_points = np.array([3, 1, 0, 7, 1, 9])
    c = P.charge_errors(matched, predicted, with_true_points, people)
    # face 0 right; face 1 right only with true points; face 2 wrong either way; face 3 right; face 4 missed
    assert (c.correct, c.bad_alignment, c.wrong_match, c.missed, c.false_detections) == (2, 1, 1, 1, 2)
    assert c.rank1 == 2 / 5 and (c + c).faces == 10 and (c + c).false_detections == 4
    faces, detections = P.face_stages(matched, predicted, with_true_points, people)
    assert faces == ["correct", "bad_alignment", "wrong_match", "correct", "missed"]
    assert detections == ["correct", "bad_alignment", "wrong_match", "false_detections", "correct", "false_detections"]


def test_alignment_error_is_relative_to_the_eye_distance():
    truth = np.array([ARCFACE_TEMPLATE])
    assert P.alignment_error(truth, truth) == pytest.approx([0.0])
    eyes = np.linalg.norm(ARCFACE_TEMPLATE[0] - ARCFACE_TEMPLATE[1])
    assert P.alignment_error(truth + [3.0, 4.0], truth) == pytest.approx([5.0 / eyes])


def test_align_all_warps_the_template_onto_itself_and_refuses_missing_points():
    image = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    crops = P.align_all(image, np.array([ARCFACE_TEMPLATE, ARCFACE_TEMPLATE * 2]), 112)
    assert crops.shape == (2, 112, 112, 3) and np.array_equal(crops[0], image)
    assert P.align_all(image, np.zeros((0, 5, 2)), 64).shape == (0, 64, 64, 3)
    with pytest.raises(ValueError, match="no 5 landmark points"):
        P.align_all(image, -np.ones((1, 5, 2)))


def test_recognition_preprocess_is_insightfaces_normalisation_bit_for_bit():
    from facelearn.recognition.backbones import mobilefacenet

    pixels = (torch.arange(3 * 112 * 112) % 256).to(torch.uint8).view(3, 112, 112)  # every value 0…255
    model = mobilefacenet()
    want = pixels.float().div(127.5).sub(1.0)  # insightface: (x / 255 − 0.5) / 0.5
    assert torch.equal(model.preprocess(pixels)[0], want)
    assert torch.equal(model.preprocess(pixels.float() / 255)[0], want)  # the data sets' [0, 1]


def test_crop_box_makes_the_landmark_crop_the_whole_image():
    for w, h in ((112, 112), (150, 90)):
        m = crop_matrix(P.crop_box(w, h), 112, 0.15)
        corners = np.array([[0, 0, 1], [max(w, h), max(w, h), 1]], dtype=np.float64) - [[(max(w, h) - w) / 2,
                                                                                        (max(w, h) - h) / 2, 0]] * 2
        assert (corners @ m.T) == pytest.approx(np.array([[0, 0], [112, 112]]), abs=1e-9)


def test_landmarks_follow_a_shift_of_the_image_exactly():
    torch.manual_seed(0)
    model = PFLD(PFLDConfig(0.25, 98)).eval()
    image = np.random.default_rng(1).integers(0, 255, (140, 160, 3), dtype=np.uint8)
    box = np.array([[20.0, 10, 100, 100]])
    shifted = np.zeros((150, 170, 3), np.uint8)
    shifted[10:, 10:] = image
    a = P.landmarks_in_boxes(model, image, box)
    b = P.landmarks_in_boxes(model, shifted, box + 10)
    assert a.shape == (1, 98, 2) and b - a == pytest.approx(np.full_like(a, 10.0), abs=1e-3)
    assert P.landmarks_in_boxes(model, image, np.zeros((0, 4))).shape == (0, 98, 2)


def test_people_scenes_carry_their_identities():
    rng = np.random.default_rng(3)
    people = sample_people(rng, 5)
    image, faces = render_people_scene(np.random.default_rng(4), people, [4, 0, 2])
    again, _ = render_people_scene(np.random.default_rng(4), people, [4, 0, 2])
    assert image.shape == (320, 480, 3) and np.array_equal(image, again)
    assert [f.person for f in faces] == [4, 0, 2]
    for f in faces:
        x1, y1, x2, y2 = f.box
        assert 0 <= x1 < x2 <= 480 and 0 <= y1 < y2 <= 320 and y2 - y1 >= 40
        assert ((f.points >= f.box[:2]) & (f.points <= f.box[2:])).all()
        assert f.points[0, 0] < f.points[1, 0]  # left eye (image-left) first
    with pytest.raises(ValueError, match="index the 5 identities"):
        render_people_scene(rng, people, [5])


def test_the_quick_system_finds_and_identifies_people_in_scenes():
    
    detector, _ = P.load_model("detection", CHECKPOINTS / "detection/checkpoints/retinaface_mnet025_quick.pt")
    recogniser, size = P.load_model("recognition", CHECKPOINTS / "recognition/checkpoints/quick-arcface.pt")
    rng = np.random.default_rng(0)
    people = sample_people(rng, 12)
    enrol = np.stack([cv2.cvtColor(render_identity_crop(rng, p, size, nuisance=0.3)[0], cv2.COLOR_BGR2RGB)
                      for p in people])
    gallery = P.embed_crops(recogniser, enrol)
    assert gallery.shape == (12, recogniser(torch.zeros(1, 3, size, size)).shape[1])
    assert torch.allclose(gallery.norm(dim=1), torch.ones(12))
    scenes = []
    for i in range(4):
        image, faces = render_people_scene(rng, people, [3 * i, 3 * i + 1, 3 * i + 2])
        scenes.append((cv2.cvtColor(image, cv2.COLOR_BGR2RGB), faces))
    result = P.run_on_scenes(detector, recogniser, size, gallery, scenes)
    c = result.counts
    assert c.faces == 12 and c.correct + c.missed + c.bad_alignment + c.wrong_match == 12
    assert len(result.faces) == 12 - c.missed + c.false_detections
    assert sum(f["stage"] == "correct" for f in result.faces) == c.correct
    assert c.rank1 >= 0.6 and result.verification.accuracy >= 0.7 and result.verification.n_pairs == 2 * (12 - c.missed)
    with pytest.raises(Exception, match="too few"):
        P.run_on_scenes(detector, recogniser, size, gallery, scenes[:1])
