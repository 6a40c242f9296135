"""Acknowledged feedback survives the server being killed (SIGKILL) right after the acknowledgement."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx
from serve_support import KEY, free_port

from domainlm.serve.store import FeedbackStore


def test_every_acknowledged_feedback_survives_a_kill(tiny_dir, tmp_path):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    store = FeedbackStore(db)
    response_ids = [store.add_response(model="tiny", request={"messages": [{"role": "user", "content": f"q{i}"}]},
                                       response=f"a{i}") for i in range(8)]
    store.close()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "domainlm", "serve", "--model", str(tiny_dir), "--db", db, "--api-key", KEY,
         "--port", str(port), "--rate-limit", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "server did not start"
            time.sleep(0.2)

        acked: list[int] = []
        lock = threading.Lock()
        stop = threading.Event()

        def post_forever(worker: int) -> None:
            with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        r = client.post(url + "/v1/feedback", json={
                            "response_id": response_ids[(worker + n) % len(response_ids)],
                            "rating": "up" if n % 2 else "down", "comment": f"w{worker}-{n}"})
                    except httpx.TransportError:
                        return  # the server is gone
                    if r.status_code == 200:
                        with lock:
                            acked.append(r.json()["id"])
                            if len(acked) >= 40:
                                stop.set()
                                proc.kill()  # SIGKILL the moment the 40th acknowledgement arrives

        threads = [threading.Thread(target=post_forever, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -9 and len(acked) >= 40
    stored = {f.id for f in FeedbackStore(db).iter_feedback()}
    missing = set(acked) - stored
    assert not missing, f"acknowledged but lost: {sorted(missing)}"
