"""Editing and running the queue from the web page, as with the Qt queue monitor: selecting
items (click, Shift, Ctrl, keyboard), moving, duplicating and removing them as one batch, drag
and drop, Execute now, a spreadsheet upload; loop mode, environment update, kernel interrupt,
the lock. Headless Chromium against gunicorn (two workers), the real RE Manager and Redis; what
the page did is checked in RE Manager itself."""

from __future__ import annotations

import openpyxl
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from . import web_fixtures
from .support import PLAN_SLOW, wait_for

# this module's gateway, browser and signed-in page
web_gateway, driver, page = web_fixtures.web_gateway, web_fixtures.driver, web_fixtures.page


def _counts(zmq_rm) -> list[int]:
    """The num of each count in RE Manager's queue, in order."""
    return [item["kwargs"]["num"] for item in zmq_rm.queue_get()["items"]]


def _queue_counts(web_gateway, page, *nums: int) -> None:
    items = [{"item_type": "plan", "name": "count", "args": [["det1"]], "kwargs": {"num": n}} for n in nums]
    answer = web_gateway.api("POST", "queue/item/add/batch", json={"items": items}).json()
    assert answer.get("success") is True, answer
    page.wait(lambda: len(page.queue_rows()) == len(nums), f"{len(nums)} items in the page's queue")


def _row(page, num: int):
    """The queue row of the count with this num."""
    return next(row for row in page.queue_rows() if f"num={num}" in row.text)


def _row_button(page, num: int, name: str):
    (button,) = page.buttons(name, _row(page, num))
    return button


def _pick(page, num: int):
    return _row(page, num).find_element(By.CSS_SELECTOR, "input[type=checkbox]")


def _click_with(page, element, *keys: str) -> None:
    chain = ActionChains(page.driver)
    for key in keys:
        chain.key_down(key)
    chain.click(element)
    for key in keys:
        chain.key_up(key)
    chain.perform()


def _selected(page) -> list[str]:
    return [row.text.split("\n")[0] for row in page.queue_rows() if "selected" in row.get_attribute("class")]


def test_select_with_click_shift_and_ctrl_and_act_on_the_batch(page, web_gateway, manager_idle):
    _queue_counts(web_gateway, page, 1, 2, 3, 4, 5)
    queue = page.region("Queue")
    # a click on an item selects it alone; Shift+click selects the range; Ctrl+click one more
    _row(page, 2).find_element(By.CSS_SELECTOR, ".item-main").click()
    _click_with(page, _row(page, 3).find_element(By.CSS_SELECTOR, ".item-main"), Keys.SHIFT)
    _click_with(page, _row(page, 5).find_element(By.CSS_SELECTOR, ".item-main"), Keys.CONTROL)
    page.wait(lambda: page.driver.find_element(By.ID, "queue-selected").text == "3 selected", "three selected")
    assert [_pick(page, n).is_selected() for n in (1, 2, 3, 4, 5)] == [False, True, True, False, True]

    page.button("Move selected to top", queue).click()
    wait_for(lambda: _counts(manager_idle) == [2, 3, 5, 1, 4], 15, "the batch at the top")
    page.wait(lambda: "num=2" in page.queue_names()[0], "the page to show the new order")
    page.button("Move selected to bottom", queue).click()
    wait_for(lambda: _counts(manager_idle) == [1, 4, 2, 3, 5], 15, "the batch at the bottom")

    # Ctrl+click takes one away again; the rest are duplicated after the last of them
    page.wait(lambda: "num=1" in page.queue_names()[0], "the page to show the order")
    _click_with(page, _row(page, 3).find_element(By.CSS_SELECTOR, ".item-main"), Keys.CONTROL)
    page.wait(lambda: page.driver.find_element(By.ID, "queue-selected").text == "2 selected", "two selected")
    page.button("Duplicate selected", queue).click()
    wait_for(lambda: _counts(manager_idle) == [1, 4, 2, 3, 5, 2, 5], 15, "the copies after the last selected")

    # the keyboard: Space on a check box, Shift+Down extends the selection, Escape clears it
    page.wait(lambda: len(page.queue_rows()) == 7, "the copies in the page")
    first = page.queue_rows()[0].find_element(By.CSS_SELECTOR, "input[type=checkbox]")
    first.send_keys(Keys.ESCAPE)
    page.wait(lambda: page.driver.find_element(By.ID, "queue-selected").text == "", "nothing selected")
    first.send_keys(Keys.SPACE)
    page.driver.switch_to.active_element.send_keys(Keys.SHIFT, Keys.ARROW_DOWN)
    page.wait(lambda: page.driver.find_element(By.ID, "queue-selected").text == "2 selected", "two by keyboard")
    page.button("Remove selected", queue).click()
    page.button("Remove", page.driver.find_element(By.ID, "confirm")).click()
    wait_for(lambda: _counts(manager_idle) == [2, 3, 5, 2, 5], 15, "the first two removed")
    page.button("Clear queue", queue).click()
    page.button("Clear queue", page.driver.find_element(By.ID, "confirm")).click()
    wait_for(lambda: _counts(manager_idle) == [], 15, "an empty queue")
    page.wait(lambda: page.queue_rows() == [], "the page's queue to be empty")
    assert page.errors_in_browser_log() == []


