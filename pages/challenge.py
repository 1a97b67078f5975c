"""Challenge: the best accuracy under a parameter budget, on a board shared by the class."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import LayerLabError
from core.leaderboard import MAX_NAME, Leaderboard, check_submittable
from core.runs import Run
from pages.common import run_label, session_runs, show_error

st.title("🏆 Parameter-budget challenge")
board = Leaderboard()
workspace = st.session_state.workspace
try:
    budget = board.budget()
except LayerLabError as err:
    show_error(err)
    st.stop()
st.markdown(f"Train the most accurate network with **at most {budget:,} parameters**. "
            "Build it on the Builder page, train it on the Train page, then submit it here. "
            "Each run counts once; only networks trained on this server can be submitted.")


def choice_label(run: Run) -> str:
    """The selector's text for a run, marking why it cannot be submitted."""
    text = f"{run_label(run)} · {run.params:,} params · {run.test_accuracy:.2%}"
    if run.source != "session":
        return text + " · not trained here: not eligible"
    return text + (" · over the budget" if run.params > budget else "")


def refusal(run: Run) -> str | None:
    """Why ``run`` cannot be submitted (shown before Submit), or None."""
    if run.params > budget:
        return (f"This run has {run.params:,} parameters, over the budget of {budget:,}: "
                "it cannot be submitted. Make the network smaller on the Builder page.")
    try:
        check_submittable(run, workspace)
    except LayerLabError as err:
        return str(err)
    return None


finished = [r for r in session_runs() if r.test_accuracy is not None and r.params]
c = st.columns([3, 2, 1])
if finished:
    labels = {choice_label(r): r for r in finished}
    run = labels[c[0].selectbox("Your run", list(labels), key="challenge_run")]
    who = c[1].text_input("Name on the board", key="challenge_name", max_chars=MAX_NAME,
                          help="Letters, digits, spaces, '-', '_' or '.'.")
    why_not = refusal(run)
    if why_not:
        st.warning(why_not, icon="⚠️")
    if c[2].button("Submit", type="primary", key="challenge_submit",
                   disabled=why_not is not None):
        try:
            entry = board.submit_run(who, run, workspace=workspace)
            st.success(f"Submitted for {entry.name}: {entry.test_accuracy:.2%} with "
                       f"{entry.params:,} parameters.")
        except LayerLabError as err:
            show_error(err)
else:
    st.info("You have no finished runs yet. Train one first.")


@st.fragment(run_every=5)
def standings() -> None:
    st.subheader("Leaderboard")
    try:
        best = board.best_per_name()
    except LayerLabError as err:
        show_error(err)
        return
    if not best:
        st.caption("No entries yet — be the first.")
        return
    st.dataframe(pd.DataFrame([{"rank": i + 1, "name": e.name,
                                "test accuracy": e.test_accuracy, "params": e.params,
                                "training time (s)": e.train_time_s}
                               for i, e in enumerate(best)]),
                 hide_index=True, width="stretch",
                 column_config={
                     "rank": st.column_config.NumberColumn(format="%,d"),
                     "test accuracy": st.column_config.NumberColumn(format="percent"),
                     "params": st.column_config.NumberColumn(format="%,d"),
                     "training time (s)": st.column_config.NumberColumn(format="%,.1f")})


standings()

with st.expander("Teacher controls"):
    token = st.text_input("Teacher token", type="password", key="challenge_token",
                          help="Set with the LAYERLAB_RESET_TOKEN environment variable.")
    c = st.columns(3)
    new_budget = c[0].number_input("Budget (parameters)", 100, 50_000_000, budget, 500,
                                   key="challenge_budget")
    if c[1].button("Set budget", key="challenge_set_budget"):
        try:
            board.set_budget(int(new_budget), token, who=workspace)
            st.rerun()
        except LayerLabError as err:
            show_error(err)
    if c[2].button("Reset board", key="challenge_reset"):
        try:
            board.reset(token, who=workspace)
            st.success("The board is empty.")
        except LayerLabError as err:
            show_error(err)
