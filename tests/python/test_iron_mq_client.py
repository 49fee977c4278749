"""The official IronMQ Python client (PyPI iron-mq 0.9) against a running ferromq.

The client is configured only by host, port, protocol, project id and token, read
from FERROMQ_HTTP_HOST / FERROMQ_HTTP_PORT / FERROMQ_TOKEN. Run by
scripts/python-client-test.sh, which starts the server; CI runs that script.
Every method of iron_mq.IronMQ and iron_mq.Queue is exercised: pull-queue, alert and
push-queue methods must behave as docs/ironmq-v3-api.md says. Push queues deliver to
a subscriber server this file starts on 127.0.0.1 (the script allows that address
with --push-allow); on a pull queue the push-queue methods fail with a clear 400.
"""
import http.server
import json
import os
import queue
import threading
import time
import unittest
import urllib
import urllib.parse

# The one-line Python 3 shim from the spec (section 9.4): iron-mq 0.9 calls urllib.urlencode.
urllib.urlencode = getattr(urllib, "urlencode", urllib.parse.urlencode)

import requests  # noqa: E402  (installed with iron-mq)
from iron_mq import IronMQ  # noqa: E402

PROJECT = "000000000000000000000001"


def client(project=PROJECT, token=None):
    return IronMQ(
        host=os.environ.get("FERROMQ_HTTP_HOST", "127.0.0.1"),
        port=int(os.environ["FERROMQ_HTTP_PORT"]),
        protocol="http",
        project_id=project,
        token=token or os.environ["FERROMQ_TOKEN"],
    )


def unique(name):
    return "%s-%d" % (name, time.monotonic_ns())


