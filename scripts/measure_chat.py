#!/usr/bin/env python3
"""Measures answers over HTTP against a running Kenning: time to the `sources` event, time to
the first token, total time and decode speed, for --questions distinct questions (answer-cache
misses), then the same first question again (a cache hit). Prints the per-answer breakdown the
`done` event reports (retrieval, sources, first token) and p50/p95. Standard library only;
loopback targets only.

    python3 scripts/measure_chat.py --url http://127.0.0.1:3000 --questions 10
"""
import argparse, json, statistics, time, urllib.parse, urllib.request, uuid

HANDBOOK = """# Employee handbook

## Leave
Every employee receives twenty-five days of paid vacation each year. Requests go to your manager
two weeks in advance. Up to five unused vacation days carry over into the next year.

## Equipment
New hires get a laptop on their first day. Broken hardware is replaced by the IT desk within one
business day. Lost equipment must be reported to security the same day.

## Travel
Travel is booked through the travel desk. Economy class is the default for flights under six
hours. Expenses are submitted within thirty days with receipts attached.

## Deployments
Production deploys happen on Tuesdays after the release checklist is signed off. Rollbacks use
the previous container image and are announced in the incident channel.
"""

QUESTIONS = [
    "How many vacation days does an employee get?",
    "How far in advance must leave be requested?",
    "How many unused vacation days carry over?",
    "When do new hires get a laptop?",
    "Who replaces broken hardware?",
    "What must happen when equipment is lost?",
    "How is travel booked?",
    "Which class is the default for short flights?",
    "When must expenses be submitted?",
    "On which day do production deploys happen?",
    "How are rollbacks done?",
    "Where are rollbacks announced?",
]


def assert_loopback(url):
    host = urllib.parse.urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load a non-loopback target: {host}")


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")


def seed(url):
    space = request("POST", f"{url}/api/v1/spaces",
                    json.dumps({"name": f"bench-chat-{uuid.uuid4().hex[:8]}"}).encode(),
                    {"Content-Type": "application/json"})["id"]
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"handbook.md\"\r\n"
            f"Content-Type: text/markdown\r\n\r\n").encode() + HANDBOOK.encode() + f"\r\n--{boundary}--\r\n".encode()
    doc = request("POST", f"{url}/api/v1/spaces/{space}/documents", body,
                  {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    while True:
        d = request("GET", f"{url}/api/v1/spaces/{space}/documents/{doc['id']}")
        if d["status"] in ("ready", "failed"):
            break
        time.sleep(0.2)
    return space


def ask(url, space, question):
    """Streams one answer; returns client-side timings and the done event."""
    body = json.dumps({"question": question}).encode()
    req = urllib.request.Request(f"{url}/api/v1/spaces/{space}/chat", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    sources_at = first_at = None
    tokens, done, event = 0, None, None
    with urllib.request.urlopen(req, timeout=300) as r:
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                now = time.perf_counter() - start
                if event == "sources" and sources_at is None:
                    sources_at = now
                elif event == "token":
                    tokens += 1
                    if first_at is None:
                        first_at = now
                elif event == "done":
                    done = json.loads(line[5:])
                elif event == "error":
                    raise SystemExit(f"answer failed: {line}")
    total = time.perf_counter() - start
    return {"sources": sources_at * 1000, "first": first_at * 1000, "total": total * 1000,
            "tokens": tokens, "done": done}


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:3000")
    ap.add_argument("--questions", type=int, default=10)
    args = ap.parse_args()
    assert_loopback(args.url)
    space = seed(args.url)
    runs = []
    for q in (QUESTIONS * 4)[: args.questions]:
        r = ask(args.url, space, q + (f" ({len(runs)})" if len(runs) >= len(QUESTIONS) else ""))
        d = r["done"]
        decode = (r["total"] - r["first"]) / 1000
        r["tok_s"] = (r["tokens"] - 1) / decode if decode > 0 and r["tokens"] > 1 else 0.0
        runs.append(r)
        print(f"{d['generator']:>10}  sources {r['sources']:7.1f} ms  first token {r['first']:7.1f} ms  "
              f"total {r['total']:7.1f} ms  {r['tokens']:3d} tokens  {r['tok_s']:5.1f} tok/s  "
              f"(server: retrieval {d['timings']['retrieval_ms']:.1f} ms, prompt {d['usage']['prompt_tokens']} tokens)")
    hits = [ask(args.url, space, QUESTIONS[0]) for _ in range(5)]
    assert all(h["done"]["cached"] for h in hits), "repeated question was not served from the cache"
    print()
    for name, key in (("sources event", "sources"), ("first token", "first"), ("total", "total")):
        v = [r[key] for r in runs]
        print(f"cache miss {name:>13}: p50 {pct(v, 50):8.1f} ms   p95 {pct(v, 95):8.1f} ms")
    print(f"cache miss decode speed:    p50 {pct([r['tok_s'] for r in runs], 50):8.1f} tok/s")
    print(f"cache miss prompt size:     p50 {pct([r['done']['usage']['prompt_tokens'] for r in runs], 50):8d} tokens")
    for name, key in (("first token", "first"), ("total", "total")):
        v = [h[key] for h in hits]
        print(f"cache hit  {name:>13}: p50 {pct(v, 50):8.1f} ms   p95 {pct(v, 95):8.1f} ms")


if __name__ == "__main__":
    main()
