"""The chat page in a real browser: headless Chromium driven by Selenium against a server on 127.0.0.1.

Needs Debian's ``chromium`` and ``chromium-driver`` (apt) and the test extra (Selenium); skips,
saying which is missing, otherwise. Selenium Manager is not used: the system's browser and driver are.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chat_cases import tiny_bot  # noqa: E402


def _find(names, env):
    for name in ((os.environ.get(env),) if os.environ.get(env) else ()) + names:
        path = shutil.which(name) or (name if os.path.isfile(name) else None)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("starlette", reason="the chat server needs the extra 'chat' (Starlette)")
    pytest.importorskip("uvicorn", reason="the chat server needs the extra 'chat' (uvicorn)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs Selenium (the extra 'test')")
    binary = _find(("chromium", "chromium-browser", "google-chrome"), "KNETPY_CHROME")
    driver_path = _find(("chromedriver", "/usr/lib/chromium/chromedriver"), "KNETPY_CHROMEDRIVER")
    if binary is None or driver_path is None:
        pytest.skip("no browser: install Chromium and its driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1000,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_typing_a_question_shows_the_answer_and_the_attention_heat_map(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from knetpy.chat import running

    with running(tiny_bot()) as url:
        browser.get(url)
        assert "knetpy chat" in browser.title
        box = browser.find_element(By.ID, "message")
        box.send_keys("What is 3 plus 4?", Keys.ENTER)
        answer = WebDriverWait(browser, 60).until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".bot")))
        assert answer.text.startswith("Bot: ") and len(answer.text) > len("Bot: ")
        you = browser.find_element(By.CSS_SELECTOR, ".you").text
        assert you == "You: What is 3 plus 4?"
        heat = browser.find_element(By.ID, "heatmap")
        headers = [th.text for th in heat.find_elements(By.CSS_SELECTOR, "tr:first-child th")][1:]
        assert headers == ["what", "is", "3", "plus", "4", "?"]
        rows = heat.find_elements(By.CSS_SELECTOR, "tr")[1:]
        assert rows
        for row in rows:
            weights = [float(td.get_attribute("data-weight")) for td in row.find_elements(By.TAG_NAME, "td")]
            assert len(weights) == 6 and abs(sum(weights) - 1) < 0.01
        shade = rows[0].find_elements(By.TAG_NAME, "td")[0].value_of_css_property("background-color")
        assert shade.startswith("rgba(26, 95, 180")  # colored by its weight

        box.send_keys("   ", Keys.ENTER)  # blank: nothing is sent
        box.clear()
        box.send_keys("thanks", Keys.ENTER)
        WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".bot")) == 2)
        assert len(browser.find_elements(By.CSS_SELECTOR, ".you")) == 2
        shot = tmp_path / "chat.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
