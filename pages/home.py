"""Home: what Layer Lab does, with a link to each page."""
import streamlit as st

from core import pretrained
from core.presets import PRESETS
from core.wording import plural, span
from pages.common import pretrained_record

# (page, name, icon, what it does) for each link, by column
NETWORKS = [
    ("pages/models.py", "Models", "🧱", "Every preset layer by layer: shapes, parameters, "
     "memory and compute, plus Keras code to take away."),
    ("pages/train.py", "Train", "🏋️", "Train a network with live loss and accuracy curves, "
     "stop it, resume it, keep it."),
    ("pages/builder.py", "Builder", "🧩", "Assemble your own stack with sliders and see its "
     "cost change with every edit."),
    ("pages/compare.py", "Compare", "⚖️", "Runs side by side: figures, stack diffs, curves "
     "and the accuracy-versus-size frontier."),
    ("pages/sweep.py", "Sweep", "🔭", "Let the computer search: how small can a network "
     "be and still read 99% of the digits?"),
    ("pages/challenge.py", "Challenge", "🏆", "The best accuracy under a parameter budget, on "
     "a leaderboard shared by the class."),
    ("pages/cost.py", "Real cost", "💾", "Any model at float16 and int8: file size, accuracy "
     "and speed measured, not estimated."),
    ("pages/draw.py", "Draw & inspect", "✏️", "Draw a digit and see what every layer sees: "
     "preprocessing, prediction, filters, feature maps and where the model looked."),
    ("pages/my_digits.py", "My digits", "🖐️", "Your own handwriting: how any model reads "
     "it, and a model fine-tuned on it."),
]
DATA = [
    ("pages/data.py", "Data", "🔢", "MNIST at a glance: class counts, the average digit, "
     "random galleries, pixel values and the hardest images."),
    ("pages/projections.py", "Projections", "🗺️", "PCA, t-SNE and UMAP maps of raw pixels "
     "or of any layer of any model."),
    ("pages/errors.py", "Errors", "❌", "Confusion matrices you can click into, per-class "
     "scores, and what one model fixes that another gets wrong."),
]


def links(pages: list[tuple[str, str, str, str]]) -> None:
    """Each page's link and, under it, what the page does (a link's label never wraps)."""
    for page, name, icon, what in pages:
        st.page_link(page, label=f"**{name}**", icon=icon)
        st.caption(what)


def start_steps() -> str:
    """The first steps, with the presets' range and fast_cnn's shipped accuracy."""
    sizes = span([p.expected_params for p in PRESETS.values()], "parameters")
    fast = ""
    if "fast_cnn" in pretrained.available():     # the shipped record's figure, not a literal
        record = pretrained_record("fast_cnn")
        fast = (f": its shipped weights reached {record['test_accuracy']:.2%} test accuracy "
                f"in {plural(record['epochs_done'], 'epoch')}")
    return (f"1. Open **Models** and compare the {len(PRESETS)} presets, from {sizes}.\n"
            f"2. Open **Train**, choose `fast_cnn` and press **Start**{fast}.\n"
            "3. Pretrained copies of every preset are included, so nothing has to train "
            "before you can explore.")


st.title("🔬 Layer Lab")
st.markdown(
    "Learn how a neural network sees a handwritten digit. Pick one of the classic MNIST "
    "networks or build your own, watch it learn live, then look inside it."
)

cols = st.columns(2)
with cols[0]:
    st.subheader("Networks")
    links(NETWORKS)
with cols[1]:
    st.subheader("How to start")
    st.markdown(start_steps())
    st.subheader("Data & errors")
    links(DATA)
