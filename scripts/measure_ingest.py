#!/usr/bin/env python3
"""Measures ingestion throughput and search latency against a running Kenning over HTTP.

Generates a Markdown corpus of roughly --mb megabytes (varied sentences under headings), uploads
it as --files documents into a new space, waits until every document is ready, and reports
passages per second; then times --queries searches per mode, each query first uncached (miss),
then repeated (hit). With --during-mb, it then uploads that much more and times uncached dense
searches at --rate per second while those documents are being ingested, against the same
searches' idle figures. Standard library only; loopback targets only.

    python3 scripts/measure_ingest.py --url http://127.0.0.1:3000 --mb 1 --files 10
    python3 scripts/measure_ingest.py --mb 1 --files 10 --during-mb 0.5 --queries 40
"""
import argparse, json, random, statistics, time, urllib.request, uuid

WORDS = ("policy leave laptop deploy release invoice customer contract office security backup "
         "database network incident review budget travel expense onboarding training hardware "
         "password vacation manager quarter revenue forecast support ticket escalation vendor").split()


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def corpus(size, rng):
    out, n = [], 0
    while n < size:
        title = " ".join(rng.choice(WORDS) for _ in range(3)).title()
        para = " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."
                        for _ in range(rng.randint(3, 6)))
        block = f"## {title}\n\n{para}\n\n"
        out.append(block)
        n += len(block)
    return "".join(out)


def upload(url, space, name, text):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: text/markdown\r\n\r\n").encode() + text.encode() + f"\r\n--{boundary}--\r\n".encode()
    return request("POST", f"{url}/api/v1/spaces/{space}/documents", body,
                   {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:3000")
    ap.add_argument("--mb", type=float, default=1.0)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--during-mb", type=float, default=0.0)
    ap.add_argument("--rate", type=float, default=4.0)
    a = ap.parse_args()
    rng = random.Random(7)
    space = request("POST", f"{a.url}/api/v1/spaces", json.dumps({"name": f"bench {uuid.uuid4().hex[:8]}"}).encode(),
                    {"Content-Type": "application/json"})["id"]
    per_file = int(a.mb * 1024 * 1024 / a.files)
    started = time.monotonic()
    docs = [upload(a.url, space, f"doc{i}.md", corpus(per_file, rng))["id"] for i in range(a.files)]
    chunks = 0
    for d in docs:
        chunks += wait_ready(a.url, space, d)["chunk_count"]
    elapsed = time.monotonic() - started
    print(f"ingested {a.files} files, {a.mb} MB, {chunks} passages in {elapsed:.1f} s: "
          f"{chunks / elapsed:.1f} passages/s, {a.mb / elapsed * 60:.2f} MB/min")
    for mode in ("keyword", "dense", "hybrid"):
        miss, hit = [], []
        for i in range(a.queries):
            q = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}"
            body = json.dumps({"query": q, "mode": mode}).encode()
            for bucket in (miss, hit):
                t = time.monotonic()
                r = request("POST", f"{a.url}/api/v1/spaces/{space}/search", body, {"Content-Type": "application/json"})
                bucket.append((time.monotonic() - t) * 1000)
                assert r["cached"] == (bucket is hit), r
        print(f"search {mode:8s} miss p50 {statistics.median(miss):6.1f} ms p99 {pct(miss, 99):6.1f} ms | "
              f"hit p50 {statistics.median(hit):5.1f} ms p99 {pct(hit, 99):5.1f} ms")
    # The query embedding alone: a new question (embedding computed), then the same question with
    # another limit (result not cached, embedding served from the query-vector cache).
    computed, reused = [], []
    for i in range(a.queries):
        q = f"which {rng.choice(WORDS)} applies to {rng.choice(WORDS)} number {i}"
        for bucket, limit in ((computed, 5), (reused, 6)):
            body = json.dumps({"query": q, "mode": "dense", "limit": limit}).encode()
            t = time.monotonic()
            r = request("POST", f"{a.url}/api/v1/spaces/{space}/search", body, {"Content-Type": "application/json"})
            bucket.append((time.monotonic() - t) * 1000)
            assert not r["cached"], r
    embed_ms = [c - r for c, r in zip(computed, reused)]
    print(f"dense search, query embedding computed p50 {statistics.median(computed):.1f} ms p99 {pct(computed, 99):.1f} ms | "
          f"embedding cached p50 {statistics.median(reused):.1f} ms p99 {pct(reused, 99):.1f} ms | "
          f"difference (the embedding) p50 {statistics.median(embed_ms):.1f} ms")
    if a.during_mb > 0:
        idle = paced_dense(a, space, rng, "idle")
        per_file = int(a.during_mb * 1024 * 1024 / a.files)
        more = [upload(a.url, space, f"more{i}.md", corpus(per_file, rng))["id"] for i in range(a.files)]
        busy = paced_dense(a, space, rng, "busy")
        still = sum(request("GET", f"{a.url}/api/v1/spaces/{space}/documents/{d}")["status"] != "ready" for d in more)
        for d in more:
            wait_ready(a.url, space, d)
        print(f"dense uncached at {a.rate}/s: idle p50 {statistics.median(idle):.1f} ms p99 {pct(idle, 99):.1f} ms | "
              f"during ingestion p50 {statistics.median(busy):.1f} ms p99 {pct(busy, 99):.1f} ms "
              f"({pct(busy, 99) / pct(idle, 99):.2f}x idle p99; {still} of {a.files} documents still "
              f"ingesting at the end)")


def wait_ready(url, space, d):
    while True:
        doc = request("GET", f"{url}/api/v1/spaces/{space}/documents/{d}")
        if doc["status"] in ("ready", "failed"):
            break
        time.sleep(0.2)
    assert doc["status"] == "ready", doc
    return doc


def paced_dense(a, space, rng, tag):
    """Uncached dense searches (each query new), one every 1/rate seconds; latencies in ms."""
    out = []
    for i in range(a.queries):
        q = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {tag} {i}"
        body = json.dumps({"query": q, "mode": "dense"}).encode()
        t = time.monotonic()
        r = request("POST", f"{a.url}/api/v1/spaces/{space}/search", body, {"Content-Type": "application/json"})
        took = time.monotonic() - t
        assert not r["cached"], r
        out.append(took * 1000)
        time.sleep(max(0.0, 1 / a.rate - took))
    return out


if __name__ == "__main__":
    main()
