#!/usr/bin/env python3
"""An OpenAI-compatible chat completions endpoint for the browser tests, standing in for a
hosted model that cannot run here. It speaks the real wire protocol (streamed `chat.completion.chunk`
events ending in `[DONE]`) and answers every question with the same Markdown: a heading, a
numbered list with one supported and one made-up claim, code, a table, and raw HTML and a
`javascript:` link that must never become markup. Prints its base URL, then serves until killed.
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = """## Release steps

1. Every release is built with `cargo build --release` before it ships. [1]
2. The moon is made of green cheese and ships every Tuesday. [1]

```sh
cargo build --release
```

| Step | Tool |
| --- | --- |
| Build | cargo |

<img src=x onerror="window.__pwned=1"> <script>window.__pwned=1</script> [click me](javascript:window.__pwned=1)
"""


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self.send_json(200, {"object": "list", "data": [{"id": "mock", "object": "model"}]})
        else:
            self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.send_json(400, {"error": {"message": "bad JSON", "type": "invalid_request_error"}})
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        created = int(time.time())
        if not request.get("stream"):
            self.send_json(200, {
                "id": "chatcmpl-mock", "object": "chat.completion", "created": created, "model": "mock",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 60, "total_tokens": 70},
            })
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

        def chunk(delta, finish=None):
            body = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created,
                    "model": "mock", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())
            self.wfile.flush()

        chunk({"role": "assistant", "content": ""})
        # Cut mid-syntax on purpose: the page renders every partial answer.
        for i in range(0, len(ANSWER), 7):
            chunk({"content": ANSWER[i:i + 7]})
            time.sleep(0.005)
        chunk({}, "stop")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
