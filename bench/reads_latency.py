"""p50/p95 of the notification reads over real HTTP (issue 8, "reads stay flat").

    python -m bench.reads_latency --base http://127.0.0.1:8000 --key nh_live_… --test-key nh_test_…

One request at a time (latency, not queueing), keep-alive, against a server on a database
loaded by bench.reads_dataset. Prints one JSON line per read.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import time
from urllib.parse import urlencode, urlsplit


class Api:
    def __init__(self, base: str, key: str) -> None:
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port or 80)
        self.headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}

    def get(self, path: str) -> tuple[int, dict, float]:
        start = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - start) * 1000
        return response.status, json.loads(body or b"{}"), elapsed


def measure(api: Api, name: str, paths: list[str], runs: int) -> dict:
    for path in paths[:5]:
        api.get(path)  # warm up
    times = []
    for i in range(runs):
        status, body, ms = api.get(paths[i % len(paths)])
        assert status == 200, (name, status, body)
        times.append(ms)
    times.sort()
    return {"read": name, "runs": runs, "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
            "max_ms": round(times[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--test-key", default="")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    api = Api(args.base, args.key)
    root = "/api/v1/notifications"
    # Notifications to read: the newest page holds the large ones (loaded newest first).
    listing = api.get(f"{root}?page_size=500")[1]["results"]
    large = [n["id"] for n in listing if n["recipient_count"] >= 50_000]
    small = [n["id"] for n in listing if n["recipient_count"] < 50_000]
    random.seed(8)
    old = api.get(f"{root}?created_before=2026-11-30T00:00:00Z&page_size=200")[1]["results"]
    small += [n["id"] for n in old]
    random.shuffle(small)
    deep = []
    for notification_id in large[:3]:
        url = f"{root}/{notification_id}/deliveries?page_size=50"
        for _ in range(40):  # 40 pages in
            url = api.get(url)[1]["next"].split("://", 1)[1].split("/", 1)[1]
            url = "/" + url
        deep.append(url)
    reads = {
        "detail (50,000 deliveries)": [f"{root}/{i}" for i in large],
        "detail (small)": [f"{root}/{i}" for i in small],
        "status (50,000 deliveries)": [f"{root}/{i}/status" for i in large],
        "status (small)": [f"{root}/{i}/status" for i in small],
        "deliveries page 1 (50,000)": [f"{root}/{i}/deliveries" for i in large],
        "deliveries page 41 (50,000)": deep,
        "deliveries status=bounced (50,000)": [f"{root}/{i}/deliveries?status=bounced"
                                               for i in large],
        "deliveries include=events (50,000)": [f"{root}/{i}/deliveries?include=events"
                                               for i in large],
        "list": [root],
        "list status=failed": [f"{root}?status=failed"],
        "list channel=sms": [f"{root}?channel=sms"],
        "list channel=push (matches none)": [f"{root}?channel=push"],
        "list recipient": [f"{root}?recipient=user_{i}" for i in range(0, 100_000, 997)],
        "list created window": [f"{root}?" + urlencode({
            "created_after": f"2026-{m:02d}-01T00:00:00Z",
            "created_before": f"2026-{m:02d}-15T00:00:00Z"}) for m in (10, 11)],
        "list status+channel": [f"{root}?status=partially_failed&channel=email"],
    }
    for name, paths in reads.items():
        print(json.dumps(measure(api, name, paths, args.runs)), flush=True)
    if args.test_key:
        test_api = Api(args.base, args.test_key)
        print(json.dumps(measure(test_api, "list (test key)", [root], args.runs)), flush=True)


if __name__ == "__main__":
    main()
