"""Power loss, not SIGKILL: ferromq's data directory on lazyfs.py (a FUSE layer that
forgets every write and every name change not yet fsynced), the server killed under
load, then a "power cut" in the layer, then a restart on what a disk would really
hold. After every cut: every acknowledged push is there with its body unless its
delete was sent, and no acknowledged delete came back. The first iteration also
creates QUEUES queues (6,000 by default), enough for sled's metadata page to go to
blob files, which released sled never fsynced (the hardening issue).

    python test_power_loss.py        # run by scripts/power-loss-test.sh

Environment: FERROMQ_BIN (the server binary), LAZYFS_PYTHON (a Python with fusepy),
ITERATIONS (default 3), QUEUES (default 6000), SEED. Prints a closing line
"power_loss: N passed, M failed".
"""

import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["FERROMQ_BIN"]
LAZYFS_PYTHON = os.environ.get("LAZYFS_PYTHON", sys.executable)
ITERATIONS = int(os.environ.get("ITERATIONS", "3"))
QUEUES = int(os.environ.get("QUEUES", "6000"))
SEED = int(os.environ.get("SEED", str(int(time.time()))))
PROJECT = "p"


def wait_until(what, check, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    """A ferromq server with the HTTP API on free ports."""

    def __init__(self, data_dir, log):
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
             "--auth", "none", "--data-dir", data_dir],
            stdout=subprocess.PIPE, stderr=log, text=True,
            env=dict(os.environ, RUST_LOG="warn"),
        )
        self.http = None
        for line in self.proc.stdout:
            if line.startswith("ferromq http listening on "):
                self.http = line.split()[-1]
                break
        if self.http is None:
            self.proc.wait(timeout=10)
            raise AssertionError(f"the server did not start (exit {self.proc.returncode})")
        self.host, port = self.http.rsplit(":", 1)
        self.port = int(port)

    def connection(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        assert code == 0, f"SIGTERM exit {code}"


def call(conn, method, path, body=None):
    payload = None if body is None else json.dumps(body)
    headers = {"Content-Type": "application/json"} if payload else {}
    conn.request(method, f"/3/projects/{PROJECT}/{path}", body=payload, headers=headers)
    reply = conn.getresponse()
    data = reply.read()
    return reply.status, (json.loads(data) if data else None)


class Ledger:
    """What the server acknowledged, across every iteration."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pushed = {}  # id -> (queue, body), acknowledged
        self.deleting = set()  # ids whose delete was sent (acknowledged or not)
        self.deleted = set()  # ids whose delete was acknowledged

    def check(self, server):
        """Every acknowledged push is there (unless its delete was sent), with its
        body; no acknowledged delete came back. Returns the failures."""
        conn = server.connection()
        failures = []
        for mid, (queue, body) in sorted(self.pushed.items()):
            status, reply = call(conn, "GET", f"queues/{queue}/messages/{mid}")
            if mid in self.deleted:
                if status != 404:
                    failures.append(f"acknowledged delete of {queue}/{mid} came back")
            elif mid in self.deleting:
                if status == 404:
                    self.deleted.add(mid)  # its delete happened
            elif status != 200:
                failures.append(f"acknowledged push {queue}/{mid} lost ({status})")
            elif reply["message"]["body"] != body:
                failures.append(f"{queue}/{mid} has another body")
        conn.close()
        return failures


def producer(server, ledger, queues, stop, rng, big=False):
    """Pushes 1-5 small messages a call; `big`: 100 of ~600 B, so batch records
    near 64 KiB fill sled leaves past its inline limit and go to blob files."""
    conn = server.connection()
    n = 0
    while not stop.is_set():
        queue = rng.choice(queues)
        count, pad = (100, "x" * 600) if big else (rng.randint(1, 5), "")
        bodies = [f"{queue}-{os.getpid()}-{n}-{k}-{rng.random()}{pad}" for k in range(count)]
        n += 1
        try:
            status, reply = call(conn, "POST", f"queues/{queue}/messages",
                                 {"messages": [{"body": b} for b in bodies]})
        except (OSError, http.client.HTTPException):
            return  # the server is gone
        if status == 201:
            with ledger.lock:
                for mid, body in zip(reply["ids"], bodies):
                    ledger.pushed[mid] = (queue, body)


def consumer(server, ledger, queues, stop, rng):
    conn = server.connection()
    while not stop.is_set():
        queue = rng.choice(queues)
        try:
            status, reply = call(conn, "POST", f"queues/{queue}/reservations", {"n": 5, "timeout": 60})
            if status != 200:
                continue
            for m in reply["messages"]:
                with ledger.lock:
                    ledger.deleting.add(m["id"])
                status, _ = call(conn, "DELETE", f"queues/{queue}/messages/{m['id']}",
                                 {"reservation_id": m["reservation_id"]})
                if status == 200:
                    with ledger.lock:
                        ledger.deleted.add(m["id"])
        except (OSError, http.client.HTTPException):
            return


def many_queues(server, ledger, count):
    """One message in each of `count` new queues (a few connections at once)."""
    def work(part):
        conn = server.connection()
        for i in range(part, count, 8):
            queue = f"many-{i}"
            status, reply = call(conn, "POST", f"queues/{queue}/messages",
                                 {"messages": [{"body": queue}]})
            assert status == 201, (status, reply)
            with ledger.lock:
                ledger.pushed[reply["ids"][0]] = (queue, queue)
    threads = [threading.Thread(target=work, args=(p,)) for p in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main():
    rng = random.Random(SEED)
    work = tempfile.mkdtemp(prefix="ferromq-power-loss-")
    backing, mnt = os.path.join(work, "backing"), os.path.join(work, "mnt")
    os.makedirs(backing)
    os.makedirs(mnt)
    log = open(os.path.join(work, "server.log"), "a")
    ledger = Ledger()
    passed = failed = 0
    print(f"power_loss: seed {SEED}, {ITERATIONS} cuts, {QUEUES} queues first, in {work}")
    for iteration in range(1, ITERATIONS + 1):
        fs = subprocess.Popen([LAZYFS_PYTHON, os.path.join(HERE, "lazyfs.py"), backing, mnt],
                              stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_until("the lazyfs mount", lambda: os.path.ismount(mnt))
            server = Server(os.path.join(mnt, "data"), log)
            try:
                if iteration == 1 and QUEUES:
                    many_queues(server, ledger, QUEUES)
                queues = [f"q{i}" for i in range(4)]
                stop = threading.Event()
                workers = [threading.Thread(target=producer,
                                            args=(server, ledger, queues, stop, random.Random(rng.random()), p == 0))
                           for p in range(4)]
                workers += [threading.Thread(target=consumer,
                                             args=(server, ledger, queues, stop, random.Random(rng.random())))
                            for _ in range(2)]
                for w in workers:
                    w.start()
                time.sleep(rng.uniform(0.5, 2.0))  # the moment of the cut: random by design
            finally:
                server.kill9()
            stop.set()
            for w in workers:
                w.join(timeout=30)
            # The power cut: everything not fsynced is gone.
            blobs_dir = os.path.join(backing, "data", "blobs")
            blobs = len(os.listdir(blobs_dir)) if os.path.isdir(blobs_dir) else 0
            try:
                os.stat(os.path.join(mnt, ".lazyfs-crash"))
            except FileNotFoundError:
                pass
        finally:
            subprocess.run(["umount", mnt], check=False)
            fs.wait(timeout=30)
        try:
            server = Server(os.path.join(backing, "data"), log)
        except AssertionError as err:
            failed += 1
            print(f"power_loss: cut {iteration}: {err}; its log is {log.name}")
            break
        failures = ledger.check(server)
        server.stop()
        acked = len(ledger.pushed)
        if failures:
            failed += 1
            print(f"power_loss: cut {iteration}: {len(failures)} failures of {acked} pushes checked:")
            for f in failures[:20]:
                print("   ", f)
        else:
            passed += 1
            print(f"power_loss: cut {iteration} ({blobs} blob files at the cut): {acked} "
                  f"acknowledged pushes and {len(ledger.deleted)} deletes checked, none lost or back")
    log.close()
    if not failed:
        shutil.rmtree(work, ignore_errors=True)  # kept for a look when something failed
    print(f"power_loss: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