class IronMQClientTest(unittest.TestCase):
    def setUp(self):
        self.mq = client()

    def status_of(self, call, *args, **kwargs):
        with self.assertRaises(requests.HTTPError) as raised:
            call(*args, **kwargs)
        return raised.exception.response.status_code

    def test_queue_admin(self):
        name = unique("admin")
        created = self.mq.create_queue(name, {"message_timeout": 45, "message_expiration": 3600})
        self.assertEqual(created["name"], name)
        self.assertEqual(created["message_timeout"], 45)
        q = self.mq.queue(name)
        info = q.info()
        self.assertEqual((info["size"], info["total_messages"], info["type"]), (0, 0, "pull"))
        self.assertEqual(info["project_id"], PROJECT)
        self.assertTrue(q.id())
        updated = self.mq.update_queue(name, {"message_expiration": 7200})
        self.assertEqual((updated["message_timeout"], updated["message_expiration"]), (45, 7200))
        self.assertEqual(q.update({"message_timeout": 30})["message_timeout"], 30)
        self.assertEqual(self.mq.getQueueDetails(name)["name"], name)
        q.post("one", {"body": "two", "delay": 5})
        self.assertEqual((q.size(), q.total_messages()), (2, 2))
        self.assertEqual(q.delete_queue()["msg"], "Deleted")
        self.assertEqual(self.status_of(q.info), 404)

    def test_listing_queues(self):
        prefix = unique("list")
        for suffix in ["a", "b", "c", "d"]:
            self.mq.create_queue("%s-%s" % (prefix, suffix))
        self.assertEqual(
            self.mq.queues(prefix=prefix),
            ["%s-%s" % (prefix, s) for s in "abcd"],
        )
        self.assertEqual(
            self.mq.queues(prefix=prefix, previous="%s-a" % prefix, per_page=2),
            ["%s-b" % prefix, "%s-c" % prefix],
        )
        self.assertLessEqual(len(self.mq.queues(per_page=101)), 100)
        self.assertIn("%s-a" % prefix, self.mq.getQueues())
        # Another project is another namespace.
        self.assertEqual(client(project="000000000000000000000002").queues(prefix=prefix), [])

    def test_post_reserve_touch_release_delete(self):
        q = self.mq.queue(unique("work"))
        ids = q.post("a", "b", {"body": "c"})["ids"]
        # json.dumps sends non-ASCII as \\u escapes (an emoji as a surrogate pair).
        text = "h\u00e9llo \U0001F600"
        extra = q.post(text)["ids"][0]
        self.assertEqual(q.get_message_by_id(extra)["body"], text)
        self.assertEqual(q.delete(extra)["msg"], "Deleted")
        self.assertEqual(len(ids), 3)
        self.assertTrue(all(isinstance(i, str) for i in ids))

        peeked = q.peek(2)["messages"]
        self.assertEqual([m["body"] for m in peeked], ["a", "b"])
        self.assertNotIn("reservation_id", peeked[0])
        self.assertEqual(q.peek()["messages"][0]["id"], ids[0])

        first = q.reserve(timeout=30)["messages"][0]
        self.assertEqual((first["id"], first["reserved_count"]), (ids[0], 1))
        by_id = q.get_message_by_id(ids[0])
        self.assertEqual((by_id["body"], by_id["reserved_count"]), ("a", 1))
        self.assertNotIn("reservation_id", by_id)

        touched = q.touch(first["id"], first["reservation_id"])
        self.assertEqual(touched["msg"], "Touched")
        self.assertNotEqual(touched["reservation_id"], first["reservation_id"])
        self.assertEqual(self.status_of(q.touch, first["id"], first["reservation_id"]), 403)
        touched = q.touch(first["id"], touched["reservation_id"], timeout=90)

        # Release a and then b: b comes first, then a, then c.
        second = q.reserve()["messages"][0]
        self.assertEqual(q.release(first["id"], touched["reservation_id"])["msg"], "Released")
        q.release(second["id"], second["reservation_id"])
        self.assertEqual([m["body"] for m in q.peek(3)["messages"]], ["b", "a", "c"])
        again = q.get(max=1)["messages"][0]
        self.assertEqual((again["body"], again["reserved_count"]), ("b", 2))
        q.release(again["id"], again["reservation_id"], delay=60)
        self.assertEqual([m["body"] for m in q.peek(3)["messages"]], ["a", "c"])
        self.assertEqual(q.size(), 3)

        # Delete: a reserved message needs its reservation; others do not.
        held = q.reserve()["messages"][0]
        self.assertEqual(self.status_of(q.delete, held["id"]), 403)
        self.assertEqual(q.delete(held["id"], held["reservation_id"])["msg"], "Deleted")
        self.assertEqual(q.delete(ids[2])["msg"], "Deleted")
        self.assertEqual(self.status_of(q.delete, ids[2]), 404)
        self.assertEqual(q.size(), 1)
        self.assertEqual(q.total_messages(), 4)

    def test_reservation_expiry_is_checked_at_request_time(self):
        q = self.mq.queue(unique("expiry"))
        q.post("x")
        held = q.reserve(timeout=1)["messages"][0]
        time.sleep(1.0)  # the lease's own deadline is what is being tested
        status = self.status_of(q.delete, held["id"], held["reservation_id"])
        self.assertEqual(status, 403)
        back = q.reserve(wait=1)["messages"][0]
        self.assertEqual((back["id"], back["reserved_count"]), (held["id"], 2))

    def test_batch_delete_clear_and_reserve_with_delete(self):
        q = self.mq.queue(unique("batch"))
        ids = q.post(*["m%d" % i for i in range(6)])["ids"]
        self.assertEqual(q.delete_multiple(ids=ids[:2])["msg"], "Deleted")
        reserved = q.reserve(max=2)
        self.assertEqual(q.delete_multiple(messages=reserved)["msg"], "Deleted")
        gone = q.reserve(max=1, delete=True)["messages"]
        self.assertEqual(len(gone), 1)
        self.assertEqual(q.size(), 1)
        self.assertEqual(q.clear()["msg"], "Cleared")
        self.assertEqual((q.size(), q.total_messages()), (0, 6))
        self.assertEqual(q.reserve(max=5)["messages"], [])

    def test_long_poll_waits_and_returns_empty(self):
        q = self.mq.queue(unique("poll"))
        q.post("seed")
        q.delete_multiple(messages=q.reserve())
        started = time.monotonic()
        self.assertEqual(q.reserve(wait=2)["messages"], [])
        self.assertGreaterEqual(time.monotonic() - started, 1.9)

    def test_dead_letter_queue(self):
        name, dlq = unique("src"), unique("dlq")
        self.mq.create_queue(name, {"dead_letter": {"queue_name": dlq, "max_reservations": 1}})
        q = self.mq.queue(name)
        msg_id = q.post("once")["ids"][0]
        held = q.reserve()["messages"][0]
        q.release(held["id"], held["reservation_id"])
        self.assertEqual(q.reserve()["messages"], [])
        moved = self.mq.queue(dlq).reserve(wait=5)["messages"][0]
        self.assertEqual((moved["id"], moved["body"]), (msg_id, "once"))

    def test_deprecated_helpers(self):
        name = unique("old")
        self.mq.postMessage(name, ["x", "y"])
        got = self.mq.getMessage(name, max=1)["messages"]
        self.assertEqual(got[0]["body"], "x")
        self.mq.clearQueue(name)
        self.assertEqual(self.mq.queue(name).size(), 0)
        post = self.mq.postMessage(name, ["z"])
        self.assertEqual(self.mq.deleteMessage(name, post["ids"][0])["msg"], "Deleted")

    def test_push_queue_methods_are_refused_clearly_on_a_pull_queue(self):
        q = self.mq.queue(unique("pull"))
        msg_id = q.post("x")["ids"][0]
        calls = [
            (q.add_subscribers, "http://127.0.0.1:9/a"),
            (q.replace_subscribers, "http://127.0.0.1:9/a"),
            (q.remove_subscribers, "a"),
            (q.get_message_push_statuses, msg_id),
        ]
        for call, arg in calls:
            with self.subTest(call=call.__name__):
                self.assertEqual(self.status_of(call, arg), 400)
        self.assertEqual(
            self.status_of(self.mq.create_queue, unique("push"), {"type": "multicast"}), 400
        )
        self.assertEqual(q.size(), 1, "nothing changed")

    def test_alerts(self):
        q = self.mq.queue(unique("alerts"))
        q.post("x")
        q.add_alerts({"type": "fixed", "trigger": 10, "queue": "ops"})
        alerts = q.info()["alerts"]
        self.assertEqual([(a["type"], a["trigger"], a["direction"]) for a in alerts],
                         [("fixed", 10, "asc")])
        self.assertEqual(
            self.status_of(q.add_alerts, {"type": "fixed", "trigger": 10, "queue": "ops"}), 400
        )
        q.update_alerts({"type": "progressive", "trigger": 5, "queue": "ops", "direction": "desc"},
                        {"type": "fixed", "trigger": 50, "queue": "ops"})
        alerts = q.info()["alerts"]
        self.assertEqual(sorted(a["trigger"] for a in alerts), [5, 50])
        q.remove_alerts({"id": alerts[0]["id"]})
        self.assertEqual([a["id"] for a in q.info()["alerts"]], [alerts[1]["id"]])
        self.assertEqual(q.size(), 1)

    def test_a_wrong_token_gets_401(self):
        status = self.status_of(client(token="wrong").queue(unique("auth")).post, "x")
        self.assertEqual(status, 401)


