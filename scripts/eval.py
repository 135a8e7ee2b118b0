#!/usr/bin/env python3
"""Retrieval quality of a running Kenning, measured on the labeled set in tests/eval.

Ingests the set's pages (Rust documentation HTML from the toolchain's rust-docs component) into
a fresh space through the API, checks every label (its answer phrase must sit inside one
passage of its page), then asks each question in each search mode and reports recall@5,
MRR@10, nDCG@10, how often the right page is the top hit, and latency. A passage counts as
the answer when it contains the answer phrase (case and whitespace ignored).

With --answers it also asks every question (or --answer-sample N of them, spread evenly) through
the chat API and reports how often the answer is correct (it holds at least two thirds of the
answer phrase's content words), cites at all, cites right (a citation shown for it is a passage
holding the answer phrase), how many shown citations their passage does not support (fewer
than 60 % of the cited sentence's content words in the passage), how often it says "I don't
know", and its first-token and whole-answer latency; plus, over tests/eval/unanswerable.jsonl
(questions the corpus cannot answer), how often it rightly declines.

Usage: eval.py --url URL --html DIR [--key KEY] [--modes dense,keyword,hybrid]
               [--min-recall5 X] [--min-mrr10 Y] [--answers] [--answer-sample N]
               [--min-correct X] [--min-cites-right Y] [--json FILE] [questions.jsonl ...]
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


STOPWORDS = set(
    """a an the and or but if of to in on at by for with from as is are was were be been being
    it its this that these those there their them they you your we our i he she his her not no
    do does did so than then too very can could should would may might must will shall into out
    up down over under about any all each every some such what which who whom whose when where
    why how also only just more most other own same both few""".split()
)


def content_words(text):
    return [w for w in re.findall(r"[a-z0-9_]+", text.lower()) if w not in STOPWORDS and len(w) > 1]


def holds(text, phrase, share):
    """Whether `text` holds at least `share` of the content words of `phrase`."""
    want = content_words(phrase)
    if not want:
        return False
    have = set(content_words(text))
    return sum(1 for w in want if w in have) >= share * len(want)


CITATION = re.compile(r"\[(\d+)\]")


def shown_citations(text, done):
    """(sentence, n) pairs the reader is shown: the server's verified attribution when the done
    event carries one, else every [n] in the text, attached to the sentence it ends."""
    if done and done.get("sentences") is not None:
        return [(s["text"], n) for s in done["sentences"] for n in s.get("sources", [])]
    pairs, start = [], 0
    # Each run of markers cites the sentence just before it (markers before or after its stop).
    for group in re.finditer(r"(?:\s*\[\d+\])+[.!?]?", text):
        before = text[start:group.start()].strip()
        sentences = [x for x in re.split(r"(?<=[.!?])\s+", before) if x.strip()]
        sentence = sentences[-1] if sentences else before
        for n in CITATION.findall(group.group()):
            pairs.append((sentence, int(n)))
        start = group.end()
    return pairs


def ask(api, space, question):
    """One answer by the chat API: its events and timings."""
    body = json.dumps({"question": question}).encode()
    req = urllib.request.Request(f"{api.url}/api/v1/spaces/{space}/chat", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "text/event-stream")
    if api.key:
        req.add_header("Authorization", f"Bearer {api.key}")
    started = time.monotonic()
    first, sources, done, error, text, event = None, [], None, None, "", None
    with urllib.request.urlopen(req, timeout=300) as r:
        for raw in r:
            line = raw.decode().rstrip("\n").rstrip("\r")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:].strip())
                if event == "sources":
                    sources = data["sources"]
                elif event == "token":
                    if first is None:
                        first = time.monotonic() - started
                    text += data["text"]
                elif event == "done":
                    done = data
                elif event == "error":
                    error = data
    total = time.monotonic() - started
    return {"text": text, "sources": sources, "done": done, "error": error,
            "first_ms": (first or total) * 1000, "total_ms": total * 1000}


def declined(text):
    return text.strip().lower().startswith("i don't know")


def evaluate_answers(api, space, questions, unanswerable):
    rows = []
    for q in questions:
        a = ask(api, space, q["question"])
        passages = {s["n"]: s["text"] for s in a["sources"]}
        pairs = shown_citations(a["text"], a["done"])
        answer = norm(q["answer"])
        cited = {n for _, n in pairs}
        rows.append({
            "id": q["id"],
            "correct": holds(a["text"], q["answer"], 2 / 3),
            "in_sources": any(answer in norm(t) for t in passages.values()),
            "cites": bool(cited),
            "cites_right": any(answer in norm(passages.get(n, "")) for n in cited),
            "pairs": len(pairs),
            "unsupported": sum(1 for sentence, n in pairs if not holds(passages.get(n, ""), sentence, 0.6)),
            "declined": declined(a["text"]),
            "error": a["error"],
            "first_ms": a["first_ms"],
            "total_ms": a["total_ms"],
            "text": a["text"],
            "question": q["question"],
            "answer": q["answer"],
            "sources": [{"n": n, "text": t} for n, t in passages.items()],
            "sentences": (a["done"] or {}).get("sentences"),
        })
    declines = [declined(ask(api, space, q["question"])["text"]) for q in unanswerable]
    n = len(rows)
    first = sorted(r["first_ms"] for r in rows)
    total = sorted(r["total_ms"] for r in rows)
    pairs = sum(r["pairs"] for r in rows)
    return {
        "questions": n,
        "correct": sum(r["correct"] for r in rows) / n,
        "answer_in_sources": sum(r["in_sources"] for r in rows) / n,
        "cites": sum(r["cites"] for r in rows) / n,
        "cites_right": sum(r["cites_right"] for r in rows) / n,
        "unsupported_citations": (sum(r["unsupported"] for r in rows) / pairs) if pairs else 0.0,
        "declined": sum(r["declined"] for r in rows) / n,
        "errors": sum(1 for r in rows if r["error"]),
        "unanswerable": len(declines),
        "unanswerable_declined": (sum(declines) / len(declines)) if declines else None,
        "first_p50_ms": statistics.median(first),
        "total_p50_ms": statistics.median(total),
        "rows": rows,
    }


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
    p.add_argument("--answers", action="store_true", help="also ask the questions and score the answers")
    p.add_argument("--answer-sample", type=int, help="ask only this many questions, spread evenly")
    p.add_argument("--min-correct", type=float, help="fail when fewer answers are correct")
    p.add_argument("--min-cites-right", type=float, help="fail when fewer answers cite right")
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

    results = [evaluate(api, space, docs, questions, mode) for mode in args.modes.split(",") if mode]
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
    answers = None
    if args.answers:
        asked = questions
        if args.answer_sample and args.answer_sample < len(questions):
            step = len(questions) / args.answer_sample
            asked = [questions[int(i * step)] for i in range(args.answer_sample)]
        with open(os.path.join(ROOT, "tests/eval/unanswerable.jsonl")) as f:
            unanswerable = [json.loads(line) for line in f if line.strip()]
        answers = evaluate_answers(api, space, asked, unanswerable)
        a = answers
        print()
        print("| questions | correct | answer in sources | cites | cites right | unsupported citations | says I don't know | declines unanswerable | errors | first token p50 ms | whole answer p50 ms |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        print(
            f"| {a['questions']} | {a['correct']:.2f} | {a['answer_in_sources']:.2f} | {a['cites']:.2f} | {a['cites_right']:.2f} "
            f"| {a['unsupported_citations']:.2f} | {a['declined']:.2f} | {a['unanswerable_declined']:.2f} ({a['unanswerable']}) "
            f"| {a['errors']} | {a['first_p50_ms']:.0f} | {a['total_p50_ms']:.0f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pages": len(pages), "passages": total, "broken_labels": broken, "results": results,
                       "answers": answers}, f, indent=2)
    hybrid = next((r for r in results if r["mode"] == "hybrid"), None)
    failed = []
    if hybrid and args.min_recall5 is not None and hybrid["recall@5"] < args.min_recall5:
        failed.append(f"hybrid recall@5 {hybrid['recall@5']:.2f} < {args.min_recall5}")
    if hybrid and args.min_mrr10 is not None and hybrid["mrr@10"] < args.min_mrr10:
        failed.append(f"hybrid MRR@10 {hybrid['mrr@10']:.2f} < {args.min_mrr10}")
    if answers and args.min_correct is not None and answers["correct"] < args.min_correct:
        failed.append(f"answers correct {answers['correct']:.2f} < {args.min_correct}")
    if answers and args.min_cites_right is not None and answers["cites_right"] < args.min_cites_right:
        failed.append(f"answers citing right {answers['cites_right']:.2f} < {args.min_cites_right}")
    if broken and (args.min_recall5 is not None or args.min_mrr10 is not None):
        failed.append(f"{len(broken)} labels cannot be answered from one passage")
    if failed:
        raise SystemExit("quality floor not met: " + "; ".join(failed))


if __name__ == "__main__":
    main()
