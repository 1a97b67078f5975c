"""Challenge: the best accuracy under a parameter budget, on a board shared by the class."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import LayerLabError
from core.leaderboard import Leaderboard
from pages.common import run_label, session_runs, show_error

st.title("🏆 Parameter-budget challenge")
board = Leaderboard()
try:
    budget = board.budget()
except LayerLabError as err:
    show_error(err)
    st.stop()
st.markdown(f"Train the most accurate network with **at most {budget:,} parameters**. "
            "Build it on the Builder page, train it on the Train page, then submit it here.")

eligible = [r for r in session_runs() if r.test_accuracy is not None and r.params]
c = st.columns([3, 2, 1])
if eligible:
    labels = {run_label(r, f"{r.params:,} params", f"{r.test_accuracy:.2%}"): r
              for r in eligible}
    choice = c[0].selectbox("Your run", list(labels), key="challenge_run")
    who = c[1].text_input("Name on the board", key="challenge_name", max_chars=24)
    if c[2].button("Submit", type="primary", key="challenge_submit"):
        run = labels[choice]
        try:
            entry = board.submit(who, run.test_accuracy, run.params, run.wall_time_s, run.id)
            st.success(f"Submitted for {entry.name}: {entry.test_accuracy:.2%} with "
                       f"{entry.params:,} parameters.")
        except LayerLabError as err:
            show_error(err)
else:
    st.info("You have no finished runs yet. Train one first.")


@st.fragment(run_every=5)
def standings() -> None:
    st.subheader("Leaderboard")
    best = board.best_per_name()
    if not best:
        st.caption("No entries yet — be the first.")
        return
    st.dataframe(pd.DataFrame([{"rank": i + 1, "name": e.name,
                                "test accuracy": e.test_accuracy, "params": e.params,
                                "training time (s)": round(e.train_time_s, 1)}
                               for i, e in enumerate(best)]),
                 hide_index=True, width="stretch",
                 column_config={"test accuracy": st.column_config.NumberColumn(format="percent")})


standings()

with st.expander("Teacher controls"):
    token = st.text_input("Teacher token", type="password", key="challenge_token",
                          help="Set with the LAYERLAB_RESET_TOKEN environment variable.")
    c = st.columns(3)
    new_budget = c[0].number_input("Budget (parameters)", 100, 50_000_000, budget, 500,
                                   key="challenge_budget")
    if c[1].button("Set budget", key="challenge_set_budget"):
        try:
            board.set_budget(int(new_budget), token)
            st.rerun()
        except LayerLabError as err:
            show_error(err)
    if c[2].button("Reset board", key="challenge_reset"):
        try:
            board.reset(token)
            st.success("The board is empty.")
        except LayerLabError as err:
            show_error(err)
