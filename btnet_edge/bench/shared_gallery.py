"""Two face servers on one PostgreSQL gallery: how soon one sees what the other enrolled, and a database crash under
load.

Everything runs on this machine: a throwaway PostgreSQL with pgvector (``pg_local``) and
two ``btnet-edge serve`` processes (each its own Ray instance, as two nodes would be),
each with API keys. Rounds:

1. auth: requests without a key, with a wrong key and with a client key on an admin
   route, and what they were answered;
2. propagation: enroll a photo through server A, then ask server B until it names the
   person; the time from A's answer to B's first correct answer;
3. outage: clients identify on both servers and one enrolls new people while the
   PostgreSQL server is SIGKILLed and restarted; answers by status, and whether every
   enrollment a server acknowledged is still in the gallery afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import ServeError

REQUEST_TIMEOUT_S = 30.0
START_TIMEOUT_S = 300.0


def call(url: str, method: str = "GET", body: bytes | None = None, key: str | None = None) -> tuple[int, dict]:
    """(status, JSON answer); connection failures are status 0."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {"error": "not JSON"}
    except (OSError, ValueError) as exc:
        return 0, {"error": str(exc)}


def start_server(package: Path, gallery: str, keys: Path, port: int, num_cpus: int,
                 log: Path) -> tuple[subprocess.Popen, str]:
    """``btnet-edge serve`` in a process of its own; returns it and its URL once it answers."""
    with open(log, "w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "btnet_edge", "serve", str(package), "--gallery", gallery,
                                 "--port", str(port), "--api-keys", str(keys), "--num-cpus", str(num_cpus)],
                                stdout=subprocess.PIPE, stderr=out, text=True, env=os.environ.copy())
    line = proc.stdout.readline()
    if not line.startswith("{"):
        proc.kill()
        raise ServeError(f"a face server did not start; its log: {log.read_text()[-2000:]}")
    return proc, json.loads(line)["url"]


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: serve stops Serve and its Ray processes
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    if proc.stdout:
        proc.stdout.close()


def auth_round(url: str, photo: bytes, client: str) -> dict[str, Any]:
    checks = {"no key": call(url + "/v1/faces", "POST", photo),
              "wrong key": call(url + "/v1/faces", "POST", photo, key="btnet_" + "x" * 43),
              "client key on /v1/faces": call(url + "/v1/faces", "POST", photo, key=client),
              "client key on /v1/identities": call(url + "/v1/identities", key=client)}
    return {name: {"status": status, "error": answer.get("error")} for name, (status, answer) in checks.items()}


def propagation_round(a: str, b: str, photo: bytes, admin: str, client: str, rounds: int) -> dict[str, Any]:
    """Enroll through A, poll B; milliseconds from A's answer to B's first answer naming the person."""
    seen_ms, enroll_ms, polls = [], [], []
    for r in range(rounds):
        name = f"propagation-{r}"
        t0 = time.perf_counter()
        status, answer = call(f"{a}/v1/identities/{name}", "POST", photo, key=admin)
        if status != 200:
            raise ServeError(f"enrolling through {a} failed: HTTP {status}: {answer}")
        t1 = time.perf_counter()
        tries = 0
        while True:
            tries += 1
            status, faces = call(f"{b}/v1/faces", "POST", photo, key=client)
            if status == 200 and name in [f["identity"] for f in faces["faces"]]:
                break
            if time.perf_counter() - t1 > 60:
                raise ServeError(f"{b} never named {name} within 60 s")
        seen_ms.append(1000 * (time.perf_counter() - t1))
        enroll_ms.append(1000 * (t1 - t0))
        polls.append(tries)
        call(f"{b}/v1/identities/{name}", "DELETE", key=admin)  # removed through the other server
    return {"rounds": rounds, "enroll_ms": enroll_ms, "seen_by_other_after_ms": seen_ms, "polls": polls}


def outage_round(urls: list[str], photo: bytes, admin: str, client: str, pg, clients: int, load_s: float,
                 kill_at_s: float, down_s: float) -> dict[str, Any]:
    """Identify and enroll on both servers while PostgreSQL is killed and restarted."""
    start = time.perf_counter()
    stop = threading.Event()
    statuses: Counter = Counter()
    messages: Counter = Counter()
    acknowledged: list[str] = []
    failed_enrolls: Counter = Counter()
    lock = threading.Lock()

    def identify(i: int) -> None:
        while not stop.is_set():
            status, answer = call(urls[i % len(urls)] + "/v1/faces", "POST", photo, key=client)
            with lock:
                statuses[status] += 1
                if status != 200:
                    messages[f"HTTP {status}: {str(answer.get('error'))[:120]}"] += 1

    def enroll() -> None:
        n = 0
        while not stop.is_set():
            name = f"outage-{n}"
            status, _ = call(f"{urls[n % len(urls)]}/v1/identities/{name}", "POST", photo, key=admin)
            with lock:
                if status == 200:
                    acknowledged.append(name)
                else:
                    failed_enrolls[status] += 1
            n += 1

    threads = [threading.Thread(target=identify, args=(i,)) for i in range(clients)] + [threading.Thread(target=enroll)]
    for t in threads:
        t.start()
    time.sleep(kill_at_s)
    pg.kill()
    killed_at = time.perf_counter() - start
    time.sleep(down_s)
    pg.start()
    restarted_at = time.perf_counter() - start
    time.sleep(max(0.0, load_s - (time.perf_counter() - start)))
    stop.set()
    for t in threads:
        t.join(REQUEST_TIMEOUT_S * 2)
    status, listing = call(urls[0] + "/v1/identities", key=admin)
    present = {i["name"] for i in listing.get("identities", [])} if status == 200 else set()
    lost = sorted(set(acknowledged) - present)
    return {"killed_at_s": round(killed_at, 2), "restarted_at_s": round(restarted_at, 2),
            "identify_answers": {str(k): v for k, v in sorted(statuses.items())},
            "identify_errors": dict(messages.most_common(5)), "enrollments_acknowledged": len(acknowledged),
            "enrollments_refused": {str(k): v for k, v in failed_enrolls.items()}, "enrollments_lost": lost}


def format_report(report: dict[str, Any]) -> str:
    lines = ["auth:"]
    lines += [f"  {name:32s} HTTP {r['status']}  {r['error'] or ''}"[:150] for name, r in report["auth"].items()]
    p = report["propagation"]
    lines.append(f"propagation: enrolled through A in {_ms(p['enroll_ms'])}; "
                 f"named by B after {_ms(p['seen_by_other_after_ms'])}"
                 f" (first answer of B in {p['polls'].count(1)} of {p['rounds']} rounds)")
    o = report["outage"]
    lines.append(f"PostgreSQL killed at {o['killed_at_s']} s, back at {o['restarted_at_s']} s: identify answers "
                 f"{o['identify_answers']}, enrollments acknowledged {o['enrollments_acknowledged']}, refused "
                 f"{o['enrollments_refused']}, lost {len(o['enrollments_lost'])}")
    lines += [f"  {n} x {m}" for m, n in o["identify_errors"].items()]
    return "\n".join(lines)


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    return f"median {ordered[len(ordered) // 2]:.0f} ms (max {ordered[-1]:.0f})"
