"""The smallest perturbation that fools a model (core/adversarial.py), its Draw section
and the Compare robustness table. Real pretrained presets, no mocks."""
from __future__ import annotations

import numpy as np
import pytest

from core import adversarial


@pytest.fixture(scope="module")
def frontier():
    """The smallest pretrained preset (2,854 parameters): fast gradients."""
    from core import pretrained

    return pretrained.load_model("frontier_3k")


def read(model, image: np.ndarray) -> np.ndarray:
    """The model's probabilities for one float (28, 28) digit, the single-image way."""
    return np.asarray(model(image.reshape(1, 28, 28, 1).astype(np.float32),
                            training=False))[0]


@pytest.mark.parametrize("target", [3, 8])
def test_targeted_perturbation_is_read_as_the_target(frontier, mnist, target):
    attack = adversarial.fool(frontier, mnist.x_test[0], target)
    assert attack.clean_class == 7 != target
    assert attack.success
    assert int(read(frontier, attack.perturbed).argmax()) == target
    assert attack.new_class == target
    np.testing.assert_allclose(attack.probabilities, read(frontier, attack.perturbed),
                               atol=1e-5)


def test_perturbation_stays_within_its_budget_and_the_pixel_range(frontier, mnist):
    attack = adversarial.fool(frontier, mnist.x_test[1], 2 if mnist.y_test[1] != 2 else 5)
    assert attack.success and 0 < attack.budget <= adversarial.EPS_GRID[-1]
    assert attack.linf <= attack.budget + 1e-6
    assert attack.perturbed.min() >= 0.0 and attack.perturbed.max() <= 1.0
    assert attack.original.min() >= 0.0 and attack.original.max() <= 1.0
    np.testing.assert_allclose(attack.original, mnist.x_test[1] / 255.0, atol=1e-6)
    assert 0 < attack.linf <= attack.l2                  # 784 pixels: L2 ≥ L∞
    assert attack.steps > 0


def test_any_other_finds_a_different_class(frontier, mnist):
    attack = adversarial.fool(frontier, mnist.x_test[2], adversarial.ANY)
    assert attack.success and attack.target is None
    assert int(read(frontier, attack.perturbed).argmax()) != attack.clean_class
    assert attack.linf <= attack.budget + 1e-6


def test_search_returns_the_smallest_budget_that_works(frontier, mnist):
    """The budget just below the one found (the refinement's step) does not fool it."""
    attack = adversarial.fool(frontier, mnist.x_test[0], 3, refine=2)
    grid = adversarial.EPS_GRID
    first = grid.index(min(g for g in grid if g >= attack.budget))
    below = (grid[first - 1] if first else 0.0)
    below = max([below] + [b for b in adversarial.budgets_between(below, grid[first], 2)
                           if b < attack.budget])
    _, ok, _ = adversarial.pgd(frontier, mnist.x_test[0][None] / 255.0, np.array([below]),
                               np.array([3]), np.array([True]))
    assert not ok[0] and attack.success


def test_the_class_it_already_reads_needs_no_perturbation(frontier, mnist):
    attack = adversarial.fool(frontier, mnist.x_test[0], 7)
    assert attack.success and attack.budget == 0.0 and attack.linf == 0.0


def test_bad_inputs_are_refused_with_a_sentence(frontier):
    from core.errors import LayerLabError

    with pytest.raises(LayerLabError, match="0 to 9"):
        adversarial.fool(frontier, np.zeros((28, 28), np.uint8), 12)
    with pytest.raises(LayerLabError, match="28×28"):
        adversarial.fool(frontier, np.zeros((10, 10), np.uint8), 3)


def test_flip_budgets_are_tight_on_the_grid(frontier, mnist):
    """Each image flips at its reported budget and not at the grid step below."""
    images = mnist.x_test[:12]
    budgets = adversarial.flip_budgets(frontier, images)
    grid = adversarial.EPS_GRID
    assert np.isfinite(budgets).all() and (budgets > 0).all()
    start = read_many(frontier, images).argmax(axis=1)
    at = np.array(budgets)
    below = np.array([0.0 if b == grid[0] else grid[grid.index(b) - 1] for b in at])
    x = images / 255.0
    untargeted = np.zeros(len(x), bool)
    _, ok_at, _ = adversarial.pgd(frontier, x, at, start, untargeted)
    assert ok_at.all()
    _, ok_below, _ = adversarial.pgd(frontier, x, below, start, untargeted)
    assert not ok_below.any()


def read_many(model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model((images / 255.0).reshape(-1, 28, 28, 1).astype(np.float32),
                            training=False))


