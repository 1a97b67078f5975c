"""Home: what Layer Lab does, with a link to each page."""
import streamlit as st

from pages.common import page_guard

page_guard()
st.title("🔬 Layer Lab")
st.markdown(
    "Learn how a neural network sees a handwritten digit. Pick one of the classic MNIST "
    "networks or build your own, watch it learn live, then look inside it."
)

cols = st.columns(2)
with cols[0]:
    st.subheader("Networks")
    st.page_link("pages/models.py", label="**Models** — every preset layer by layer: "
                 "shapes, parameters, memory and compute, plus Keras code to take away.",
                 icon="🧱")
    st.page_link("pages/train.py", label="**Train** — train a network with live loss and "
                 "accuracy curves, stop it, resume it, keep it.", icon="🏋️")
    st.page_link("pages/builder.py", label="**Builder** — assemble your own stack with "
                 "sliders and see its cost change with every edit.", icon="🧩")
    st.page_link("pages/compare.py", label="**Compare** — runs side by side: figures, "
                 "stack diffs, curves and the accuracy-versus-size frontier.", icon="⚖️")
    st.page_link("pages/challenge.py", label="**Challenge** — the best accuracy under a "
                 "parameter budget, on a leaderboard shared by the class.", icon="🏆")
    st.page_link("pages/draw.py", label="**Draw & inspect** — draw a digit and see what "
                 "every layer sees: preprocessing, prediction, filters, feature maps and "
                 "where the model looked.", icon="✏️")
with cols[1]:
    st.subheader("How to start")
    st.markdown(
        "1. Open **Models** and compare the presets — from a 111,146-parameter MLP to a "
        "34,826-parameter convnet.\n"
        "2. Open **Train**, choose `fast_cnn` and press **Start**: it reaches about 99% "
        "test accuracy in well under a minute on a laptop CPU.\n"
        "3. Pretrained copies of every preset are included, so nothing has to train "
        "before you can explore."
    )
    st.subheader("Data & errors")
    st.page_link("pages/data.py", label="**Data** — MNIST at a glance: class counts, the "
                 "average digit, random galleries, pixel values and the hardest images.",
                 icon="🔢")
    st.page_link("pages/projections.py", label="**Projections** — PCA, t-SNE and UMAP maps "
                 "of raw pixels or of any layer of any model.", icon="🗺️")
    st.page_link("pages/errors.py", label="**Errors** — confusion matrices you can click "
                 "into, per-class scores, and what one model fixes that another gets "
                 "wrong.", icon="❌")
