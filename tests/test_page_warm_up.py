"""The Errors page's first evaluation, started in the background at the server's first
page view (core/page_warm_up.py): the page then finds it done."""
from __future__ import annotations

from core import evaluation, page_warm_up


def test_the_first_page_view_evaluates_the_errors_pages_default_model(open_page,
                                                                      monkeypatch, mnist):
    from core import pretrained
    from core.analysis import evaluate_any

    monkeypatch.setenv("LAYERLAB_WARM_UP_ERRORS", "1")
    open_page()                                           # the server's first page view
    thread = page_warm_up.errors_thread
    assert thread is not None, "the first page view started no Errors warm-up"
    thread.join(300)
    assert page_warm_up.errors_state == "done"
    before = evaluation.computed
    model_a, model_b = pretrained.available()[:2]        # what the Errors page opens on
    for name in (model_a, model_b):
        result = evaluate_any(pretrained.load_model(name), mnist.x_test, mnist.y_test)
        assert result.confusion.sum() == len(mnist.y_test)
    assert evaluation.computed == before                  # read, not computed again
    loads = []
    monkeypatch.setattr(pretrained, "load_model", lambda *a: loads.append(a))
    for name in (model_a, model_b, page_warm_up.DRAW_MODEL):   # the pages' models: loaded
        assert pretrained.shared_model(name) is not None
    assert loads == []
    from core import model_cache                           # Draw's inspector: compiled
    assert "inspector" in model_cache.names(pretrained.shared_model(page_warm_up.DRAW_MODEL))
    page_warm_up.start_errors_warm_up()                   # once per server
    assert page_warm_up.errors_thread is thread

