"""The web console (issue 18) in a real headless Chromium driven by selenium.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (.ci/run installs them); in CI
(``CI=true``) a missing browser is a failure, elsewhere the tests are skipped. With
``EMBER_SCREENSHOTS=1`` each page is also saved to ``docs/img/web-*.png`` (the pictures in
docs/web.md).
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import ember
import ember.web
from ember.events import EventServer, Publisher

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMEDRIVER = "/usr/bin/chromedriver"
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
pytestmark = pytest.mark.timeout(90)


@ember.expose
class Thermostat:
    def __init__(self):
        self.target = 20.5

    def set_target(self, degrees, room="living"):
        if not isinstance(degrees, (int, float)):
            raise TypeError(f"degrees must be a number, got {type(degrees).__name__}")
        self.target = degrees
        return {"room": room, "target": degrees}

    def overheat(self):
        raise RuntimeError("sensor <b>on fire</b>")

    @property
    def reading(self):
        return 19.25


@pytest.fixture(scope="module")
def browser():
    found = shutil.which("chromium") and os.path.exists(CHROMEDRIVER)
    if not found:
        message = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    profile = tempfile.mkdtemp(prefix="ember-chromium-")
    options = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1200,1200"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def site(ember_nameserver, ember_daemon):
    """Names in a name server, a gateway with a key serving them, the event service."""
    ns = ember.locate_ns()
    daemon = ember_daemon()
    ns.register("http.home.thermostat", daemon.register(Thermostat(), "thermostat"), metadata={"room:living"})
    ns.register("http.home.lights", daemon.register(Thermostat(), "lights"))
    ns.register("http.office.printer", daemon.register(Thermostat(), "printer"), metadata={"floor:2"})
    ns.register("http.<script>alert(1)</script>", "PYRO:evil@127.0.0.1:1")
    port = ember_nameserver.daemon.port
    events = EventServer("127.0.0.1", 0, ns_host="127.0.0.1", ns_port=port).start()
    app = ember.web.create_app(ns_host="127.0.0.1", ns_port=port, gateway_key="letmein")
    server = ember.web.start(app)
    try:
        yield server.url, ns, port
    finally:
        server.stop()
        events.shutdown()
        ns._release()


def wait(driver, condition, timeout=15):
    return WebDriverWait(driver, timeout).until(condition)


def screenshot(driver, name, tmp_path):
    path = tmp_path / f"web-{name}.png"
    assert driver.save_screenshot(str(path))
    if os.environ.get("EMBER_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMG / path.name)


def no_alert(driver):
    try:
        _ = driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_browse_call_and_see_a_remote_exception(browser, site, tmp_path):
    url, _ns, _port = site
    browser.get(url + "/")
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#names .entry")))
    assert "name server answered" in browser.find_element(By.ID, "ping").text
    # the hostile name shows as text, runs nothing
    evil = browser.find_element(By.CSS_SELECTOR, '.entry[data-name^="http.<script>"] a.name')
    assert evil.text == "http.<script>alert(1)</script>"
    assert no_alert(browser)
    # the tree groups dotted names; the filter box narrows it
    groups = [g.get_attribute("data-group") for g in browser.find_elements(By.CSS_SELECTOR, "details.group")]
    assert {"http", "http.home", "http.office"} <= set(groups)
    browser.find_element(By.ID, "filter").send_keys("thermo")
    visible = [e.get_attribute("data-name") for e in browser.find_elements(By.CSS_SELECTOR, ".entry") if e.is_displayed()]
    assert visible == ["http.home.thermostat"]
    browser.find_element(By.ID, "filter").clear()  # back to the full list, for the picture
    browser.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
    screenshot(browser, "names", tmp_path)

    browser.find_element(By.CSS_SELECTOR, '.entry[data-name="http.home.thermostat"] a.name').click()
    wait(browser, EC.presence_of_element_located((By.ID, "call-form")))
    assert browser.find_element(By.ID, "object-name").text == "http.home.thermostat"
    methods = browser.find_element(By.ID, "methods").text
    assert "set_target" in methods and "overheat" in methods
    assert "reading" in browser.find_element(By.ID, "attributes").text

    browser.find_element(By.ID, "gateway-key").send_keys("letmein")
    Select(browser.find_element(By.ID, "method")).select_by_value("set_target")
    args = browser.find_element(By.ID, "args")
    args.clear()
    args.send_keys("[22.5]")
    kwargs = browser.find_element(By.ID, "kwargs")
    kwargs.clear()
    kwargs.send_keys('{"room": "kitchen"}')
    browser.find_element(By.ID, "call").click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "outcome-title"), "Result"))
    assert '"target": 22.5' in browser.find_element(By.ID, "result").text
    assert '"room": "kitchen"' in browser.find_element(By.ID, "result").text
    screenshot(browser, "object", tmp_path)

    browser.find_element(By.CSS_SELECTOR, 'button.read[data-attr="reading"]').click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "result"), "19.25"))

    Select(browser.find_element(By.ID, "method")).select_by_value("overheat")
    args.clear()
    args.send_keys("[]")
    kwargs.clear()
    kwargs.send_keys("{}")
    browser.find_element(By.ID, "call").click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "outcome-title"), "Remote exception"))
    assert browser.find_element(By.ID, "result").text == "builtins.RuntimeError: sensor <b>on fire</b>"
    traceback = browser.find_element(By.ID, "traceback").text
    assert "Traceback" in traceback and "RuntimeError: sensor <b>on fire</b>" in traceback
    assert no_alert(browser)
    screenshot(browser, "exception", tmp_path)


def test_wrong_key_is_refused_in_the_form(browser, site):
    url, _ns, _port = site
    browser.get(url + "/object/http.home.lights")
    wait(browser, EC.presence_of_element_located((By.ID, "call-form")))
    key = browser.find_element(By.ID, "gateway-key")
    key.clear()
    key.send_keys("wrong")
    browser.find_element(By.ID, "call").click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "outcome-title"), "refused"))
    assert "gateway key" in browser.find_element(By.ID, "result").text
    assert "HTTP 403" in browser.find_element(By.ID, "outcome-meta").text


def test_live_events(browser, site, tmp_path):
    url, _ns, port = site
    browser.get(url + "/events")
    browser.execute_script("sessionStorage.setItem('ember-gateway-key', 'letmein')")
    browser.get(url + "/events")
    pattern = browser.find_element(By.ID, "pattern")
    pattern.clear()
    pattern.send_keys(r"home\.")
    browser.find_element(By.ID, "subscribe").click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "events-status"), "subscribed to"))
    with Publisher(ns_host="127.0.0.1", ns_port=port) as pub:
        pub.publish("office.printer", "not shown")
        pub.publish("home.thermostat", {"target": 21, "note": "<i>cosy</i>"})
        pub.publish("home.lights", "on")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#events tr.event")) == 2)
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#events tr.event")]
    assert "home.lights" in rows[0] and "home.thermostat" in rows[1]
    assert '"note":"<i>cosy</i>"' in rows[1]
    assert not any("office" in r for r in rows)
    screenshot(browser, "events", tmp_path)
    browser.find_element(By.ID, "unsubscribe").click()
    assert browser.find_element(By.ID, "events-status").text == "not subscribed"


def test_remove_a_name_with_the_key(browser, site):
    url, ns, _port = site
    browser.get(url + "/")
    browser.execute_script("sessionStorage.setItem('ember-gateway-key', 'letmein')")
    browser.get(url + "/")
    button = wait(browser, EC.element_to_be_clickable(
        (By.CSS_SELECTOR, '.entry[data-name="http.office.printer"] button.remove')))
    button.click()
    wait(browser, EC.alert_is_present()).accept()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "message"), "removed http.office.printer"))
    assert not browser.find_elements(By.CSS_SELECTOR, '.entry[data-name="http.office.printer"]')
    assert "http.office.printer" not in ns.list()
