"""Compare, "Watch them learn side by side": the pinned runs' snapshots on one epoch
slider (clamped per run), their pictures and norm curves, and a sentence for the runs
without snapshots (AppTest)."""
from __future__ import annotations

import pytest

from core.pretrained import CACHED_DIR, load_record
from core.runs import Run, RunStore, read_snapshots
from core.snapshots import accuracy
from pages.compare_snapshots import missing_sentence, source

FAST, MLP = "pretrained:fast_cnn", "pretrained:warmup_mlp"


def shipped(name: str) -> dict:
    arrays = read_snapshots(CACHED_DIR / f"{name}.snapshots.npz")
    assert arrays is not None, name
    return arrays


def user_run(ws: str, name: str, arrays: dict | None) -> Run:
    """A finished run of workspace ``ws`` in the app's store (fast_cnn's record under a
    new id and name), with ``arrays`` as its snapshots when given."""
    from core.runs import new_run_id

    run = Run.from_dict({**load_record("fast_cnn").to_dict(), "id": new_run_id(),
                         "name": name, "workspace": ws, "status": "finished"})
    store = RunStore()
    store.save_run(run)
    if arrays is not None:
        store.save_snapshots(run.id, arrays)
    return run


@pytest.fixture
def compare(open_page):
    """Compare opened with fast_cnn, warmup_mlp, a user run with snapshots cut short
    (its first four) and a user run without any pinned."""
    from core.workspace import new_workspace_id

    ws = new_workspace_id()
    short = {k: (v[:4] if k not in ("layers", "probe", "probe_label") else v)
             for k, v in shipped("fast_cnn").items()}
    mine = user_run(ws, "short", short)
    bare = user_run(ws, "bare", None)
    pinned = [FAST, MLP, mine.id, bare.id]
    at = open_page("compare", query={"ws": ws}, state={"compare_pinned": pinned})
    assert not at.exception, at.exception
    return at, mine, bare


def slider(at):
    return next(s for s in at.select_slider if str(s.key).startswith("compare_snap_pos_"))


def captions(at) -> list[str]:
    return [c.value for c in at.caption]


def test_helpers():
    assert source(FAST) == ("pretrained", "fast_cnn") and source("abc") == ("run", "abc")
    assert missing_sentence(["x"]).startswith("x has no snapshots to replay (")
    assert missing_sentence(["x", "y"]).startswith("x and y have no snapshots")


def test_one_slider_over_every_runs_epochs(compare):
    at, _, _ = compare
    epochs = {round(float(e), 3) for name in ("fast_cnn", "warmup_mlp")
              for e in shipped(name)["epoch"]}
    s = slider(at)
    assert len(s.options) == len(epochs)                 # the union: the short run adds none
    assert s.value == 0
    shown = [c for c in captions(at) if c.startswith("snapshot at epoch")]
    assert shown == ["snapshot at epoch 0.00"] * 3        # three runs with snapshots


def test_runs_without_snapshots_are_named_in_a_sentence(compare):
    at, mine, bare = compare
    texts = [t.value for t in at.text]
    sentence = [t for t in texts if "no snapshots to replay" in t]
    assert len(sentence) == 1 and "bare" in sentence[0] and "short" not in sentence[0]
    assert "fast_cnn" not in sentence[0]


def test_the_last_epoch_clamps_each_run_to_its_own_end(compare):
    at, _, _ = compare
    s = slider(at)
    s.set_value(len(s.options) - 1).run()
    assert not at.exception
    ends = {name: float(shipped(name)["epoch"][-1]) for name in ("fast_cnn", "warmup_mlp")}
    short_end = float(shipped("fast_cnn")["epoch"][3])
    assert max(ends.values()) == 10                        # warmup_mlp's 10 epochs
    shown = [c for c in captions(at) if c.startswith("snapshot at epoch")]
    assert shown == [f"snapshot at epoch {ends['fast_cnn']:.2f} (its run ends at epoch "
                     f"{ends['fast_cnn']:g})",
                     "snapshot at epoch 10.00",
                     f"snapshot at epoch {short_end:.2f} (its run ends at epoch {short_end:g})"]
    # each run's validation accuracy is its own last confusion matrix's
    accs = [t.value for t in at.text if t.value.startswith("Validation accuracy:")]
    expect = [accuracy(shipped("fast_cnn")["confusion"][-1]),
              accuracy(shipped("warmup_mlp")["confusion"][-1]),
              accuracy(shipped("fast_cnn")["confusion"][3])]
    assert accs == [f"Validation accuracy: {a:.2%}" for a in expect]


