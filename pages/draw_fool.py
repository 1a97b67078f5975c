"""Draw & inspect, "How little it takes to fool it": the smallest change to the digit on
the page that makes the model read another digit (see :mod:`core.adversarial`)."""
from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from core.adversarial import Attack, fool  # TensorFlow is imported on a click only
from core.errors import LayerLabError
from core.imaging import colorize, enlarge
from pages import handoff
from pages.common import show_error

ANY_OTHER = "any other digit"
_RESULT = "draw_fool_result"      # (digit digest, model key, target, Attack)


def fool_section(model) -> None:
    """The section: a target, a button, then original / perturbation / perturbed digit."""
    digit = handoff.current_digit()
    if digit is None:
        return
    st.subheader("How little it takes to fool it")
    st.caption("A few rounds of small gradient steps (PGD) look for the smallest change "
               "to every pixel, at most ε each, that makes the model read another digit.")
    c = st.columns([2, 2])
    choice = c[0].selectbox("Make it read", [ANY_OTHER, *map(str, range(10))],
                            key="draw_fool_target")
    target = None if choice == ANY_OTHER else int(choice)
    key = (hashlib.sha1(digit.image.tobytes()).hexdigest(), digit.model_key, target)
    c[1].markdown("&nbsp;")                        # aligns the button with the box
    if c[1].button("Find the smallest change", key="draw_fool_go"):
        try:
            with st.spinner("Searching for the smallest perturbation…"):
                st.session_state[_RESULT] = (*key, fool(model, digit.image, target))
        except LayerLabError as err:
            show_error(err)
            return
    stored = st.session_state.get(_RESULT)
    if isinstance(stored, tuple) and len(stored) == 4 and tuple(stored[:3]) == key \
            and isinstance(stored[3], Attack):
        show_attack(stored[3])


def show_attack(attack) -> None:
    """Original, perturbation (diverging colours centred on 0), perturbed digit, figures,
    the new probabilities and what a person would read."""
    bound = max(attack.budget, 1e-6)
    panels = [("Original", enlarge(_gray(attack.original), 140)),
              (f"Perturbation (±{attack.budget:.3f})",
               colorize(attack.perturbation, -bound, bound, "diverging", 5)),
              (f"Perturbed: reads {attack.new_class}", enlarge(_gray(attack.perturbed), 140))]
    for col, (title, img) in zip(st.columns(3), panels):
        col.image(img, caption=title, width=140, output_format="PNG")
    st.caption("Perturbation: red pixels were made brighter, blue ones darker, white ones "
               "left as they were.")
    m = st.columns(4)
    m[0].metric("Now reads", str(attack.new_class),
                f"{attack.probabilities.max():.1%} sure", delta_color="off")
    m[1].metric("ε (L∞)", f"{attack.linf:.3f}", f"{attack.linf * 255:.0f} of 255 levels",
                delta_color="off")
    m[2].metric("L2", f"{attack.l2:.2f}")
    m[3].metric("Gradient steps", str(attack.steps))
    st.vega_lite_chart(spec={
        "data": {"values": [{"digit": str(d), "probability": float(p),
                             "when": "perturbed"} for d, p in enumerate(attack.probabilities)]
                 + [{"digit": str(d), "probability": float(p), "when": "original"}
                    for d, p in enumerate(attack.clean_probabilities)]},
        "mark": "bar", "title": "Probability of each digit, before and after",
        "height": 200,
        "encoding": {"x": {"field": "digit", "type": "nominal", "axis": {"labelAngle": 0}},
                     "xOffset": {"field": "when", "sort": ["original", "perturbed"]},
                     "y": {"field": "probability", "type": "quantitative",
                           "scale": {"domain": [0, 1]}},
                     "color": {"field": "when", "title": None,
                               "sort": ["original", "perturbed"]}}}, width="stretch")
    st.text(verdict(attack))


def verdict(attack) -> str:
    """One plain sentence on what happened, and what a person still reads."""
    wanted = "another digit" if attack.target is None else str(attack.target)
    if attack.budget == 0.0:
        return f"The model already reads this digit as {attack.new_class}: pick another."
    if not attack.success:
        return (f"Even changing every pixel by up to {attack.budget:.2f} did not make the "
                f"model read {wanted}; it still reads {attack.new_class}.")
    return (f"Changing no pixel by more than {attack.linf:.3f} ({attack.linf * 255:.0f} "
            f"of 255 grey levels) makes the model read {attack.new_class} instead of "
            f"{attack.clean_class}, yet a person still reads the original "
            f"{attack.clean_class}.")


def _gray(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] as uint8 gray levels."""
    return np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)