def test_drag_a_selection_and_move_items_to_the_ends_by_button_and_key(page, web_gateway, manager_idle):
    _queue_counts(web_gateway, page, 1, 2, 3, 4)
    # drag two selected items, by the handle of one of them, below the last item
    _pick(page, 1).click()
    _pick(page, 2).click()
    handle = _row(page, 1).find_element(By.CSS_SELECTOR, ".handle")
    last = _row(page, 4)
    ActionChains(page.driver).click_and_hold(handle).move_to_element_with_offset(last, 0, 5).release().perform()
    wait_for(lambda: _counts(manager_idle) == [3, 4, 1, 2], 15, "the dragged pair at the end")

    page.wait(lambda: "num=3" in page.queue_names()[0], "the page to show the new order")
    page.button("Move to bottom", _row(page, 3)).click()
    wait_for(lambda: _counts(manager_idle) == [4, 1, 2, 3], 15, "Move to bottom")
    # the focus stays with the moved item: Alt+Home takes it back to the top
    page.wait(lambda: "num=3" in page.queue_names()[-1], "the page to show it last")
    page.driver.switch_to.active_element.send_keys(Keys.ALT, Keys.HOME)
    wait_for(lambda: _counts(manager_idle) == [3, 4, 1, 2], 15, "Alt+Home")
    page.wait(lambda: "num=3" in page.queue_names()[0], "the page to show it first")
    page.button("Move to top", _row(page, 2)).click()
    wait_for(lambda: _counts(manager_idle) == [2, 3, 4, 1], 15, "Move to top")


def test_execute_now_runs_a_copy_at_once_and_leaves_the_queue(page, web_gateway, manager_closed):
    manager_open = manager_closed
    _queue_counts(web_gateway, page, 2)
    # possible only once the environment is open (the queue itself does not change)
    page.wait(lambda: not _row_button(page, 2, "Execute now").is_enabled(), "no Execute now without the environment")
    assert web_gateway.api("POST", "environment/open").json()["success"] is True
    page.wait(lambda: _row_button(page, 2, "Execute now").is_enabled(), "Execute now, with the environment", timeout=90)
    _row_button(page, 2, "Execute now").click()
    wait_for(lambda: manager_open.status()["items_in_history"] == 1, 60, "the item to run")
    done = manager_open.request("history_get")["items"][0]
    assert (done["name"], done["kwargs"], done["result"]["exit_status"]) == ("count", {"num": 2}, "completed")
    assert _counts(manager_open) == [2]  # the queued item stays where it was
    page.wait(lambda: page.history_statuses() == ["completed"], "the history in the page")


def test_a_spreadsheet_upload_and_a_refused_one(page, web_gateway, manager_idle, tmp_path):
    queue = page.region("Queue")
    good = tmp_path / "plans.csv"
    good.write_text("plan_name,args,num\n'count',\"['det1']\",7\n'count',\"['det2']\",8\n")
    page.field("Spreadsheet (.xlsx, .xls, .csv)", queue).send_keys(str(good))
    page.button("Upload spreadsheet", queue).click()
    wait_for(lambda: _counts(manager_idle) == [7, 8], 15, "the spreadsheet's plans in the queue")
    message = page.driver.find_element(By.ID, "upload-message")
    page.wait(lambda: message.text == "2 items from plans.csv added to the queue.", "the page's report")
    # an Excel workbook the same way
    workbook = tmp_path / "plans.xlsx"
    sheet = (book := openpyxl.Workbook()).active
    for row in (("plan_name", "args", "num"), ("'count'", "['det1']", 9)):
        sheet.append(row)
    book.save(workbook)
    page.field("Spreadsheet (.xlsx, .xls, .csv)", queue).send_keys(str(workbook))
    page.button("Upload spreadsheet", queue).click()
    wait_for(lambda: _counts(manager_idle) == [7, 8, 9], 15, "the workbook's plan in the queue")
    page.wait(lambda: message.text == "1 item from plans.xlsx added to the queue.", "the page's report")

    # RE Manager refuses a batch with an unknown plan: its message and the item's are shown
    bad = tmp_path / "bad.csv"
    bad.write_text("plan_name,args\n'count',\"['det1']\"\n'no_such_plan',\n")
    page.field("Spreadsheet (.xlsx, .xls, .csv)", queue).send_keys(str(bad))
    page.button("Upload spreadsheet", queue).click()
    page.wait(lambda: "Failed to add all items" in message.text, "RE Manager's refusal")
    assert "Item 2:" in message.text and "no_such_plan" in message.text
    assert "error" in message.get_attribute("class")
    # the converter refuses a file it cannot read
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    page.field("Spreadsheet (.xlsx, .xls, .csv)", queue).send_keys(str(text))
    page.button("Upload spreadsheet", queue).click()
    page.wait(lambda: "extension '.txt'" in message.text, "the converter's refusal")
    assert _counts(manager_idle) == [7, 8, 9]


