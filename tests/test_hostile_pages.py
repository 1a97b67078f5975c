"""Hostile input through every page's own widgets (issue 12, "0 raw error boxes"): text
fields, numbers at their extremes, the ``?ws=`` link, uploads through the pages'
uploaders, runs whose names are markdown, and session state a page reads back set to
nonsense. For each: no raw error box (``at.exception``), nothing from the input rendered
as a link or an image, and a sentence where the input is refused.

Each case is a row (page, name); ``test_page_corpus_kinds`` counts them.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from core.runs import Run, RunStore, new_run_id
from core.workspace import new_workspace_id
from tests.test_hostile import IMAGES, SPECS

EVIL = "evil.example"
# A phishing line: inline code breaking out, bold, a link and an external image.
PAYLOAD = f"x` **bold** [link](https://{EVIL}) ![i](https://{EVIL}/p.png)"
TEXTS = {
    "markdown link and image": PAYLOAD,
    "HTML and a script": f"<img src=https://{EVIL}/p.png onerror=alert(1)><script>x</script>",
    "10,000 characters": "A" * 10_000,
    "NUL bytes": "a\x00b\x00" * 8,
    "RTL override and zero-width": "\u202e\u200b\u200d\ufeffevil\u2066",
    "only spaces": " " * 60,
}
# Element types whose text Streamlit renders as markdown (links and images included).
MARKDOWN_BODIES = {"markdown", "caption", "error", "warning", "info", "success", "title",
                   "header", "subheader", "toast"}


# -- what every case asserts -------------------------------------------------------------
def nodes(node) -> list:
    """Every element and block under an AppTest node."""
    children = getattr(node, "children", None) or {}
    return [node] + [n for child in children.values() for n in nodes(child)]


def markdown_texts(at) -> list[str]:
    """Every string on the page that Streamlit renders as markdown: bodies of markdown,
    captions, alerts, headings and toasts; widget labels and help; radio options;
    expander labels."""
    texts = []
    for n in nodes(at._tree):
        proto = getattr(n, "proto", None)
        if n.type in MARKDOWN_BODIES:
            texts.append(getattr(proto, "body", "") or str(getattr(n, "value", "")))
        for name in ("label", "help"):
            value = getattr(proto, name, None)
            if isinstance(value, str):
                texts.append(value)
        if n.type == "radio":
            texts += list(proto.options)
        if getattr(proto, "WhichOneof", None) and proto.DESCRIPTOR.name == "Block" \
                and proto.WhichOneof("type") == "expandable":
            texts.append(proto.expandable.label)
    return texts


def assert_safe(at) -> None:
    """No raw error box, and nothing hostile rendered as markdown: the payload's host
    never reaches a markdown field (GFM would link even a bare URL), no image syntax."""
    assert not at.exception, [e.value for e in at.exception]
    for text in markdown_texts(at):
        assert EVIL not in text, text
        assert "![" not in text, text
        assert "\x00" not in text, repr(text)


def refusals(at) -> list[str]:
    return [e.value for e in [*at.error, *at.warning]]


def assert_refused(at, needle: str = "") -> None:
    """Refused with a sentence: an error or warning that ends with a full stop."""
    assert_safe(at)
    said = refusals(at)
    assert said, "no error or warning shown"
    assert all(s.rstrip().endswith((".", ".)")) for s in said), said
    assert any(re.search(needle, s) for s in said), (needle, said)


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture
def ws() -> str:
    return new_workspace_id()


def add_run(ws: str, name: str, model=None, **fields) -> Run:
    """A finished run of the tiny CNN in ``ws`` called ``name`` (model saved if given)."""
    from core.presets import get_preset

    spec = get_preset("warmup_mlp").spec.to_dict() if model is None else fields.pop("spec")
    run = Run(id=new_run_id(), name=name, spec=spec,
              recipe={"optimizer": "adam", "learning_rate": 0.003, "batch_size": 64,
                      "epochs": 1}, workspace=ws, status="finished", params=9_000,
              test_accuracy=0.9, test_loss=0.3, epochs_done=1, wall_time_s=3.0,
              confusion=np.eye(10, dtype=int).tolist(),
              history={"loss": [0.5], "accuracy": [0.9], "val_loss": [0.4],
                       "val_accuracy": [0.9]}, **fields)
    store = RunStore()
    store.save_run(run)
    if model is not None:
        store.save_model(run.id, model)
    return run


@pytest.fixture
def hostile_runs(ws, tiny_trained):
    """Two runs named with the markdown payload and the 10,000-character name, with a
    saved model, in a fresh workspace."""
    spec, model = tiny_trained
    return [add_run(ws, PAYLOAD, model, spec=spec.to_dict()),
            add_run(ws, "B" * 10_000, model, spec=spec.to_dict())]


def opened(open_page, page: str | None, ws: str | None = None, **kw):
    """A page opened in AppTest, in workspace ``ws`` when given (it must hold runs)."""
    at = open_page(page, query={"ws": ws} if ws else None, **kw)
    if ws:
        assert at.session_state["workspace"] == ws
    return at


def text_input(at, label: str):
    return next(t for t in at.text_input if t.label == label)


def number_input(at, label: str):
    return next(n for n in at.number_input if n.label == label)


# -- Home: the link ----------------------------------------------------------------------
WS_LINKS = {**TEXTS, "percent-encoded markdown": "%5Bx%5D(https%3A%2F%2Fevil.example)",
            "32 hex digits and a newline": "0" * 32 + "\n", "upper-case hex": "A" * 32,
            "path traversal": "../../etc/passwd"}


@pytest.mark.parametrize("link", list(WS_LINKS), ids=list(WS_LINKS))
def test_home_hostile_link_gets_a_new_workspace_and_a_sentence(open_page, link):
    at = open_page(None, query={"ws": WS_LINKS[link]})
    assert_refused(at, "not valid")
    assert re.fullmatch(r"[0-9a-f]{32}", at.session_state["workspace"])
    assert at.title[0].value.endswith("Layer Lab")


# -- text fields on every page that has one ----------------------------------------------
FIELDS = [("builder", "Name"), ("models", "Name"), ("train", "Run name")]


@pytest.mark.parametrize("text", list(TEXTS), ids=list(TEXTS))
@pytest.mark.parametrize("page,label", FIELDS, ids=[f"{p}: {f}" for p, f in FIELDS])
def test_hostile_text_in_a_field_is_never_rendered(open_page, page, label, text):
    at = opened(open_page, page)
    text_input(at, label).input(TEXTS[text]).run()
    assert_safe(at)


# -- Builder -----------------------------------------------------------------------------
def upload_spec(at, data) -> None:
    data = data.encode() if isinstance(data, str) else data
    at.file_uploader(key="builder_upload").set_value(("spec.json", data,
                                                      "application/json")).run()


@pytest.mark.parametrize("name", [n for n, _, _ in SPECS if n != "100 MB of JSON"])
def test_builder_upload_refuses_hostile_specs_with_a_sentence(open_page, name):
    make, needle = next((m, e) for n, m, e in SPECS if n == name)
    if name == "a byte-order mark":       # as bytes the mark is read, then the empty stack
        needle = "stack is empty"
    at = opened(open_page, "builder")
    upload_spec(at, make())
    assert_refused(at, needle)


def test_builder_spec_named_with_markdown_is_not_rendered(open_page):
    from core.presets import get_preset

    spec = get_preset("keras_example").spec.to_dict()
    at = opened(open_page, "builder")
    upload_spec(at, __import__("json").dumps({**spec, "name": PAYLOAD}))
    assert_safe(at)


BUILDER_STATES = {
    "a layer that is not a dict": [42],
    "a layer without a type": [{"uid": "a1"}],
    "a layer of an unknown type": [{"uid": "a1", "type": PAYLOAD}],
    "a layer list that is a string": PAYLOAD,
    "100,000 layers": [{"uid": f"u{i}", "type": "Flatten"} for i in range(100_000)],
    "a parameter of the wrong type": [{"uid": "a1", "type": "Dense", "units": PAYLOAD}],
}


@pytest.mark.parametrize("state", list(BUILDER_STATES), ids=list(BUILDER_STATES))
def test_builder_survives_a_tampered_layer_list(open_page, state):
    at = opened(open_page, "builder", state={"builder_layers": BUILDER_STATES[state]})
    assert_safe(at)


@pytest.mark.parametrize("value", [0, -1, 10**9], ids=["0", "-1", "10^9"])
def test_builder_insert_position_at_extremes(open_page, value):
    at = opened(open_page, "builder")
    number_input(at, "Insert at position").set_value(value).run()
    at.button(key="builder_add").click().run()
    assert_safe(at)


# -- runs named by their students: every page that lists or shows them -------------------
RUN_PAGES = ["home", "models", "builder", "train", "compare", "sweep", "challenge", "cost",
             "draw", "my_digits", "data", "projections", "errors"]


@pytest.mark.parametrize("page", RUN_PAGES)
def test_runs_named_with_markdown_are_never_rendered(open_page, ws, hostile_runs, page):
    at = opened(open_page, None if page == "home" else page, ws)
    assert_safe(at)


def test_errors_page_with_the_hostile_run_picked(open_page, ws, hostile_runs):
    at = opened(open_page, "errors", ws)
    model = at.selectbox(key="err_model")
    model.select(next(o for o in model.options if "evil" in o)).run()
    assert_safe(at)


# -- Challenge ---------------------------------------------------------------------------
@pytest.mark.parametrize("text", list(TEXTS), ids=list(TEXTS))
def test_challenge_hostile_board_name_is_cleaned_or_refused(open_page, ws, text):
    add_run(ws, "mine")
    at = opened(open_page, "challenge", ws)
    at.text_input(key="challenge_name").input(TEXTS[text]).run()
    at.button(key="challenge_submit").click().run()
    assert_safe(at)
    if at.success:
        assert re.fullmatch(r"Submitted for [A-Za-z0-9 _.\-]{1,24}: .*\.", at.success[0].value)
    else:
        assert_refused(at, "name")


@pytest.mark.parametrize("text", list(TEXTS), ids=list(TEXTS))
def test_challenge_hostile_teacher_token_is_refused(open_page, ws, text, monkeypatch):
    monkeypatch.setenv("LAYERLAB_RESET_TOKEN", "the-real-token-1234")
    add_run(ws, "mine")
    at = opened(open_page, "challenge", ws)
    at.text_input(key="challenge_token").input(TEXTS[text]).run()
    at.button(key="challenge_reset").click().run()
    assert_refused(at, "token")


@pytest.mark.parametrize("value", [100, 50_000_000], ids=["least", "most"])
def test_challenge_budget_at_its_extremes_needs_the_token(open_page, ws, value):
    add_run(ws, "mine")
    at = opened(open_page, "challenge", ws)
    number_input(at, "Budget (parameters)").set_value(value).run()
    at.button(key="challenge_set_budget").click().run()
    assert_refused(at, "token")


# -- Draw & inspect ----------------------------------------------------------------------
def draw_upload(open_page):
    at = opened(open_page, "draw")
    at.radio(key="draw_source").set_value("Upload").run()
    return at


def test_draw_upload_refuses_every_hostile_picture_with_a_sentence(open_page):
    """The picture corpus of tests/test_hostile.py through the page's own uploader,
    each under a file name that is itself markdown."""
    at = draw_upload(open_page)
    for name, make, needle in IMAGES:
        at.file_uploader(key="draw_upload").set_value(
            (f"[{name}](https://{EVIL}).png", make(), "image/png")).run()
        if needle.startswith("Draw a digit"):          # a hint, not a refusal
            assert_safe(at)
            assert any(needle in i.value for i in at.info), (name, [i.value for i in at.info])
        else:
            assert_refused(at, re.escape(needle) if "(" not in needle else needle)


def test_a_refused_upload_is_named_as_the_user_knows_it(open_page):
    """The refusal names the file with its dot (a look-alike no URL is made of), not "x?png"."""
    at = draw_upload(open_page)
    at.file_uploader(key="draw_upload").set_value(
        ("digit.png", b"\x89PNG\r\n\x1a\n" + b"junk" * 50, "image/png")).run()
    assert_refused(at, "digit\u2024png")
    assert not any("digit?png" in e.value for e in at.error)


@pytest.mark.parametrize("value", [-1, 10**9], ids=["-1", "10^9"])
def test_draw_test_index_at_extremes(open_page, value):
    at = opened(open_page, "draw")
    at.radio(key="draw_source").set_value("Test set").run()
    at.number_input(key="draw_test_index").set_value(value).run()
    assert_safe(at)


DRAW_STATES = {
    "a sent digit that is text": {"draw_image": PAYLOAD},
    "a sent digit of the wrong shape": {"draw_image": np.zeros((5000, 5000, 7))},
    "a sent digit of NaN": {"draw_image": np.full((28, 28), np.nan)},
    "a sent index past the test set": {"draw_image": np.zeros((28, 28), np.uint8),
                                       "draw_image_index": 10**9},
}


@pytest.mark.parametrize("state", list(DRAW_STATES), ids=list(DRAW_STATES))
def test_draw_survives_a_tampered_sent_digit(open_page, state):
    at = opened(open_page, "draw", state=DRAW_STATES[state])
    assert_safe(at)


# -- the pages that read back what others wrote ------------------------------------------
OTHER_STATES = {
    ("projections", "a drawn digit that is text"): {"drawn_digit": PAYLOAD},
    ("projections", "a huge drawn digit"): {"drawn_digit": np.zeros((4000, 4000))},
    ("errors", "a chart selection that is not a dict"): {"err_heat": PAYLOAD},
    ("errors", "a chart selection with markdown points"): {
        "err_heat": {"selection": {"points": [{"true": PAYLOAD, "predicted": "x"}]}}},
    ("errors", "a preselected model that is markdown"): {"err_model": PAYLOAD},
    ("data", "a hardest-images result that is text"): {"data_hardest_models": PAYLOAD},
    ("train", "a Builder spec that is text"): {"builder_spec": PAYLOAD,
                                               "train_source": "Stack from the Builder"},
    ("train", "a training source that is markdown"): {"train_source": PAYLOAD},
    ("models", "an import job that is text"): {"import_job": PAYLOAD},
    ("models", "an import outcome that is markdown"): {"import_outcome": PAYLOAD},
    ("models", "an import outcome with a markdown name"): {
        "import_outcome": {"name": PAYLOAD, "params": 5, "accuracy": 0.5}},
    ("models", "an import outcome that is broken"): {"import_outcome": {"name": "x"}},
}


@pytest.mark.parametrize("page,state", list(OTHER_STATES), ids=[f"{p}: {s}" for p, s in OTHER_STATES])
def test_pages_survive_tampered_state(open_page, page, state):
    at = opened(open_page, page, state=OTHER_STATES[(page, state)])
    assert_safe(at)


def test_data_hardest_images_caption_does_not_render_run_names(open_page, ws, hostile_runs):
    at = opened(open_page, "data", ws)
    at.multiselect(key="data_models").set_value(
        [o for o in at.multiselect(key="data_models").options if "pretrained" not in o])
    at.run()
    at.button(key="data_hardest").click().run()
    assert_safe(at)
    assert any("Wrong for the most" in c.value for c in at.caption)


def page_kinds() -> dict[str, int]:
    """How many hostile inputs each page is tried with in this module."""
    texts = len(TEXTS)
    return {"Home": len(WS_LINKS) + 1,
            "Builder": texts + len(SPECS) - 1 + 1 + len(BUILDER_STATES) + 3 + 1,
            "Models": texts + 1 + 1, "Train": texts + 2 + 1, "Compare": 1,
            "Challenge": 2 * texts + 2 + 1,
            "Draw & inspect": len(IMAGES) + 2 + len(DRAW_STATES) + 1,
            "Data": 1 + 2, "Projections": 2 + 1, "Errors": 3 + 2}


def test_page_corpus_kinds():
    kinds = page_kinds()
    assert len(kinds) == 10 and min(kinds.values()) >= 1, kinds
    assert sum(kinds.values()) >= 130, kinds
