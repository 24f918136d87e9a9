"""The margin figures of the loss chapters: decision boundaries against closed forms, one legend entry per margin."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from facelearn.recognition import margins, plots  # noqa: E402


@pytest.mark.parametrize("separation_deg", [60, 90, 120, 150])
def test_arcface_wedge_is_m_wherever_the_weights_lie(separation_deg):
    sep, m = math.radians(separation_deg), 0.5
    b = plots.decision_boundary(lambda c: margins.arcface_psi(c, m), sep)
    assert b == pytest.approx((sep - m) / 2, abs=1e-6)  # θ₁ + m = sep − θ₁
    assert sep - 2 * b == pytest.approx(m, abs=2e-6)  # the wedge is m, not 2m


def test_cosface_boundary_at_90_degrees_matches_the_closed_form():
    m = 0.35
    b = plots.decision_boundary(lambda c: margins.cosface_psi(c, m), math.pi / 2)
    assert b == pytest.approx(math.acos(m / math.sqrt(2)) - math.pi / 4, abs=1e-6)  # cos θ − sin θ = m


def test_decision_margin_figure_has_one_legend_entry_per_margin():
    curves = plots.standard_margins()
    fig, ax = plt.subplots()
    plots.plot_decision_margins(ax, curves, separation=math.radians(90))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(curves)
    fig2, ax2 = plt.subplots()
    plots.plot_decision_margins(ax2, curves, legend=False)
    assert ax2.get_legend() is None
    plt.close(fig), plt.close(fig2)
