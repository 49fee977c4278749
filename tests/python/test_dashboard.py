"""The web dashboard (`serve --dashboard`) in a real browser.

Headless Chromium driven by Selenium (Debian's `chromium` and `chromium-driver`,
installed by scripts/dashboard-test.sh, which also starts the server). Each test
works through the page as an operator would: typing, clicking, confirming; the
queues are filled and checked over the IronMQ HTTP API with `requests`. Waits are
on what the page shows (WebDriverWait), never fixed sleeps.

Reads FERROMQ_HTTP_HOST / FERROMQ_HTTP_PORT / FERROMQ_TOKEN (every queue) /
FERROMQ_PROJECT_TOKEN (project `proj1` only) / FERROMQ_SCREENSHOTS (a directory).
The server runs with --push-allow 127.0.0.1 (a push queue's settings are edited).
"""
import json
import os
import time
import unittest

import requests
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

HOST = os.environ.get("FERROMQ_HTTP_HOST", "127.0.0.1")
BASE = "http://%s:%s" % (HOST, os.environ["FERROMQ_HTTP_PORT"])
TOKEN = os.environ["FERROMQ_TOKEN"]
PROJECT_TOKEN = os.environ["FERROMQ_PROJECT_TOKEN"]
SHOTS = os.environ.get("FERROMQ_SCREENSHOTS", "target/dashboard-screenshots")
PROJECT = "proj1"
XSS = "<img src=x onerror=alert(1)>"
WAIT = 15