def test_pictures_and_norm_curves(compare):
    at, mine, _ = compare
    slider(at).set_value(3).run()
    # filters for the two conv runs (the MLP says it has none), a probe digit each
    images = at.get("image")
    assert len(images) == 2 + 3
    assert any(c == "No conv layer: no filters to show." for c in captions(at))
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    charts = at.get("vega_lite_chart")
    assert sum('"probability"' in c.proto.spec for c in charts) == 3     # one per run
    norms = [c for c in charts if "norm of the whole network" in c.proto.spec]
    assert len(norms) == 2                                   # weights, gradient
    curves = []
    for chart, what in zip(norms, ("weights", "gradient")):
        assert '"rule"' in chart.proto.spec
        data = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets]
        df = next(df for df in data if "norm" in df)
        assert set(df["of"]) == {what} and (df["norm"] > 0).all()
        assert set(df["run"]) == {"fast_cnn (pretrained)", "warmup_mlp (pretrained)",
                                  f"short · run {mine.id[-6:]}"}
        curves.append(df)
    mlp = curves[0][curves[0]["run"] == "warmup_mlp (pretrained)"]
    assert len(mlp) == len(shipped("warmup_mlp")["epoch"])      # a point per snapshot

def test_norm_curves_are_computed_once_per_content(compare, monkeypatch):
    """Every view of Compare redrew the norm curves from rows computed and hashed anew;
    now a view of the same runs at the same epoch reuses them."""
    import pages.compare_snapshots as snapshots

    at, _, _ = compare
    calls = []
    real = snapshots.norm_rows
    monkeypatch.setattr(snapshots, "norm_rows", lambda *a: calls.append(1) or real(*a))
    at.run()
    assert not at.exception and calls == []
    assert sum("norm of the whole network" in c.proto.spec
               for c in at.get("vega_lite_chart")) == 2
    slider(at).set_value(1).run()                            # another epoch: drawn anew
    assert calls == [1]


def test_play_advances_the_shared_slider(compare):
    at, _, _ = compare
    at.toggle(key="compare_snap_play").set_value(True).run()
    assert not at.exception
    first = slider(at).value
    at.run()
    assert slider(at).value == (first + 1) % len(slider(at).options)


def test_no_run_with_snapshots_shows_only_the_sentence(open_page):
    from core.workspace import new_workspace_id

    ws = new_workspace_id()
    bare = user_run(ws, "bare", None)
    at = open_page("compare", query={"ws": ws}, state={"compare_pinned": [bare.id]})
    assert not at.exception
    assert not any(str(s.key).startswith("compare_snap_pos_") for s in at.select_slider)
    assert any("bare" in t.value and "no snapshots" in t.value for t in at.text)


def test_a_stored_position_past_the_end_shows_the_last_epoch(open_page):
    """A run's snapshots can become fewer (a long run's are thinned out): a position kept
    from before shows the last one (Streamlit would reset it to the first)."""
    from core.workspace import new_workspace_id

    ws = new_workspace_id()
    arrays = shipped("fast_cnn")
    run = user_run(ws, "thinned", arrays)
    at = open_page("compare", query={"ws": ws}, state={"compare_pinned": [run.id]})
    s = slider(at)
    s.set_value(len(arrays["epoch"]) - 1).run()
    fewer = {k: (v[:2] if k not in ("layers", "probe", "probe_label") else v)
             for k, v in arrays.items()}
    RunStore().save_snapshots(run.id, fewer)
    at.run()
    assert not at.exception
    assert len(slider(at).options) == 2 and slider(at).value == 1
