"""The renderer's per-identity caches, per-thread buffers and shortcuts change its speed, never its pixels:
a render with warm caches equals one with cold caches for identities that differ in any single parameter,
the caches stay bounded, renders from several threads at once equal the same renders one after another,
the categorical draws, clamps and fixed-point roundings equal NumPy's, and the crops' similarity transform
equals its textbook form."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from facelearn.data.alignment import ARCFACE_TEMPLATE, similarity_transform
from facelearn.data.synthface import TOPOLOGY, Expression, draw_face, face_vertices, render_identity_crop, sample_identity
from facelearn.data.synthface import model, render
from facelearn.data.synthface.model import choose
from facelearn.data.synthface.scenes import clamp
from benchmark_module import benchmark


def _clear_caches():
    render._LOOKS.clear()
    for fields in model._FIELDS.values():
        fields.shapes.clear()


def _draw(identity, height=96.0):
    canvas = np.full((160, 160, 3), 90, np.uint8)
    fr = draw_face(canvas, identity, Expression(0.3, 0.5, 0.1, 0.2), (15.0, -5.0, 4.0), (80, 82), height,
                   clothes=np.array([40.0, 90.0, 160.0]))
    return canvas.tobytes() + fr.landmarks98.tobytes() + fr.visible98.tobytes() + fr.points.tobytes()


def _variants(base):
    """Identities that differ from ``base`` in one parameter each, the cached ones and the others."""
    shape = base.shape.copy()
    shape[3] += 0.5
    return [replace(base, shape=shape), replace(base, brow_thickness=base.brow_thickness + 0.2),
            replace(base, hair_style=(base.hair_style + 1) % 4), replace(base, hairline=base.hairline + 0.3),
            replace(base, beard=(base.beard + 1) % 3), replace(base, skin=base.skin * 0.9),
            replace(base, hair=base.hair * 0.8 + 10), replace(base, lips=base.lips * 0.7),
            replace(base, glasses=(base.glasses + 1) % 3), replace(base, iris=base.iris[::-1].copy())]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("height", [96.0, 30.0])  # the fine and the coarse triangulation
def test_warm_caches_render_what_cold_caches_render(seed, height):
    base = sample_identity(np.random.default_rng(seed))
    variants = _variants(base)
    cold = []
    for identity in variants:
        _clear_caches()
        cold.append(_draw(identity, height))
    _clear_caches()
    _draw(base, height)  # warm the caches with the base identity, then render each variant after it
    for identity, expected in zip(variants, cold):
        assert _draw(identity, height) == expected
    assert len({c for c in cold}) == len(cold)  # every single-parameter change shows in the pixels


def test_cached_vertices_equal_a_fresh_computation_and_the_caches_stay_bounded():
    rng = np.random.default_rng(3)
    people = [sample_identity(rng) for _ in range(render._MAX_LOOKS + 20)]
    _clear_caches()
    first = face_vertices(people[0], Expression(0.5, 0.2, 0.0, 0.3))
    for identity in people:
        draw_face(np.zeros((60, 60, 3), np.uint8), identity, Expression(), (0.0, 0.0, 0.0), (30, 30), 20.0,
                  visibility="none")
    assert len(render._LOOKS) <= render._MAX_LOOKS
    assert len(model._FIELDS[id(TOPOLOGY)].shapes) <= model._MAX_SHAPES
    again = face_vertices(people[0], Expression(0.5, 0.2, 0.0, 0.3))  # evicted by now: computed afresh
    assert np.array_equal(first, again) and first is not again


def test_renders_from_several_threads_equal_the_sequential_renders():
    people = [sample_identity(np.random.default_rng([4, p])) for p in range(4)]

    def crop(i):
        return render_identity_crop(np.random.default_rng([9, i]), people[i % 4])[0].tobytes()

    sequential = [crop(i) for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(crop, range(16))) == sequential


@pytest.mark.parametrize("x", [-1e9, -70.0, -69.999, 0.0, -0.0, 3.5, 70.0, 71.0, float("inf")])
def test_clamp_is_numpys_clip_for_one_number(x):
    assert clamp(x, -70, 70) == float(np.clip(x, -70, 70))
    assert type(clamp(x, -70, 70)) is float


@pytest.mark.parametrize("p", [(0.7, 0.15, 0.15), (1.0, 0.0, 0.0), (0.0, 0.6, 0.4), (0.08, 0.42, 0.25, 0.25),
                               (0.05, 0.2, 0.75), (0.3, 0.7), (1.0,), tuple(np.full(7, 1 / 7))])
def test_choose_draws_what_generator_choice_draws(p):
    for seed in range(200):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert [int(a.choice(len(p), p=p)) for _ in range(4)] == [choose(b, p) for _ in range(4)]
        assert a.random() == b.random()  # and leaves the generator in the same state


@pytest.mark.parametrize("p", [(0.5, 0.6), (-0.1, 1.1), ()])
def test_choose_refuses_what_is_not_a_distribution(p):
    with pytest.raises(ValueError, match="probabilities"):
        choose(np.random.default_rng(0), p)


def test_similarity_transform_is_umeyamas_bit_for_bit():
    """The written-out transform against Umeyama (1991) eqs. (40)–(42) as written (D from det(U)·det(Vᵀ),
    c = tr(ΣD)/σ², t = μ_d − cRμ_s): the former implementation, kept in benchmarks/synthface_speed.py."""
    umeyama = benchmark("synthface_speed")._similarity_transform_before
    rng = np.random.default_rng(12)
    reflected = 0
    for i in range(3000):
        noise = rng.normal(0, (0.01, 1, 5, 30)[i % 4], (5, 2))
        src = ARCFACE_TEMPLATE * rng.uniform(0.3, 3) + noise + rng.uniform(-99, 99, 2)
        if i % 3 == 0:
            src = src[:, ::-1].copy()  # mirrored: the least-squares rotation needs D = diag(1, −1)
        if i % 5 == 0:
            src = np.round(src)
        dst = ARCFACE_TEMPLATE * rng.uniform(0.4, 2)
        assert similarity_transform(src, dst).tobytes() == umeyama(src, dst).tobytes(), i
        u, _, vt = np.linalg.svd((dst - dst.mean(0)).T @ (src - src.mean(0)))
        reflected += np.linalg.det(u) * np.linalg.det(vt) < 0
    assert 900 <= reflected <= 1100  # the mirrored third


def test_points_rounded_in_python_equal_the_fixed_point_polygons():
    """render._point and render._fixed round as _poly (np.rint to 4 fractional bits), halves to even included."""
    rng = np.random.default_rng(13)
    pts = np.concatenate([rng.uniform(-300, 900, (4000, 2)), rng.integers(-300, 900, (400, 2)) / 32,
                          rng.integers(-3000, 9000, (400, 2)) / 16 + 1 / 32])  # exact ties at 1/32 of a pixel
    assert [render._point(p) for p in pts] == [tuple(q) for q in render._poly(pts).tolist()]
    assert render._fixed(pts.tolist()).tobytes() == render._poly(pts).tobytes()
