"""AppTest: the Data, Projections and Errors pages render with small N, on a tiny run saved
in this test's workspace (so they never depend on the pretrained files being present)."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

TIMEOUT = 300
WS = "da7a7e57" * 4                 # a workspace id of the server's own format
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def tiny(tiny_trained):
    """A small CNN trained for one epoch on 3,000 images, and its spec."""
    return tiny_trained


@pytest.fixture
def tiny_run(tiny):
    """Save the tiny model as a finished run of workspace WS; return (its id, its label)."""
    from core.runs import Run, RunStore, new_run_id

    spec, model = tiny
    store = RunStore()
    run = Run(id=new_run_id(), name="tiny", spec=spec.to_dict(), recipe={}, workspace=WS,
              status="finished", epochs_done=1, test_accuracy=0.9)
    store.save_run(run)
    store.save_model(run.id, model)
    return run.id, f"tiny · run {run.id[-6:]}, 90.00%"


@pytest.fixture
def run_label(tiny_run):
    """The tiny run's label, as the pages list it."""
    return tiny_run[1]


@pytest.fixture
def run_key(tiny_run):
    """The tiny run's id: the value of a model picker (shown by its label)."""
    return tiny_run[0]


@pytest.fixture
def page(open_page):
    """``page(name)``: that page opened in workspace WS, checked to run cleanly."""
    def _page(name: str) -> AppTest:
        at = open_page(name, timeout=TIMEOUT, query={"ws": WS})
        assert not at.exception, at.exception
        return at
    return _page


def test_data_page(page, run_label):
    at = page("data")
    assert at.title[0].value.endswith("Data")
    counts = at.dataframe[0].value                  # AppTest keeps no dataframe keys
    assert counts["test"].tolist() == TEST_COUNTS and counts["train"].sum() == 60000
    n_images = len(at.get("image"))
    assert n_images == 10 + 10                      # ten mean digits, ten gallery strips
    at.button(key="data_shuffle").click().run()
    assert not at.exception and at.session_state["data_seed"] == 1
    at.radio(key="data_split").set_value("test").run()
    at.slider(key="data_per_class").set_value(4).run()
    assert not at.exception and len(at.get("image")) == n_images
    at.multiselect(key="data_models").set_value([run_label]).run()
    at.button(key="data_hardest").click().run()
    assert not at.exception
    found = at.session_state["data_hardest_models"]
    assert list(found) == [run_label] and found[run_label].shape == (10000,)
    assert any("Wrong for the most" in c.value for c in at.caption)


def test_errors_page_matrix_cells_and_comparison(page, run_key):
    at = page("errors")
    at.selectbox(key="err_model").set_value(run_key).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["images"].tolist() == TEST_COUNTS          # rows = true classes
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy"].endswith("%")
    heat = json.dumps(json.loads(at.get("vega_lite_chart")[0].proto.spec))
    assert "true class (rows)" in heat and "predicted class (columns)" in heat
    errors, total = metrics["Errors"].replace(",", "").split(" of ")
    assert total == "10000"
    at.radio(key="err_norm").set_value(at.radio(key="err_norm").options[1]).run()
    assert not at.exception
    # a cell's gallery: pick "true 3, predicted 3" (many images) then an error cell
    at.selectbox(key="err_true").set_value(3).run()
    at.selectbox(key="err_pred").set_value(3).run()
    assert not at.exception
    shown = gallery_indices(at, "err_cell")
    assert len(shown) == 24
    assert not [b for b in at.button if "_draw_" in (b.key or "")]   # one chart, no buttons
    click_digit(at, "err_cell", shown[0])
    assert not at.exception
    sent = at.session_state["draw_image"]
    assert sent.shape == (28, 28) and sent.dtype == np.uint8
    assert at.session_state["draw_image_index"] == shown[0]


def gallery_chart(at: AppTest, key: str):
    """The gallery chart of ``key`` ("err_cell", "err_cmp") on the page."""
    charts = [c for c in at.get("vega_lite_chart") if f"{key}_gallery_" in c.proto.id]
    assert len(charts) == 1, [c.proto.id for c in at.get("vega_lite_chart")]
    return charts[0]


def gallery_indices(at: AppTest, key: str) -> list[int]:
    """The test indices a gallery chart shows, in order (from its Arrow dataset)."""
    import pyarrow as pa

    chart = gallery_chart(at, key)
    table = pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_all()
    return [int(i) for i in table.column("index").to_pylist()]


def click_digit(at: AppTest, key: str, index, sent: int = 0) -> None:
    """What a click on a gallery digit sends: the chart's selection, then a rerun."""
    at.session_state[f"{key}_gallery_{sent}"] = {"selection": {"digit": [{"index": index}]}}
    at.run()


def test_errors_inspect_opens_draw_with_the_model_of_the_mistake(page, run_key, run_label):
    """Errors → Inspect on a mistake of the tiny run opens Draw reading it with the tiny
    run, not Draw's default small_cnn: the model travels with the image."""
    at = page("errors")
    at.selectbox(key="err_model").set_value(run_key).run()
    index = gallery_indices(at, "err_cell")[0]              # the worst cell: a mistake
    click_digit(at, "err_cell", index)
    assert not at.exception, at.exception
    assert at.title[0].value.endswith("Draw & inspect")
    picker = at.selectbox(key="draw_model")
    assert picker.value == run_key and picker.options[picker.index] == run_label
    info = " ".join(i.value for i in at.info)
    assert f"the Errors page ({run_label}) — test image #{index}" in info
    # the digit on Draw is the one sent (Projections reads it by id, not by widget)
    assert (at.session_state["drawn_digit"] == at.session_state["draw_image"]).all()


