"""Watch it learn, in a real browser (issue 16 §2): a short run on the Train page shows its
snapshots live while it trains, then the replay (slider and Play) steps through them; a
preset's shipped snapshots replay too."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from bench._browser import open_app, wait_idle
from tests.e2e.menus import choose, set_slider, set_text

pytestmark = pytest.mark.browser
RUNNING = re.compile(r"Epoch \d+/\d+ · step")
LIVE = "Watch it learn — snapshot at epoch"


def replay_position(page: Page, run_key: str):
    """The replay slider's thumb (its text: "epoch 1.00")."""
    return page.locator(f".st-key-replay_pos_{run_key}").get_by_test_id("stSliderThumbValue")


def test_a_short_run_shows_its_snapshots_live_then_replays_them(server, page):
    open_app(page, server.url, "Train", path="train")
    choose(page, "train_preset", "keras_example")
    set_slider(page, "tr_ep_Preset_keras_example", 2)
    choose(page, "tr_sub_Preset_keras_example", "5,000")
    set_text(page, "tr_name_Preset_keras_example", "watch_me")
    page.get_by_role("button", name="▶ Start").click()
    expect(page.get_by_text(RUNNING)).to_be_visible()
    # live: the first epoch's snapshot is shown while the second still trains
    expect(page.get_by_text(f"{LIVE} 1.00")).to_be_visible()
    expect(page.get_by_role("button", name="■ Stop")).to_be_enabled()
    expect(page.get_by_text(RUNNING)).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Finished: test accuracy"))).to_be_visible(
        timeout=180_000)
    # the live fragment's last drawing stays on screen while the run's end reruns the
    # page, which draws it anew: two for a moment, one once that run has ended
    expect(page.get_by_text(f"{LIVE} 2.00").first).to_be_visible()
    wait_idle(page)                   # the page's last run (results, replay) has ended
    expect(page.get_by_text(f"{LIVE} 2.00")).to_have_count(1)
    # the replay offers the run that just ended first; its slider holds every snapshot
    expect(page.locator(".st-key-replay_source [role=combobox]")).to_have_value(
        re.compile(r"^watch_me · run [0-9a-f]{6}, finished$"))
    slider = page.locator("[class*=st-key-replay_pos_] input[type=range]")
    expect(slider).to_have_value("0")
    n = int(slider.get_attribute("max")) + 1
    assert n >= 5, n                  # start, inside the first epoch, then 1 and 2
    thumb = page.locator("[class*=st-key-replay_pos_]").get_by_test_id("stSliderThumbValue")
    expect(thumb).to_have_text("epoch 0.00")
    slider.focus()
    slider.press("End")
    expect(thumb).to_have_text("epoch 2.00")
    wait_idle(page)
    expect(page.get_by_text(re.compile(r"^Validation accuracy at this point: .*\(was "))) \
        .to_be_visible()
    # Play steps on by itself: from the last snapshot round to the first, then on
    page.get_by_text("▶ Play", exact=True).click()
    expect(thumb).to_have_text("epoch 0.00")
    expect(thumb).not_to_have_text("epoch 0.00")
    assert "Traceback" not in server.log_text()


def test_a_presets_shipped_snapshots_replay(small_cnn, server, page):
    open_app(page, server.url, "Train", path="train")
    choose(page, "replay_source", "small_cnn (pretrained)")
    expect(page.get_by_text(re.compile("^Snapshots of another training of this preset"))) \
        .to_be_visible()
    slider = page.locator(".st-key-replay_pos_small_cnn input[type=range]")
    slider.focus()
    slider.press("End")
    expect(replay_position(page, "small_cnn")).to_have_text("epoch 12.00")
    expect(page.get_by_text(re.compile(r"^Validation accuracy at this point: 9\d\.\d\d%")))\
        .to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
