"""/metrics of a running ferromq, parsed by a real OpenMetrics parser.

The parser is the one of the Prometheus Python client (PyPI prometheus-client,
`prometheus_client.openmetrics.parser`), which rejects what Prometheus would. The
server is started by scripts/python-client-test.sh with --metrics-listen; this file
reads FERROMQ_HTTP_HOST / FERROMQ_HTTP_PORT / FERROMQ_METRICS_PORT / FERROMQ_TOKEN.

The load is the IronMQ HTTP API, driven with plain `requests`: producers push from
threads while the test scrapes, then the counters are checked against what was done.
"""
import os
import threading
import time
import unittest

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

PROJECT = "000000000000000000000002"
HOST = os.environ.get("FERROMQ_HTTP_HOST", "127.0.0.1")
API = "http://%s:%s/3/projects/%s" % (HOST, os.environ["FERROMQ_HTTP_PORT"], PROJECT)
METRICS_URLS = [
    "http://%s:%s/metrics" % (HOST, os.environ["FERROMQ_HTTP_PORT"]),
    "http://%s:%s/metrics" % (HOST, os.environ["FERROMQ_METRICS_PORT"]),
]
TOKEN = os.environ["FERROMQ_TOKEN"]
AUTH = {"Authorization": "OAuth " + TOKEN}


def scrape(url=METRICS_URLS[0]):
    """Every sample as {(name, frozenset(labels)): value}, and the families."""
    response = requests.get(url, headers={"Authorization": "Bearer " + TOKEN}, timeout=10)
    response.raise_for_status()
    assert response.headers["Content-Type"].startswith("application/openmetrics-text"), response.headers
    families = list(text_string_to_metric_families(response.text))
    samples = {}
    for family in families:
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, {family.name: family for family in families}


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


class MetricsTest(unittest.TestCase):
    def test_counters_move_as_operations_happen_under_load(self):
        queue = "metrics-%d" % time.monotonic_ns()
        name = "%s/%s" % (PROJECT, queue)
        before, _ = scrape()
        pushed_requests = value(before, "ferromq_requests_total", protocol="http", op="push", code="201")

        producers, per_producer, batch = 4, 25, 4
        errors = []

        def produce():
            session = requests.Session()
            for _ in range(per_producer):
                body = {"messages": [{"body": "m"} for _ in range(batch)]}
                r = session.post("%s/queues/%s/messages" % (API, queue), json=body, headers=AUTH, timeout=10)
                if r.status_code != 201:
                    errors.append(r.status_code)

        threads = [threading.Thread(target=produce) for _ in range(producers)]
        for t in threads:
            t.start()
        # Scrapes while the producers run: each parses, and the counter never goes back.
        seen = []
        while any(t.is_alive() for t in threads):
            samples, _ = scrape()
            seen.append(value(samples, "ferromq_queue_pushed_messages_total", queue=name))
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(seen, sorted(seen), "a counter went backwards")

        total = producers * per_producer * batch
        # Reserve 10, delete 4 of them, release 2: each must show.
        r = requests.post("%s/queues/%s/reservations" % (API, queue), json={"n": 10, "timeout": 60}, headers=AUTH)
        r.raise_for_status()
        messages = r.json()["messages"]
        self.assertEqual(len(messages), 10)
        for m in messages[:4]:
            d = requests.delete(
                "%s/queues/%s/messages/%s" % (API, queue, m["id"]),
                json={"reservation_id": m["reservation_id"]},
                headers=AUTH,
            )
            d.raise_for_status()
        for m in messages[4:6]:
            requests.post(
                "%s/queues/%s/messages/%s/release" % (API, queue, m["id"]),
                json={"reservation_id": m["reservation_id"]},
                headers=AUTH,
            ).raise_for_status()
        missing = requests.get("%s/queues/no-such-queue-%s" % (API, queue), headers=AUTH)
        self.assertEqual(missing.status_code, 404)

        after, families = scrape()
        self.assertEqual(value(after, "ferromq_queue_pushed_messages_total", queue=name), total)
        self.assertEqual(value(after, "ferromq_queue_reservations_total", queue=name), 10)
        self.assertEqual(value(after, "ferromq_queue_deleted_messages_total", queue=name), 4)
        self.assertEqual(value(after, "ferromq_queue_released_total", queue=name), 2)
        self.assertEqual(value(after, "ferromq_queue_messages", queue=name), total - 4)
        self.assertEqual(value(after, "ferromq_queue_reserved_messages", queue=name), 4)
        self.assertEqual(value(after, "ferromq_queue_available_messages", queue=name), total - 8)
        self.assertGreater(value(after, "ferromq_queue_stored_bytes", queue=name), 0)
        self.assertGreaterEqual(value(after, "ferromq_queue_oldest_message_age_seconds", queue=name), 0)
        self.assertEqual(
            value(after, "ferromq_requests_total", protocol="http", op="push", code="201") - pushed_requests,
            producers * per_producer,
        )
        self.assertGreaterEqual(
            value(after, "ferromq_requests_total", protocol="http", op="queue_info", code="404"), 1
        )
        # Histograms: the push latency's count matches the requests, buckets are cumulative.
        hist = families["ferromq_request_duration_seconds"]
        self.assertEqual(hist.type, "histogram")
        push_buckets = [
            s for s in hist.samples
            if s.name.endswith("_bucket") and s.labels.get("op") == "push" and s.labels.get("protocol") == "http"
        ]
        counts = [s.value for s in push_buckets]
        self.assertEqual(counts, sorted(counts))
        self.assertEqual(push_buckets[-1].labels["le"], "+Inf")
        self.assertGreaterEqual(counts[-1], producers * per_producer)
        # Group commit, connections, process, data dir.
        self.assertGreater(value(after, "ferromq_commit_flush_duration_seconds_count"), 0)
        self.assertGreater(value(after, "ferromq_commit_requests_per_flush_count"), 0)
        self.assertGreater(value(after, "ferromq_connections_accepted_total", protocol="http"), 0)
        self.assertGreaterEqual(value(after, "ferromq_connections_open", protocol="http"), 1)
        self.assertGreater(value(after, "ferromq_received_bytes_total", protocol="http"), 0)
        self.assertGreater(value(after, "ferromq_sent_bytes_total", protocol="http"), 0)
        self.assertGreater(value(after, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(value(after, "process_cpu_seconds_total"), 0)
        self.assertGreater(value(after, "ferromq_data_dir_size_bytes"), 0)
        self.assertEqual(value(after, "ferromq_build_info", version=families["ferromq_build_info"].samples[0].labels["version"]), 1)
        for family in families.values():
            self.assertTrue(
                family.name.startswith("ferromq_") or family.name.startswith("process_"), family.name
            )

    def test_the_metrics_listener_serves_the_same_and_needs_a_full_token(self):
        samples, families = scrape(METRICS_URLS[1])
        self.assertIn("ferromq_queues", families)
        self.assertGreaterEqual(value(samples, "ferromq_uptime_seconds"), 0)
        for url in METRICS_URLS:
            self.assertEqual(requests.get(url, timeout=10).status_code, 401)
            wrong = requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10)
            self.assertEqual(wrong.status_code, 401)
        # The dedicated listener serves no API and no other path.
        other = "http://%s:%s/3/projects/%s/queues" % (HOST, os.environ["FERROMQ_METRICS_PORT"], PROJECT)
        self.assertEqual(requests.get(other, headers=AUTH, timeout=10).status_code, 404)
        ready = "http://%s:%s/health/ready" % (HOST, os.environ["FERROMQ_METRICS_PORT"])
        self.assertEqual(requests.get(ready, timeout=10).status_code, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