def test_a_gallery_click_is_sent_once_and_a_forged_one_is_ignored(page):
    """A selection is the browser's word: an index that is not a shown digit does
    nothing; a real one opens Draw, and coming back does not send it again."""
    at = page("errors")
    shown = gallery_indices(at, "err_cell")
    for forged in ("7; drop", None, 10**9, -1, [3]):
        click_digit(at, "err_cell", forged)
        assert not at.exception and at.title[0].value.endswith("Errors"), forged
    click_digit(at, "err_cell", shown[1])
    assert at.title[0].value.endswith("Draw & inspect")
    assert at.session_state["draw_image_index"] == shown[1]
    at.switch_page("pages/errors.py").run()
    assert not at.exception and at.title[0].value.endswith("Errors")
    assert "err_cell_gallery_1" in gallery_chart(at, "err_cell").proto.id   # a new chart


def test_errors_inspect_in_the_comparison_sends_model_b(page, run_key, run_label):
    at = page("errors")
    at.selectbox(key="err_model").set_value(run_key).run()
    picker_b = at.selectbox(key="err_model_b")
    b_key = picker_b.value
    assert b_key != run_key
    shown = gallery_indices(at, "err_cmp")
    assert shown, "no image differs between the two models"
    click_digit(at, "err_cmp", shown[0])
    assert not at.exception, at.exception
    assert at.selectbox(key="draw_model").value == b_key


def test_errors_difference_scale_is_symmetric(page, run_key):
    """+9 must be as pale as −9, not as dark as the worst −87: the B − A colour domain
    is symmetric about zero."""
    at = page("errors")
    at.selectbox(key="err_model").set_value(run_key).run()
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    diff = next(s for s in specs if "B − A" in json.dumps(s, ensure_ascii=False))
    scale = next(layer["encoding"]["color"]["scale"] for layer in diff["layer"]
                 if "scale" in layer["encoding"].get("color", {}))
    low, high = scale["domain"]
    assert low == -high and high > 0


def test_errors_page_baseline_offers_training(page, run_label):
    at = page("errors")
    from core.analysis import BASELINE_LABEL

    at.selectbox(key="err_model").set_value("baseline:logreg").run()
    assert not at.exception
    assert any("logistic regression" in i.value for i in at.info)
    assert at.button(key="err_fit_baseline")


def test_projections_pca_and_layer_source(page, run_label):
    at = page("projections")
    at.select_slider(key="proj_points_test").set_value(1000).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Points"] == "1,000" and "784-D" in metrics["Source"]
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert "region" in json.dumps(spec["params"]) and '"image"' in json.dumps(spec)
    at.selectbox(key="proj_model").set_value(run_label).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Source"] == "dense1 · 32-D"                    # the penultimate layer
    at.toggle(key="proj_wrong").set_value(True).run()
    assert not at.exception


def wait_for_map(at: AppTest, timeout: float = 240) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        at.run()
        assert not at.exception, at.exception
        if any(m.label == "Points" for m in at.metric):
            return
        time.sleep(1)
    raise AssertionError("the map was not computed in time")


def test_projections_tsne_in_background_then_cached(page):
    at = page("projections")
    at.radio(key="proj_method").set_value("t-SNE").run()
    at.select_slider(key="proj_points_test").set_value(1000).run()
    assert not at.exception
    at.button(key="proj_compute").click().run()
    wait_for_map(at)
    assert {m.label: m.value for m in at.metric}["Points"] == "1,000"
    again = page("projections")                      # a new session: from the disk cache
    again.radio(key="proj_method").set_value("t-SNE").run()
    t0 = time.time()
    again.select_slider(key="proj_points_test").set_value(1000).run()
    assert not again.exception and time.time() - t0 < 10
    assert {m.label: m.value for m in again.metric}["Points"] == "1,000"


def test_umap_places_the_drawn_digit(page):
    from core.data import load_mnist

    data = load_mnist()
    at = page("projections")
    at.session_state["drawn_digit"] = data.x_train[0]
    at.radio(key="proj_method").set_value("UMAP").run()
    at.select_slider(key="proj_points_test").set_value(1000).run()
    at.button(key="proj_compute").click().run()
    wait_for_map(at)
    assert any(m.value == "**Your digit**" for m in at.markdown)
    assert any("Nearest training images" in m.value for m in at.markdown)


def errors_accuracy(page, key: str) -> str:
    at = page("errors")                                 # a fresh session each time
    at.selectbox(key="err_model").set_value(key).run()
    assert not at.exception, at.exception
    return {m.label: m.value for m in at.metric}["Accuracy"]


def projection_wrong_count(page, label: str) -> str:
    at = page("projections")
    at.select_slider(key="proj_points_test").set_value(1000).run()
    at.selectbox(key="proj_model").set_value(label).run()
    assert not at.exception, at.exception
    return at.toggle(key="proj_wrong").label


def test_a_resumed_run_gets_fresh_results(page, run_label, run_key, tiny, mnist):
    """Page caches are keyed by the model's content, not its run id: a run resumed (same
    id, new weights) shows the new model's results on the Errors and Projections pages."""
    from core.analysis import evaluate_any
    from core.build import build_model
    from core.runs import RunStore

    before = errors_accuracy(page, run_key), projection_wrong_count(page, run_label)
    store = RunStore()
    run_id = next(r.id for r in store.list_runs(WS) if run_label.startswith(
        f"tiny · run {r.id[-6:]}"))
    store.save_model(run_id, build_model(tiny[0], seed=7))       # untrained: about 10%
    after = errors_accuracy(page, run_key), projection_wrong_count(page, run_label)
    fresh = evaluate_any(store.load_model(run_id), mnist.x_test, mnist.y_test)
    assert after[0] == f"{fresh.accuracy:.2%}" and after[0] != before[0]
    assert after[1] != before[1]