def test_robustness_median_is_positive_and_cached(frontier, mnist, tmp_path):
    images = mnist.x_test[:100]
    first = adversarial.robustness(frontier, images, cache_dir=tmp_path)
    assert not first.from_cache
    assert first.median > 0 and len(first.budgets) == 100
    assert first.median == float(np.median(first.budgets))
    again = adversarial.robustness(frontier, images, cache_dir=tmp_path)
    assert again.from_cache and again.median == first.median
    np.testing.assert_array_equal(again.budgets, first.budgets)
    other = adversarial.robustness(frontier, images[:50], cache_dir=tmp_path)
    assert not other.from_cache                          # another set, another entry


def test_stronger_models_need_larger_budgets_in_the_median(frontier, mnist, tmp_path):
    """A sanity check of the figure's meaning: small_cnn (99 %) is harder to fool than
    frontier_3k (a 2,854-parameter model) on the same 100 images."""
    from core import pretrained

    images = mnist.x_test[:100]
    small = adversarial.robustness(pretrained.load_model("small_cnn"), images,
                                   cache_dir=tmp_path)
    tiny = adversarial.robustness(frontier, images, cache_dir=tmp_path)
    assert small.median > tiny.median


def test_damaged_cache_is_computed_again(frontier, mnist, tmp_path):
    images = mnist.x_test[:5]
    adversarial.robustness(frontier, images, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text('["not a number"]')
    again = adversarial.robustness(frontier, images, cache_dir=tmp_path)
    assert not again.from_cache and np.isfinite(again.budgets).all()


# -- pages (AppTest) ----------------------------------------------------------------------
def test_draw_section_fools_the_model_into_the_chosen_digit(open_page, mnist, frontier):
    """A test digit sent to Draw, read with frontier_3k: the section finds a perturbed
    digit read as 3, shows the three panels and says a person still reads a 7."""
    at = open_page("draw", state={"draw_image": mnist.x_test[0], "draw_image_index": 0,
                                  "draw_model": "pretrained:frontier_3k"})
    assert not at.exception
    assert "How little it takes to fool it" in [h.value for h in at.subheader]
    assert not [m for m in at.metric if m.label == "Now reads"]      # nothing before asking
    at.selectbox(key="draw_fool_target").set_value("3").run()
    at.button(key="draw_fool_go").click().run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Now reads"] == "3"
    assert 0 < float(metrics["ε (L∞)"]) <= 0.5
    assert any("a person still reads the original 7" in t.value for t in at.text)
    attack = at.session_state["draw_fool_result"][3]
    assert int(read(frontier, attack.perturbed).argmax()) == 3      # same preset weights
    # another target: the old result is not shown as if it were the new one's
    at.selectbox(key="draw_fool_target").set_value("any other digit").run()
    assert not [m for m in at.metric if m.label == "Now reads"]


def test_draw_section_survives_a_tampered_result(open_page, mnist):
    at = open_page("draw", state={"draw_image": mnist.x_test[0],
                                  "draw_model": "pretrained:frontier_3k",
                                  "draw_fool_result": "not a result"})
    assert not at.exception and not at.error
    assert "How little it takes to fool it" in [h.value for h in at.subheader]


def test_compare_robustness_table_fills_on_request(open_page):
    at = open_page()
    at.session_state["compare_pinned"] = ["pretrained:frontier_3k", "pretrained:small_cnn"]
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert "How little it takes to fool them" in [h.value for h in at.subheader]
    table = at.dataframe[-1].value
    assert list(table["median ε"]) == ["—", "—"]                    # not computed yet
    at.button(key="compare_robust_go").click().run()
    assert not at.exception and not at.error
    task = at.session_state["compare_robust_task"]                # computing in the background
    assert task.done.wait(timeout=300)
    at.run()                                                     # the page picks the figures up
    assert not at.exception and not at.error
    table = at.dataframe[-1].value.set_index("run")
    tiny = float(table.loc["frontier_3k (pretrained)", "median ε"])
    small = float(table.loc["small_cnn (pretrained)", "median ε"])
    assert 0 < tiny < small <= 0.5
    at.run()                                                         # kept across reruns
    assert list(at.dataframe[-1].value["median ε"]) != ["—", "—"]


def test_compare_table_survives_tampered_figures(open_page):
    """A figure under the run's real stamp but of the wrong type reads as not computed."""
    from core import pretrained
    from pages.compare_robustness import _stamp

    stamp = _stamp(pretrained.load_record("frontier_3k"))
    at = open_page()
    at.session_state["compare_pinned"] = ["pretrained:frontier_3k"]
    at.session_state["compare_robustness"] = {"pretrained:frontier_3k": (stamp, "0.1", None),
                                              "other": "junk"}
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert list(at.dataframe[-1].value["median ε"]) == ["—"]
