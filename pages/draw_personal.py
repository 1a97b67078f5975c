"""Draw & inspect's "Add to my digits": the current drawing, with its label, into the
workspace's personal set (core.personal). The My digits page shows and uses the set."""
from __future__ import annotations

import hashlib

import streamlit as st

from core.errors import LayerLabError
from core.personal import PersonalStore
from pages import handoff
from pages.common import show_error


def add_to_my_digits(where, predicted: int) -> None:
    """In ``where`` (a column): a label picker that starts at ``predicted`` for each new
    digit, and a button that saves the digit on Draw now with that label."""
    digit = handoff.current_digit()
    if digit is None:
        return
    digest = hashlib.sha1(digit.image.tobytes()).hexdigest()
    if st.session_state.get("draw_personal_for") != digest:   # a new digit: its prediction
        st.session_state.draw_personal_for = digest
        st.session_state.draw_personal_label = int(predicted)
    with where:
        c = st.columns([2, 3], vertical_alignment="bottom")
        label = c[0].selectbox("Its label", range(10), key="draw_personal_label",
                               help="The prediction; correct it if the model misread you.")
        if c[1].button("Add to my digits", key="draw_personal_add", icon="➕",
                       help="Keep this drawing in your personal set, on the server."):
            try:
                PersonalStore().add(st.session_state.workspace, digit.image, label)
                n = len(PersonalStore().load(st.session_state.workspace))
            except LayerLabError as err:
                show_error(err)
                return
            st.success(f"Added as a {label}; your set holds {n} digit"
                       f"{'s' if n != 1 else ''}.")
            st.page_link("pages/my_digits.py", label="See them on My digits", icon="🖐️")