def test_loop_mode_update_environment_interrupt_kernel_and_the_running_item(page, web_gateway, manager_open):
    page.field_by_text("Loop mode").click()
    wait_for(lambda: manager_open.status()["plan_queue_mode"]["loop"] is True, 15, "loop mode on")
    page.wait_status("Loop mode", lambda text: text == "on", "on")
    page.field_by_text("Loop mode").click()
    wait_for(lambda: manager_open.status()["plan_queue_mode"]["loop"] is False, 15, "loop mode off")
    page.field_by_text("Ignore failures").click()
    mode = {"loop": False, "ignore_failures": True}
    wait_for(lambda: manager_open.status()["plan_queue_mode"] == mode, 15, "failures ignored")
    page.field_by_text("Ignore failures").click()
    mode = {"loop": False, "ignore_failures": False}
    wait_for(lambda: manager_open.status()["plan_queue_mode"] == mode, 15, "failures not ignored")

    page.button("Update environment").click()
    message = page.driver.find_element(By.ID, "controls-message")
    page.wait(lambda: page.button("Update environment"), "the update to end")
    assert "error" not in message.get_attribute("class"), message.text

    # what RE Manager answers an interrupt of a kernel it does not run is shown as it is
    page.button("Interrupt kernel").click()
    page.button("Confirm", page.driver.find_element(By.ID, "confirm")).click()
    expected = manager_open.request("kernel_interrupt")
    if expected["success"]:
        page.wait(lambda: message.text == "" and page.button("Interrupt kernel"), "the interrupt")
    else:
        page.wait(lambda: message.text == expected["msg"], "RE Manager's answer")

    web_gateway.api("POST", "queue/item/add", json={"item": {**PLAN_SLOW, "kwargs": {"num": 6, "delay": 0.5}}})
    page.button("Start queue").click()
    running = page.driver.find_element(By.ID, "running-item")
    page.wait(lambda: running.is_displayed() and "run " in running.text, "the running item and its run")
    elapsed = page.driver.find_element(By.ID, "running-elapsed")
    first = float(page.wait(lambda: elapsed.text.removesuffix(" s"), "the elapsed time"))
    page.wait(lambda: float(elapsed.text.removesuffix(" s") or 0) >= first + 1, "the elapsed time to grow")
    page.wait(lambda: page.history_statuses() == ["completed"], "the plan to end", timeout=60)


def test_lock_with_a_key_and_a_note_write_with_the_key_and_unlock(page, web_gateway, manager_idle):
    controls = page.region("Controls")
    try:
        page.field("Lock key", controls).send_keys("the-key")
        page.field("Note", controls).send_keys("alignment")
        page.button("Lock", controls).click()
        wait_for(lambda: manager_idle.status()["lock"] == {"environment": True, "queue": True}, 15, "the lock")
        holder = page.driver.find_element(By.ID, "lock-holder")
        page.wait(lambda: "locked by bob" in holder.text and "alignment" in holder.text, "who holds the lock")
        page.wait_status("Lock", lambda text: "locked by bob" in text, "locked by bob")

        # while the key is filled in, every change carries it
        page.button("Add queue stop").click()
        wait_for(lambda: manager_idle.status()["items_in_queue"] == 1, 15, "the instruction, sent with the key")
        page.wait(lambda: len(page.queue_rows()) == 1, "the instruction in the page")
        page.field("Lock key", controls).clear()
        page.button("Remove", page.queue_rows()[0]).click()
        queue_message = page.driver.find_element(By.ID, "queue-message")
        page.wait(
            lambda: "lock" in queue_message.text.lower(),
            f"RE Manager's refusal without the key, not {queue_message.text!r}",
        )
        assert manager_idle.status()["items_in_queue"] == 1

        page.field("Lock key", controls).send_keys("the-key")
        page.button("Unlock", controls).click()
        wait_for(lambda: manager_idle.status()["lock"] == {"environment": False, "queue": False}, 15, "unlocked")
        page.wait(lambda: holder.text == "RE Manager is not locked.", "the page to say so")
    finally:
        manager_idle.request("unlock", {"lock_key": "the-key"})