def api(method, path, body=None, token=TOKEN):
    response = requests.request(
        method,
        "%s/3/projects/%s%s" % (BASE, PROJECT, path),
        headers={"Authorization": "OAuth " + token},
        json=body,
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def push(queue, *bodies):
    return api("POST", "/queues/%s/messages" % queue, {"messages": [{"body": b} for b in bodies]})["ids"]


def size(queue):
    return api("GET", "/queues/%s" % queue)["queue"]["size"]


def unique(stem):
    return "%s-%d" % (stem, time.monotonic_ns())


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        options = webdriver.ChromeOptions()
        options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--window-size=1360,1000", "--no-first-run"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
        cls.driver = webdriver.Chrome(service=service, options=options)
        os.makedirs(SHOTS, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()

    def setUp(self):
        # A fresh tab state: no token kept.
        self.driver.get(BASE + "/ui/")
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.get(BASE + "/ui/")
        self.driver.get_log("browser")  # the earlier tests' entries

    # ------------------------------------------------------------ helpers

    def wait(self, condition, timeout=WAIT):
        return WebDriverWait(self.driver, timeout).until(condition)

    def find(self, css):
        return self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, css)))

    def _text(self, css):
        try:
            return self.driver.find_element(By.CSS_SELECTOR, css).text
        except Exception:  # not there yet, or replaced while read
            return None

    def wait_text(self, css, predicate, what):
        try:
            return self.wait(lambda d: (lambda t: t if t is not None and predicate(t) else False)(self._text(css)))
        except Exception:
            self.fail("%s: %r is %r" % (what, css, self._text(css)))

    def login(self, token=TOKEN):
        field = self.find("#token")
        field.clear()
        field.send_keys(token)
        self.driver.find_element(By.ID, "login").click()

    def open_queue(self, name):
        self.driver.get(BASE + "/ui/#/queue/" + requests.utils.quote(name, safe=""))
        self.find("#qv-cards [data-field=size]")

    def confirm(self, word=None):
        self.wait(EC.visibility_of_element_located((By.ID, "confirm-ok")))
        if word:
            self.driver.find_element(By.ID, "confirm-input").send_keys(word)
        self.driver.find_element(By.ID, "confirm-ok").click()
        self.wait(EC.invisibility_of_element_located((By.ID, "confirm")))

    def cancel(self):
        self.wait(EC.visibility_of_element_located((By.ID, "confirm-cancel")))
        self.driver.find_element(By.ID, "confirm-cancel").click()
        self.wait(EC.invisibility_of_element_located((By.ID, "confirm")))

    def toast(self, predicate, what):
        return self.wait_text("#toast", predicate, what)

    def no_alert(self):
        try:
            alert = self.driver.switch_to.alert
        except NoAlertPresentException:
            return
        text = alert.text
        alert.dismiss()
        self.fail("a script ran in the page: alert(%r)" % text)

    def page_errors(self):
        """Errors of the page since the test began: a script error or a CSP
        violation. Failed API requests (the 4xx the tests cause) are not."""
        return [entry for entry in self.driver.get_log("browser")
                if entry["level"] == "SEVERE" and entry.get("source") != "network"]

    # ------------------------------------------------------------ tests

    def test_a_wrong_token_is_refused_and_a_right_one_logs_in(self):
        self.login("not-the-token")
        self.wait_text("#login-error", lambda t: "refused" in t, "the refusal")
        self.assertIsNone(self.driver.execute_script("return sessionStorage.getItem('ferromq.token')"))
        self.login(TOKEN)
        self.wait_text("#ov-cards [data-field=version]", lambda t: t != "", "the version")
        self.assertEqual(self.driver.execute_script("return sessionStorage.getItem('ferromq.token')"), TOKEN)
        # The token is in no URL and no cookie.
        self.assertNotIn(TOKEN, self.driver.current_url)
        self.assertEqual(self.driver.get_cookies(), [])
        self.wait_text("#who", lambda t: "every queue" in t, "who is logged in")

    def test_the_overview_shows_the_server_and_updates_live(self):
        self.login()
        queue = unique("overview")
        before = int(self.wait_text("#ov-cards [data-field=messages]", lambda t: t != "—", "messages").replace(",", ""))
        for field in ("version", "uptime", "fsync", "connections", "commit-rate", "data-dir"):
            self.find("#ov-cards [data-field=%s]" % field)
        self.assertEqual(self._text("#ov-cards [data-field=fsync]"), "always")
        push(queue, *["m%d" % i for i in range(25)])
        # The page polls: the count grows without a reload.
        self.wait_text("#ov-cards [data-field=messages]",
                       lambda t: int(t.replace(",", "")) >= before + 25, "messages after 25 pushes")
        self.wait_text("#ov-cards [data-field=pushed-rate]", lambda t: t not in ("—", "0"), "push rate")
        chart = self.find("#ov-chart")
        self.assertGreater(chart.size["width"], 200)
        self.driver.save_screenshot(os.path.join(SHOTS, "overview.png"))
        self.assertEqual(self.page_errors(), [])

    def test_a_queue_appears_after_pushes_and_its_counter_changes(self):
        self.login()
        queue = unique("appears")
        name = "%s/%s" % (PROJECT, queue)
        self.driver.get(BASE + "/ui/#/queues?prefix=" + requests.utils.quote(name, safe=""))
        self.wait_text("#q-rows", lambda t: "No queue" in t, "the empty list")
        push(queue, "a", "b", "c")
        row = '#q-rows tr[data-queue="%s"]' % name
        self.wait_text(row + " [data-field=size]", lambda t: t == "3", "the new queue's size")
        push(queue, "d", "e")
        self.wait_text(row + " [data-field=size]", lambda t: t == "5", "the size after two more")
        # Sorting by size puts the biggest first; the header says how.
        big = unique("appears-big")
        push(big, *["x"] * 40)
        self.driver.get(BASE + "/ui/#/queues?prefix=" + requests.utils.quote(PROJECT + "/appears", safe=""))
        self.find('#q-table th[data-sort="size"]').click()
        self.wait(lambda d: "sorted-desc" in self.find('#q-table th[data-sort="size"]').get_attribute("class"))
        first = self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#q-rows tr[data-queue]"))[0]
        self.assertGreaterEqual(int(first.find_element(By.CSS_SELECTOR, "[data-field=size]").text.replace(",", "")), 40)
        self.assertEqual(self.page_errors(), [])

    def test_a_hostile_body_is_shown_as_text(self):
        self.login()
        queue = unique("xss")
        push(queue, XSS, "plain")
        # A queue page, with the body peeked.
        self.open_queue("%s/%s" % (PROJECT, queue))
        self.find("#peek").click()
        body = self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#peek-list [data-message] pre")))
        self.assertEqual(body.text, XSS)
        self.assertEqual(self.driver.find_elements(By.CSS_SELECTOR, "#peek-list img"), [])
        self.assertEqual(self.driver.find_elements(By.CSS_SELECTOR, "main img"), [])
        self.no_alert()
        self.driver.save_screenshot(os.path.join(SHOTS, "queue.png"))

    def test_a_message_is_looked_up_by_id_and_deleted_after_confirming(self):
        self.login()
        queue = unique("lookup")
        ids = push(queue, "first", "second")
        api("POST", "/queues/%s/reservations" % queue, {"n": 1, "timeout": 60})  # "first" is reserved
        self.open_queue("%s/%s" % (PROJECT, queue))
        self.find("#lookup-id").send_keys(ids[0])
        self.find("#lookup").click()
        self.wait_text("#lookup-result [data-field=state]", lambda t: t == "reserved", "the state")
        self.assertEqual(self._text("#lookup-result [data-field=reserved-count]"), "reserved 1×")
        self.assertFalse(self.find('#lookup-result [data-action="delete-message"]').is_enabled())
        # The available one can be deleted; cancelling first deletes nothing.
        lookup = self.find("#lookup-id")
        lookup.clear()
        lookup.send_keys(ids[1])
        self.find("#lookup").click()
        self.wait_text("#lookup-result [data-field=state]", lambda t: t == "available", "the state")
        self.find('#lookup-result [data-action="delete-message"]').click()
        self.cancel()
        self.assertEqual(size(queue), 2)
        self.find('#lookup-result [data-action="delete-message"]').click()
        self.confirm()
        self.toast(lambda t: "deleted" in t, "the delete")
        self.assertEqual(size(queue), 1)
        # Not found: said so.
        lookup.clear()
        lookup.send_keys("999999999")
        self.find("#lookup").click()
        self.wait_text("#lookup-result", lambda t: "not found" in t.lower(), "the miss")

    def test_a_dead_letter_queue_is_redriven(self):
        self.login()
        work, dlq = unique("orders"), unique("orders-dlq")
        api("PUT", "/queues/%s" % work, {"queue": {"dead_letter": {"queue_name": dlq, "max_reservations": 1}}})
        push(work, "will-die-1", "will-die-2")
        # Reserved once each with a 1 s lease that runs out; the next reserve that
        # meets them moves them to the dead-letter queue (docs/semantics.md). The
        # reserves long-poll (wait) until the leases end.
        api("POST", "/queues/%s/reservations" % work, {"n": 2, "timeout": 1})
        deadline = time.monotonic() + WAIT
        while not (self._exists(dlq) and size(dlq) == 2):
            self.assertLess(time.monotonic(), deadline, "the messages never reached the dead-letter queue")
            got = api("POST", "/queues/%s/reservations" % work, {"n": 2, "timeout": 1, "wait": 1})
            self.assertEqual(got["messages"], [])
        self.assertEqual(size(work), 0)
        # The list shows the dead-letter target; its page redrives.
        self.driver.get(BASE + "/ui/#/queues?prefix=" + requests.utils.quote("%s/%s" % (PROJECT, work), safe=""))
        self.wait_text('#q-rows tr[data-queue="%s/%s"] [data-field=dead-letter]' % (PROJECT, work),
                       lambda t: t == "%s/%s" % (PROJECT, dlq), "the dead-letter target")
        self.open_queue("%s/%s" % (PROJECT, dlq))
        self.wait_text("#qv-cards [data-field=size]", lambda t: t == "2", "the DLQ's size")
        self.find("#redrive-to").send_keys("%s/%s" % (PROJECT, work))
        self.find("#redrive").click()
        self.confirm()
        self.toast(lambda t: t.startswith("Moved 2"), "the redrive")
        self.assertEqual(size(dlq), 0)
        self.assertEqual(size(work), 2)
        messages = api("GET", "/queues/%s/messages?n=10" % work)["messages"]
        self.assertEqual(sorted(m["body"] for m in messages), ["will-die-1", "will-die-2"])
        self.assertTrue(all(m["reserved_count"] == 0 for m in messages), messages)
        self.wait_text("#qv-cards [data-field=size]", lambda t: t == "0", "the DLQ's size after")

    def _exists(self, queue):
        response = requests.get("%s/3/projects/%s/queues/%s" % (BASE, PROJECT, queue),
                                headers={"Authorization": "OAuth " + TOKEN}, timeout=10)
        return response.status_code == 200

    def test_a_queue_is_cleared_only_after_confirming_and_deleted_by_name(self):
        self.login()
        queue = unique("clear")
        name = "%s/%s" % (PROJECT, queue)
        push(queue, *["m%d" % i for i in range(7)])
        self.open_queue(name)
        self.wait_text("#qv-cards [data-field=size]", lambda t: t == "7", "the size")
        self.find("#clear").click()
        self.cancel()
        self.assertEqual(size(queue), 7)
        self.find("#clear").click()
        self.confirm()
        self.toast(lambda t: "Cleared 7" in t, "the clear")
        self.assertEqual(size(queue), 0)
        self.wait_text("#qv-cards [data-field=size]", lambda t: t == "0", "the size after")
        # Deleting the queue wants its name typed.
        self.find("#delete-queue").click()
        self.wait(EC.visibility_of_element_located((By.ID, "confirm-input")))
        self.assertFalse(self.driver.find_element(By.ID, "confirm-ok").is_enabled())
        self.confirm(word=name)
        self.wait(lambda d: d.current_url.endswith("#/queues"))
        self.assertFalse(self._exists(queue))

    def test_settings_are_edited_from_the_queue_page(self):
        self.login()
        queue = unique("settings")
        push(queue, "x")
        self.open_queue("%s/%s" % (PROJECT, queue))
        timeout = self.find("#s-timeout")
        self.assertEqual(timeout.get_attribute("value"), "60")
        timeout.clear()
        timeout.send_keys("95")
        self.find("#s-dead-letter").send_keys(queue + "-dead")
        self.find("#s-save").click()
        self.confirm()
        self.toast(lambda t: "saved" in t, "the save")
        info = api("GET", "/queues/%s" % queue)["queue"]
        self.assertEqual(info["message_timeout"], 95)
        self.assertEqual(info["dead_letter"]["queue_name"], queue + "-dead")
        # A bad value is refused with the server's reason, and nothing changes.
        dead_letter = self.find("#s-dead-letter")
        dead_letter.clear()
        dead_letter.send_keys("no spaces <b>here</b>")
        self.find("#s-save").click()
        self.confirm()
        self.toast(lambda t: "queue name" in t, "the refusal")
        self.assertEqual(self.find("#toast").get_attribute("class"), "bad")
        self.assertEqual(api("GET", "/queues/%s" % queue)["queue"]["dead_letter"]["queue_name"], queue + "-dead")

    def test_a_push_queues_settings_are_edited_keeping_subscriber_headers(self):
        self.login()
        queue = unique("hooks")
        # Nothing listens on port 9: deliveries fail and are retried, which does
        # not matter here (the server runs with --push-allow 127.0.0.1).
        api("PUT", "/queues/%s" % queue, {"queue": {"type": "multicast", "push": {
            "subscribers": [{"name": "a", "url": "http://127.0.0.1:9/a", "headers": {"X-K": "v"}}],
            "retries": 5}}})
        self.open_queue("%s/%s" % (PROJECT, queue))
        self.wait_text("#qv-kind", lambda t: t == "multicast", "the type")
        subscribers = self.find("#s-subscribers")
        self.assertEqual(subscribers.get_attribute("value"), "a http://127.0.0.1:9/a")
        self.assertEqual(self.driver.find_elements(By.ID, "s-dead-letter"), [])
        subscribers.send_keys("\nb http://127.0.0.1:9/b")
        retries = self.find("#s-retries")
        retries.clear()
        retries.send_keys("2")
        self.find("#s-save").click()
        self.confirm()
        self.toast(lambda t: "saved" in t, "the save")
        push_settings = api("GET", "/queues/%s" % queue)["queue"]["push"]
        self.assertEqual(push_settings["retries"], 2)
        self.assertEqual([(x["name"], x["url"]) for x in push_settings["subscribers"]],
                         [("a", "http://127.0.0.1:9/a"), ("b", "http://127.0.0.1:9/b")])
        self.assertEqual(push_settings["subscribers"][0]["headers"], {"X-K": "v"})

    def test_a_project_token_sees_only_its_project(self):
        other = "proj2"
        requests.post("%s/3/projects/%s/queues/hidden/messages" % (BASE, other),
                      headers={"Authorization": "OAuth " + TOKEN},
                      json={"messages": [{"body": "secret"}]}, timeout=10).raise_for_status()
        mine = unique("mine")
        push(mine, "ok")
        self.login(PROJECT_TOKEN)
        self.wait_text("#who", lambda t: "proj1" in t, "the scope")
        self.driver.get(BASE + "/ui/#/queues")
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#q-rows tr[data-queue]"))
        names = [row.get_attribute("data-queue")
                 for row in self.driver.find_elements(By.CSS_SELECTOR, "#q-rows tr[data-queue]")]
        self.assertTrue(names and all(n.startswith(PROJECT + "/") for n in names), names)
        # Another project's queue page is refused.
        self.driver.get(BASE + "/ui/#/queue/" + requests.utils.quote(other + "/hidden", safe=""))
        self.toast(lambda t: "does not reach" in t, "the refusal")

    def test_the_api_wants_its_header_and_a_token_and_sets_strict_headers(self):
        page = requests.get(BASE + "/ui/", timeout=10)
        self.assertEqual(page.status_code, 200)
        csp = page.headers["Content-Security-Policy"]
        self.assertIn("script-src 'self'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertEqual(page.headers["X-Content-Type-Options"], "nosniff")
        overview = BASE + "/ui/api/overview"
        bearer = {"Authorization": "Bearer " + TOKEN}
        self.assertEqual(requests.get(overview, headers=bearer, timeout=10).status_code, 403)
        self.assertEqual(requests.get(overview, headers={"X-Ferromq-Dashboard": "1"}, timeout=10).status_code, 401)
        self.assertEqual(requests.get(overview + "?oauth=" + TOKEN, headers={"X-Ferromq-Dashboard": "1"},
                                      timeout=10).status_code, 401)
        ok = requests.get(overview, headers=dict(bearer, **{"X-Ferromq-Dashboard": "1"}), timeout=10)
        self.assertEqual(ok.status_code, 200)
        self.assertEqual(ok.json()["scope"], "all")


if __name__ == "__main__":
    unittest.main(verbosity=2)
