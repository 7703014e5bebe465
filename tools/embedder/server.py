"""A loopback server for all-MiniLM-L6-v2 speaking OpenAI's embeddings API, for tests and benchmarks.

    POST /v1/embeddings                                 {"model": M, "input": str | [str]}
    POST /openai/deployments/{deployment}/embeddings    the same, Azure's path (model = deployment)
    GET  /health                                        {"status": "ok", "model": ..., "dimensions": 384}

The answer has OpenAI's shape, which sluice's `openai` provider reads (src/provider/openai.rs) and
`sluice mock-provider` serves too:
    {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...]}],
     "model": M, "usage": {"prompt_tokens": N, "total_tokens": N}}
`prompt_tokens` counts the model's own WordPiece tokens, [CLS] and [SEP] included. Any model name is
answered with this one model (the name is echoed, as the mock provider does), so a topology written
for a hosted model runs unchanged. `dimensions` other than 384 and token-array inputs are refused
with 400 and OpenAI's error shape; `encoding_format: "base64"` is honoured (float32, little-endian).
The Authorization header is ignored. Started by scripts/with-embedder; not a production server.
"""

import argparse
import base64
import json
import os
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from minilm import MiniLM  # noqa: E402

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_INPUTS = 2048  # OpenAI's limit per request
AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/embeddings$")


class Handler(BaseHTTPRequestHandler):
    model: MiniLM = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per request only when asked
        if os.environ.get("SLUICE_EMBEDDER_LOG"):
            sys.stderr.write("embedder: " + (fmt % args) + "\n")

    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status, message, kind="invalid_request_error", param=None):
        self._reply(status, {"error": {"message": message, "type": kind, "param": param, "code": None}})

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._reply(200, {"status": "ok", "model": MODEL_NAME, "dimensions": self.model.dim})
        else:
            self._error(404, f"no route for GET {path}", "not_found")

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        azure = AZURE_PATH.match(path)
        if path != "/v1/embeddings" and not azure:
            self._error(404, f"no route for POST {path}", "not_found")
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self._error(413 if length > 0 else 400, "body missing or larger than 16 MiB")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            self._error(400, f"body is not JSON: {e}")
            return
        if not isinstance(body, dict):
            self._error(400, "body must be a JSON object")
            return
        model = azure.group(1) if azure else body.get("model")
        if not isinstance(model, str) or not model:
            self._error(400, "'model' is required", param="model")
            return
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            self._error(400, "'input' must be a string or a non-empty array of strings "
                             "(token arrays are not supported)", param="input")
            return
        if len(texts) > MAX_INPUTS:
            self._error(400, f"at most {MAX_INPUTS} inputs per request", param="input")
            return
        dims = body.get("dimensions")
        if dims is not None and dims != self.model.dim:
            self._error(400, f"{MODEL_NAME} has {self.model.dim} dimensions; cannot return {dims}",
                        param="dimensions")
            return
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            self._error(400, "'encoding_format' must be 'float' or 'base64'", param="encoding_format")
            return
        vectors, tokens = self.model.embed(texts)
        data = []
        for i, v in enumerate(vectors):
            if fmt == "base64":
                emb = base64.b64encode(v.astype("<f4").tobytes()).decode()
            else:
                emb = [float(x) for x in v]
            data.append({"object": "embedding", "index": i, "embedding": emb})
        n = int(sum(tokens))
        self._reply(200, {"object": "list", "data": data, "model": model,
                          "usage": {"prompt_tokens": n, "total_tokens": n}})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--model-dir", required=True, help="the extracted all-MiniLM-L6-v2 directory")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (see --port-file)")
    ap.add_argument("--port-file", help="write the bound port here once serving")
    args = ap.parse_args()

    Handler.model = MiniLM(args.model_dir)
    Handler.model.embed(["warm up"])
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        Path(tmp).write_text(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"embedder: {MODEL_NAME} on http://{args.host}:{port}/v1", file=sys.stderr, flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
