"""Data: MNIST at a glance — class counts, mean digits, a random gallery, pixel values and
the test images most models get wrong."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.analysis import class_counts, class_gallery, intensity_histogram, mean_images
from core.errors import LayerLabError
from core.imaging import enlarge
from core.wording import plain, plural
from pages.common import load_choice, mnist, model_choices, require_mnist, show_error
from pages.widgets import digit_grid


def split_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    data = mnist()
    return (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)


@st.cache_data(show_spinner=False)
def counts_table() -> pd.DataFrame:
    data = mnist()
    return pd.DataFrame({"digit": list(range(10)) * 2,
                         "split": ["train"] * 10 + ["test"] * 10,
                         "images": np.concatenate([class_counts(data.y_train),
                                                   class_counts(data.y_test)])})


@st.cache_data(show_spinner="Averaging the images…")
def means(split: str) -> np.ndarray:
    return mean_images(*split_arrays(split))


@st.cache_data(show_spinner=False)
def histogram(split: str, bins: int) -> pd.DataFrame:
    counts, edges = intensity_histogram(split_arrays(split)[0], bins)
    return pd.DataFrame({"from": edges[:-1], "to": edges[1:] - 1, "pixels": counts})


@st.cache_data(show_spinner=False)
def gallery_rows(split: str, per_class: int, seed: int) -> list[np.ndarray]:
    """One strip of random images per class."""
    images, labels = split_arrays(split)
    picks = class_gallery(labels, per_class, seed)
    return [digit_grid(images[idx], cols=per_class) for idx in picks]


def test_predictions(choice: str) -> np.ndarray:
    from core.analysis import content_key

    model = load_choice(choice)
    return predictions_of(content_key(model), model)


@st.cache_resource(show_spinner=False, max_entries=16)
def predictions_of(content: str, _model) -> np.ndarray:
    """Keyed by the model's ``content`` (its weights), not its run id."""
    from core.analysis import evaluate_any

    data = mnist()
    return evaluate_any(_model, data.x_test, data.y_test).predictions


def balance_sentence(train: pd.Series) -> str:
    """The smallest and largest training class, counted, not written in."""
    names = ["zeros", "ones", "twos", "threes", "fours", "fives", "sixes", "sevens",
             "eights", "nines"]
    low, high = int(train.idxmin()), int(train.idxmax())
    return (f"The classes are close to balanced: from {train[low]:,} {names[low]} to "
            f"{train[high]:,} {names[high]} in training.")


st.title("🔢 Data")
data = require_mnist()
st.caption(data.describe())

# -- counts -------------------------------------------------------------------------------
st.subheader("Images per class")
counts = counts_table()
left, right = st.columns([3, 2])
bars = alt.Chart(counts).mark_bar().encode(
    x=alt.X("digit:O", title="digit"), xOffset="split:N",
    y=alt.Y("images:Q", title="images"),
    color=alt.Color("split:N", title="split", scale=alt.Scale(domain=["train", "test"])),
    tooltip=["split", "digit", alt.Tooltip("images:Q", format=",")],
).properties(height=260)
left.altair_chart(bars, width="stretch", key="data_counts_chart")
wide = counts.pivot(index="digit", columns="split", values="images")[["train", "test"]]
wide["test share"] = wide["test"] / wide["test"].sum()
right.dataframe(wide, key="data_counts", width="stretch",
                column_config={"train": st.column_config.NumberColumn(format="localized"),
                               "test": st.column_config.NumberColumn(format="localized"),
                               "test share": st.column_config.NumberColumn(format="percent")})
right.caption(balance_sentence(wide["train"]))

# -- mean images --------------------------------------------------------------------------
st.subheader("The average digit")
split = st.radio("Split", ["train", "test"], horizontal=True, key="data_split")
avg = means(split)
cols = st.columns(10)
for digit, col in enumerate(cols):
    col.image(enlarge(avg[digit].round().astype(np.uint8), 84), caption=str(digit),
              width="stretch")
st.caption("Each picture is the pixel-wise mean of every image of that class: blurry where "
           "people write the digit differently, sharp where they agree.")

# -- gallery ------------------------------------------------------------------------------
st.subheader("Random images per class")
st.session_state.setdefault("data_seed", 0)
c = st.columns([3, 2, 2], vertical_alignment="bottom")
per_class = c[0].slider("Images per class", 4, 16, 10, key="data_per_class")
if c[1].button("🔀 Reshuffle", key="data_shuffle"):
    st.session_state.data_seed += 1
rows = gallery_rows(split, per_class, st.session_state.data_seed)
halves = st.columns(2)
for digit, strip in enumerate(rows):
    big = enlarge(strip, 2 * max(strip.shape[:2]))
    halves[digit % 2].image(big, caption=f"{digit}", width="stretch")

# -- pixel intensities --------------------------------------------------------------------
st.subheader("Pixel intensities")
bins = st.select_slider("Bins", [8, 16, 32, 64, 128, 256], value=32, key="data_bins")
hist = histogram(split, bins)
zero_share = float(hist["pixels"].iloc[0] / hist["pixels"].sum())
chart = alt.Chart(hist).mark_bar().encode(
    x=alt.X("from:Q", title="pixel value (0 = black background, 255 = ink)",
            bin=alt.Bin(binned=True, step=256 // bins), scale=alt.Scale(domain=[0, 256])),
    x2="to:Q",
    y=alt.Y("pixels:Q", title="pixels (log scale)", scale=alt.Scale(type="log")),
    y2=alt.datum(1),
    tooltip=[alt.Tooltip("from:Q", title="from"), alt.Tooltip("to:Q", title="to"),
             alt.Tooltip("pixels:Q", format=",")],
).properties(height=240)
st.altair_chart(chart, width="stretch", key="data_hist")
st.caption(f"{zero_share:.0%} of all pixels fall in the darkest bin: most of an MNIST image "
           f"is background, and ink pixels pile up near 255.")

# -- hardest images -----------------------------------------------------------------------
st.subheader("The hardest test images")
try:
    choices = model_choices()
except LayerLabError as err:
    show_error(err)
    choices = {}
if not choices:
    st.info("Once pretrained models or your own runs exist, this shows the test images "
            "most of them get wrong. Train one on the **Train** page.")
    st.stop()
picked = st.multiselect("Models", list(choices), default=list(choices), key="data_models")
top = st.slider("How many", 8, 48, 24, step=8, key="data_top")
if st.button(f"Find them ({plural(len(picked), 'model')})",
             key="data_hardest", disabled=not picked, type="primary"):
    try:
        with st.spinner("Evaluating the models on the 10,000 test images…"):
            st.session_state["data_hardest_models"] = {
                lbl: test_predictions(choices[lbl]) for lbl in picked}
    except LayerLabError as err:
        show_error(err)
found = st.session_state.get("data_hardest_models")
if found and isinstance(found, dict):
    from core.analysis import hardest_images

    preds = np.stack(list(found.values()))
    idx, wrong = hardest_images(list(preds), data.y_test, top)
    st.caption(f"Wrong for the most of these {plural(len(found), 'model')}: "
               f"{', '.join(plain(lbl, 60) for lbl in found)}. Caption: true label → most common wrong answer.")
    cols = st.columns(8)
    for n, (i, w) in enumerate(zip(idx, wrong)):
        answers = preds[:, i][preds[:, i] != data.y_test[i]]
        common = int(np.bincount(answers, minlength=10).argmax())
        cols[n % 8].image(enlarge(data.x_test[i], 84), width=84,
                          caption=f"#{i}: {data.y_test[i]} → {common} ({w}/{len(found)})")
