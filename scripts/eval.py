#!/usr/bin/env python3
"""Retrieval quality of a running Kenning, measured on the labeled set in tests/eval.

Ingests the set's pages (Rust documentation HTML from the toolchain's rust-docs component) into
a fresh space through the API, checks every label (its answer phrase must sit inside one
passage of its page), then asks each question in each search mode and reports recall@5,
MRR@10, nDCG@10, how often the right page is the top hit, and latency. A passage counts as
the answer when it contains the answer phrase (case and whitespace ignored).

Usage: eval.py --url URL --html DIR [--key KEY] [--modes dense,keyword,hybrid]
               [--min-recall5 X] [--min-mrr10 Y] [--json FILE] [questions.jsonl ...]
Standard library only, so it runs wherever Python 3 does. scripts/eval.sh starts a server
and calls it.
"""

import argparse
import glob
import json
import math
import os
import re
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def norm(text):
    return re.sub(r"\s+", " ", text).strip().lower()


class Api:
    def __init__(self, url, key):
        self.url = url.rstrip("/")
        self.key = key

    def call(self, method, path, body=None, content_type="application/json", raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raise SystemExit(f"{method} {path}: {e.code} {e.read()[:300]!r}")

    def upload(self, space, filename, content):
        boundary = uuid.uuid4().hex
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: text/html\r\n\r\n"
        ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
        return self.call(
            "POST",
            f"/api/v1/spaces/{space}/documents",
            raw=body,
            content_type=f"multipart/form-data; boundary={boundary}",
        )


def load(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    seen = set()
    for r in rows:
        if r["id"] in seen:
            raise SystemExit(f"duplicate question id {r['id']}")
        seen.add(r["id"])
    return rows


def ingest(api, html_dir, pages):
    space = api.call("POST", "/api/v1/spaces", {"name": f"eval {time.strftime('%Y%m%d-%H%M%S')} {uuid.uuid4().hex[:6]}"})["id"]
    docs = {}
    started = time.monotonic()
    for page in pages:
        with open(os.path.join(html_dir, page), "rb") as f:
            content = f.read()
        # The page's path as its name: the book and chapter are what a reader would see.
        docs[page] = api.upload(space, page.replace("/", " - "), content)["id"]
    pending = set(docs.values())
    while pending:
        for doc in list(pending):
            d = api.call("GET", f"/api/v1/spaces/{space}/documents/{doc}")
            if d["status"] == "ready":
                pending.discard(doc)
            elif d["status"] == "failed":
                raise SystemExit(f"document {doc} failed: {d.get('error')}")
        if pending:
            if time.monotonic() - started > 1800:
                raise SystemExit(f"{len(pending)} documents not ready after 30 minutes")
            time.sleep(0.5)
    return space, docs, time.monotonic() - started


def passages(api, space, doc):
    texts, offset = [], 0
    while True:
        page = api.call("GET", f"/api/v1/spaces/{space}/documents/{doc}/chunks?limit=100&offset={offset}")
        texts.extend(c["text"] for c in page["items"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return texts


def evaluate(api, space, docs, questions, mode):
    ranks, top_page, latencies = [], 0, []
    for q in questions:
        started = time.monotonic()
        found = api.call("POST", f"/api/v1/spaces/{space}/search", {"query": q["question"], "mode": mode, "limit": 10})
        latencies.append((time.monotonic() - started) * 1000)
        answer = norm(q["answer"])
        rank = next(
            (i + 1 for i, hit in enumerate(found["results"]) if answer in norm(hit["chunk"]["text"])),
            None,
        )
        ranks.append(rank)
        results = found["results"]
        top_page += bool(results) and results[0]["chunk"]["document_id"] == docs[q["page"]]
    n = len(questions)
    latencies.sort()
    return {
        "mode": mode,
        "questions": n,
        "recall@5": sum(1 for r in ranks if r and r <= 5) / n,
        "mrr@10": sum(1 / r for r in ranks if r and r <= 10) / n,
        "ndcg@10": sum(1 / math.log2(r + 1) for r in ranks if r and r <= 10) / n,
        "page@1": top_page / n,
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[min(n - 1, int(math.ceil(0.95 * n)) - 1)],
        "misses": [q["id"] for q, r in zip(questions, ranks) if not r or r > 5],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("questions", nargs="*")
    p.add_argument("--url", required=True)
    p.add_argument("--key", default=os.environ.get("KENNING_API_KEY"))
    p.add_argument("--html", required=True, help="the rust-docs html directory")
    p.add_argument("--modes", default="dense,keyword,hybrid")
    p.add_argument("--min-recall5", type=float, help="fail when hybrid recall@5 is lower")
    p.add_argument("--min-mrr10", type=float, help="fail when hybrid MRR@10 is lower")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()
    files = args.questions or sorted(glob.glob(os.path.join(ROOT, "tests/eval/questions-*.jsonl")))
    questions = load(files)
    pages = sorted({q["page"] for q in questions})
    print(f"{len(questions)} questions over {len(pages)} pages ({', '.join(os.path.basename(f) for f in files)})")
    api = Api(args.url, args.key)
    space, docs, took = ingest(api, args.html, pages)
    print(f"ingested {len(pages)} pages in {took:.1f} s")

    # Every label must be answerable: its phrase inside one passage of its page.
    texts = {page: [norm(t) for t in passages(api, space, doc)] for page, doc in docs.items()}
    total = sum(len(t) for t in texts.values())
    broken = [q["id"] for q in questions if not any(norm(q["answer"]) in t for t in texts[q["page"]])]
    print(f"{total} passages; labels whose phrase is in no single passage of their page: {len(broken)} {broken}")

    results = [evaluate(api, space, docs, questions, mode) for mode in args.modes.split(",")]
    print()
    print("| mode | questions | recall@5 | MRR@10 | nDCG@10 | right page first | p50 ms | p95 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['mode']} | {r['questions']} | {r['recall@5']:.2f} | {r['mrr@10']:.2f} | {r['ndcg@10']:.2f} "
            f"| {r['page@1']:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} |"
        )
    for r in results:
        print(f"{r['mode']} misses (not in the top 5): {' '.join(r['misses'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pages": len(pages), "passages": total, "broken_labels": broken, "results": results}, f, indent=2)
    hybrid = next((r for r in results if r["mode"] == "hybrid"), None)
    failed = []
    if hybrid and args.min_recall5 is not None and hybrid["recall@5"] < args.min_recall5:
        failed.append(f"hybrid recall@5 {hybrid['recall@5']:.2f} < {args.min_recall5}")
    if hybrid and args.min_mrr10 is not None and hybrid["mrr@10"] < args.min_mrr10:
        failed.append(f"hybrid MRR@10 {hybrid['mrr@10']:.2f} < {args.min_mrr10}")
    if broken and (args.min_recall5 is not None or args.min_mrr10 is not None):
        failed.append(f"{len(broken)} labels cannot be answered from one passage")
    if failed:
        raise SystemExit("quality floor not met: " + "; ".join(failed))


if __name__ == "__main__":
    main()
