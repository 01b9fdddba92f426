"""Test doubles for the reasoning tests: a real chat-completions HTTP server and fabricated DEXTER outputs.

The server is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) speaking enough of the OpenAI
chat-completions protocol for the real ``openai`` client: faults (400, 429, 500, slow answers, dropped
connections, empty choices, malformed JSON, 404 model_not_found, 401) are queued per request kind
and consumed one request at a time, so each test says exactly what goes wrong and when.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

REPORT_MD = """## Key attributes and visual features
Red circles.

## Context analysis
Most images show blue water.

## Over-represented elements
Water appears in every caption.

## Bias hypothesis
Biased: the classifier relies on water.
"""
ATTRIBUTES_JSON = '{"attributes": ["Water", "blue waves", "circle"], "rationale": "Water dominates every image."}'
CAPTION = "A red circle floating on blue water with small waves."
MALFORMED = 'Sure! Here it is: {"attributes": ["water", "rationale": '  # the "malformed" fault's answer


COUNTERFACTUAL_JSON = ('{"testable": true, "kind": "background", "value": "water", "alternatives": ["a forest", '
                       '"a desert"], "template": "a photo of a {class} in front of {value}"}')


def request_kind(body: dict) -> str:
    """caption (an image is attached), counterfactual (its system prompt), attributes (JSON mode) or report."""
    for m in body.get("messages", []):
        if isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"]):
            return "caption"
    system = next((m.get("content") for m in body.get("messages", []) if m.get("role") == "system"), "")
    if isinstance(system, str) and system.startswith("You design a counterfactual test"):
        return "counterfactual"
    return "attributes" if "response_format" in body else "report"


class FakeChatServer:
    def __init__(self, slow_s: float = 1.0) -> None:
        self.slow_s = slow_s
        self.requests: list[dict] = []  # {"kind", "body", "headers", "path"}
        self.faults: dict[str, deque[str]] = defaultdict(deque)
        self.answers: dict[str, str] = {"caption": CAPTION, "report": REPORT_MD, "attributes": ATTRIBUTES_JSON,
                                        "counterfactual": COUNTERFACTUAL_JSON}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def fail(self, kind: str, *faults: str) -> None:
        self.faults[kind].extend(faults)

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if kind is None or r["kind"] == kind)

    def __enter__(self) -> FakeChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                kind = request_kind(body)
                with server._lock:
                    server.requests.append({"kind": kind, "body": body, "headers": dict(self.headers), "path": self.path})
                    queue = server.faults.get(kind)
                    fault = queue.popleft() if queue else None
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": f"no route {self.path}", "code": None}})
                if fault == "429":
                    return self._json(429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                                      {"retry-after-ms": "10"})
                if fault == "400":
                    return self._json(400, {"error": {"message": "Invalid value for 'temperature'",
                                                      "type": "invalid_request_error"}})
                if fault == "500":
                    return self._json(500, {"error": {"message": "internal error"}}, {"retry-after-ms": "10"})
                if fault == "drop":
                    self.close_connection = True
                    return
                if fault == "slow":
                    time.sleep(server.slow_s)
                if fault == "404":
                    return self._json(404, {"error": {"message": f"The model `{body.get('model')}` does not exist",
                                                      "type": "invalid_request_error", "code": "model_not_found"}})
                if fault == "401":
                    key = self.headers.get("authorization", "").removeprefix("Bearer ")
                    return self._json(401, {"error": {"message": f"Incorrect API key provided: {key}",
                                                      "code": "invalid_api_key"}})
                if fault == "empty":
                    return self._json(200, _completion(body, None))
                content = server.answers[kind]
                if fault == "malformed":
                    content = MALFORMED
                if fault == "not_a_list":
                    content = '{"attributes": "water", "rationale": "x"}'
                self._json(200, _completion(body, content))

            def _json(self, status: int, obj: dict, headers: dict | None = None) -> None:
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        return Handler


def _completion(body: dict, content: str | None) -> dict:
    choices = [] if content is None else [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
    ]
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
            "choices": choices, "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def write_class_dir(root: Path, index: int, name: str, keywords: list[str], images_per_run: list[list[np.ndarray]],
                    run_words: list[list[str]] | None = None) -> Path:
    """A DEXTER class folder as DEXTER core writes it: keywords.json, run_<r>/prompt.txt, run_<r>/frames/*.png."""
    class_dir = Path(root) / f"{index:03d}_{name}"
    run_words = run_words if run_words is not None else [[k] for k in keywords]
    runs = []
    for r, images in enumerate(images_per_run):
        words = run_words[r] if r < len(run_words) else []
        prompt = f"a picture of a {' '.join(words)}."
        (class_dir / f"run_{r}" / "frames").mkdir(parents=True, exist_ok=True)
        (class_dir / f"run_{r}" / "prompt.txt").write_text(prompt)
        for s, img in enumerate(images):
            Image.fromarray(img).save(class_dir / f"run_{r}" / "frames" / f"step_{3 * s + 1:05d}.png")
        runs.append({"run": r, "words": words, "prompt": prompt, "steps": 3 * len(images) + 1,
                     "stopped_early": bool(images), "hits": len(images)})
    meta = {"class_index": index, "class_name": name, "mode": "single", "keywords": keywords, "runs": runs}
    (class_dir / "keywords.json").write_text(json.dumps(meta))
    return class_dir


def solid(rgb: tuple[int, int, int], size: int = 16, seed: int = 0) -> np.ndarray:
    """A small noisy image of one colour."""
    noise = np.random.default_rng(seed).integers(-10, 10, size=(size, size, 3))
    return np.clip(np.array(rgb)[None, None] + noise, 0, 255).astype(np.uint8)
