"""Five browser sessions train at once: each gets its own result, the server-wide cap
queues the rest, and no session sees another's runs."""
from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

from core.training import SCHEDULER

K = "Preset_keras_example"


def ready_session(open_page, seed: int) -> AppTest:
    """A Train page with its recipe chosen, Start not yet pressed."""
    at = open_page("train")
    at.selectbox(key="train_preset").set_value("keras_example").run()
    at.selectbox(key=f"tr_sub_{K}").set_value("1,000").run()
    at.slider(key=f"tr_ep_{K}").set_value(1).run()
    at.number_input(key=f"tr_seed_{K}").set_value(seed).run()
    at.text_input(key=f"tr_name_{K}").input(f"session-{seed}").run()
    assert not at.exception
    return at


def waiting(at: AppTest) -> bool:
    return any("Waiting for a free training slot" in w.value for w in at.warning)


def test_five_sessions_train_at_once_isolated_and_queued(open_page):
    assert SCHEDULER.max_active == 2
    # all five pages ready first, then Start pressed in quick succession: a run of 1,000
    # images ends in seconds, so pressing it while setting up the next page may never queue
    sessions = [ready_session(open_page, seed) for seed in range(5)]
    saw_queue = False
    for at in sessions:
        at.button(key="train_start").click().run()
        assert not at.exception
        saw_queue = saw_queue or waiting(at)
    finished: dict[int, dict] = {}
    deadline = time.time() + 400
    while len(finished) < 5 and time.time() < deadline:
        time.sleep(0.5)
        for i, at in enumerate(sessions):
            if i in finished:
                continue
            at.run()
            assert not at.exception
            saw_queue = saw_queue or waiting(at)
            metrics = {m.label: m.value for m in at.metric}
            if "Test accuracy" in metrics:
                finished[i] = metrics
        assert SCHEDULER.active <= 2
    assert len(finished) == 5, f"only {sorted(finished)} finished"
    assert saw_queue, "with 5 runs and a cap of 2, some session must have queued"
    workspaces = {at.session_state["workspace"] for at in sessions}
    assert len(workspaces) == 5
    for i, at in enumerate(sessions):
        job = at.session_state["job"]
        assert job.run.name == f"session-{i}" and job.run.status == "finished"
        at.radio(key="train_source").set_value("Resume one of my runs").run()
        options = at.selectbox(key="train_resume").options
        assert len(options) == 1 and f"session-{i}" in options[0], options