class Subscriber:
    """A push-queue subscriber on 127.0.0.1: records each delivery, answers the
    status scripted for its path (200 when none)."""

    def __init__(self):
        self.hits = queue.Queue()
        self.answers = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.hits.put((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = outer.answers.get(self.path, 200)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name):
        return "http://127.0.0.1:%d/%s" % (self.server.server_address[1], name)

    def next(self, timeout=15):
        return self.hits.get(timeout=timeout)

    def close(self):
        self.server.shutdown()


class PushQueueTest(unittest.TestCase):
    """Every push-queue method of the client (iron_mq.Queue.add_subscribers,
    replace_subscribers, remove_subscribers, get_message_push_statuses, delete with
    subscriber_name; IronMQ.create_queue and update_queue with push settings)."""

    def setUp(self):
        self.mq = client()
        self.sub = Subscriber()

    def tearDown(self):
        self.sub.close()

    def wait_until(self, check, what):
        deadline = time.monotonic() + 15
        while not check():
            self.assertLess(time.monotonic(), deadline, "never: " + what)
            time.sleep(0.02)

    def gone(self, q, msg_id):
        try:
            q.get_message_by_id(msg_id)
            return False
        except requests.HTTPError as err:
            return err.response.status_code == 404

    def test_subscribers_are_configured_added_replaced_and_removed(self):
        name = unique("push-admin")
        created = self.mq.create_queue(name, {
            "type": "multicast",
            "push": {"subscribers": [{"name": "a", "url": self.sub.url("a")}],
                     "retries": 5, "retries_delay": 30, "error_queue": name + "-err"},
        })
        self.assertEqual(created["type"], "multicast")
        self.assertEqual(created["push"]["retries"], 5)
        q = self.mq.queue(name)
        names = lambda: [s["name"] for s in q.info()["push"]["subscribers"]]
        self.assertEqual(q.add_subscribers({"name": "b", "url": self.sub.url("b")})["msg"], "Updated")
        self.assertEqual(names(), ["a", "b"])
        q.add_subscribers({"name": "b", "url": self.sub.url("b2"), "headers": {"X-B": "1"}})
        subs = q.info()["push"]["subscribers"]
        self.assertEqual((subs[1]["url"], subs[1]["headers"]), (self.sub.url("b2"), {"X-B": "1"}))
        self.assertEqual(q.replace_subscribers({"name": "c", "url": self.sub.url("c")})["msg"],
                         "Updated")
        self.assertEqual(names(), ["c"])
        q.add_subscribers({"name": "d", "url": self.sub.url("d")})
        self.assertEqual(q.remove_subscribers("c")["msg"], "Updated")
        self.assertEqual(names(), ["d"])
        updated = self.mq.update_queue(name, {"push": {"retries": 1, "error_queue": ""}})
        self.assertEqual(updated["push"]["retries"], 1)
        self.assertNotIn("error_queue", updated["push"])
        self.assertEqual(self.status_of(self.mq.update_queue, name, {"type": "pull"}), 400)
        self.assertEqual(self.status_of(q.remove_subscribers, "d"), 400, "the last one")

    def status_of(self, call, *args):
        with self.assertRaises(requests.HTTPError) as raised:
            call(*args)
        return raised.exception.response.status_code

    def test_a_posted_message_is_delivered_with_its_headers_and_statuses(self):
        name = unique("push-deliver")
        self.mq.create_queue(name, {"push": {"subscribers": [
            {"name": "ok", "url": self.sub.url("ok"), "headers": {"X-Sub": "s"}},
            {"name": "flaky", "url": self.sub.url("flaky")},
        ], "retries_delay": 3}})
        self.sub.answers["/flaky"] = 500
        q = self.mq.queue(name)
        msg_id = q.post({"body": "hello", "push_headers": {"X-Msg": "m"}})["ids"][0]
        got = {}
        for _ in range(2):
            path, headers, body = self.sub.next()
            got[path] = headers
            self.assertEqual(body, b"hello")
        ok = got["/ok"]
        self.assertEqual((ok["user-agent"], ok["x-sub"], ok["x-msg"]), ("IronMQ Pusherd", "s", "m"))
        self.assertEqual(ok["iron-message-id"], msg_id)
        self.assertEqual(ok["iron-subscriber-name"], "ok")
        self.assertTrue(ok["iron-subscriber-message-url"].endswith(
            "/3/projects/%s/queues/%s/messages/%s" % (PROJECT, name, msg_id)))

        def statuses():
            return {s["name"]: s for s in q.get_message_push_statuses(msg_id)["subscribers"]}
        self.wait_until(lambda: statuses()["flaky"]["status_code"] == 500, "the 500 recorded")
        st = statuses()
        self.assertEqual(st["ok"]["status"], "delivered")
        self.assertEqual((st["flaky"]["status"], st["flaky"]["tries"],
                          st["flaky"]["retries_remaining"]), ("retrying", 1, 3))
        # The retry goes to the failed subscriber only, and then it is done.
        self.sub.answers["/flaky"] = 200
        path, headers, _ = self.sub.next()
        self.assertEqual(path, "/flaky")
        self.wait_until(lambda: self.gone(q, msg_id), "the delivered message deleted")

    def test_a_202_is_acknowledged_with_delete_and_subscriber_name(self):
        name = unique("push-ack")
        self.mq.create_queue(name, {"type": "unicast",
                                    "push": {"subscribers": [{"name": "w", "url": self.sub.url("w")}]}})
        self.sub.answers["/w"] = 202
        q = self.mq.queue(name)
        msg_id = q.post("long job")["ids"][0]
        _, headers, _ = self.sub.next()
        rid = headers["iron-reservation-id"]
        self.wait_until(
            lambda: q.get_message_push_statuses(msg_id)["subscribers"][0]["status"] == "reserved",
            "held for the subscriber")
        self.assertEqual(q.delete(msg_id, rid, "w")["msg"], "Deleted")
        self.assertTrue(self.gone(q, msg_id))


if __name__ == "__main__":
    unittest.main(verbosity=2)
