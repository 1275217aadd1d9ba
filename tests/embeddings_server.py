"""A real OpenAI-compatible embeddings server for the tests and the bench, on loopback:
WordLlama's small model (its weights and tokenizer ship inside the wordllama wheel, so nothing
is downloaded) behind POST /v1/embeddings, speaking the OpenAI embeddings API.

    python tests/embeddings_server.py PORT

Models: "wordllama" (256 dimensions) and "wordllama-128" (its first 128 dimensions: WordLlama is
trained Matryoshka-style), so a test can change the model or the dimension. To misbehave on
purpose, POST /control {"mode": M}: "ok", "error" (HTTP 500), "bad-request" (HTTP 400),
"wrong-dimensions" (vectors one component longer), "nan" (NaN in every vector), "huge" (a 50 MB
body with its Content-Length), "huge-chunked" (the same, chunked), "hang" (never answers),
"redirect" (302 to another path), "refuse-poison" (400 for any input containing "POISON"); with
"queries_only": true only single-input requests (queries) misbehave. GET /stats: how many
requests and inputs were served, by model. A text seen before is answered from a cache.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODELS = {"wordllama": 256, "wordllama-128": 128}
HERE = pathlib.Path(__file__).resolve().parent


class EmbeddingsProcess:
    """This server as a subprocess on a loopback port, for the tests and the bench; it can be
    stopped and started again on the same port (an embeddings server that goes down)."""

    def __init__(self, port: int, log_path: pathlib.Path):
        self.port, self.log_path = port, log_path
        self.url = f"http://127.0.0.1:{port}/v1/embeddings"
        self.process = None

    def start(self) -> "EmbeddingsProcess":
        import subprocess
        import requests
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, str(HERE / "embeddings_server.py"), str(self.port)],
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the embeddings server exited:\n{self.log_path.read_text()}")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the embeddings server did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def control(self, mode: str, queries_only: bool = False) -> None:
        import requests
        requests.post(f"http://127.0.0.1:{self.port}/control", json={"mode": mode, "queries_only": queries_only},
                      timeout=5).raise_for_status()

    def stats(self) -> dict:
        import requests
        return requests.get(f"http://127.0.0.1:{self.port}/stats", timeout=5).json()


def load_model():
    """WordLlama's inference object from the files inside the wheel (WordLlama.load() would look
    for the tokenizer in a cache folder and try to download it)."""
    import wordllama
    from safetensors import safe_open
    from tokenizers import Tokenizer
    from wordllama.inference import WordLlamaInference

    root = pathlib.Path(wordllama.__file__).parent
    tokenizer = Tokenizer.from_file(str(root / "tokenizers" / "l2_supercat_tokenizer_config.json"))
    with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), framework="np") as weights:
        embedding = weights.get_tensor("embedding.weight")
    return WordLlamaInference(embedding, tokenizer)


CACHE: dict[tuple[str, int], list[float]] = {}  # texts seen before (the bench's repeated queries)
CACHE_LOCK = threading.Lock()


def embed(model, texts: list[str], dimensions: int) -> list[list[float]]:
    with CACHE_LOCK:
        known = {t: CACHE[t, dimensions] for t in texts if (t, dimensions) in CACHE}
    missing = list(dict.fromkeys(t for t in texts if t not in known))
    if missing:
        for text, row in zip(missing, model.embed(missing, norm=False)[:, :dimensions].tolist()):
            norm = math.sqrt(sum(x * x for x in row)) or 1.0
            known[text] = [x / norm for x in row]
        with CACHE_LOCK:
            if len(CACHE) > 200_000:
                CACHE.clear()
            CACHE.update(((text, dimensions), known[text]) for text in missing)
    return [known[t] for t in texts]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without this, 40 ms of delayed ACK
    model = None
    mode = {"mode": "ok", "queries_only": False}
    stats: dict = {"requests": 0, "inputs": 0, "by_model": {}}
    lock = threading.Lock()
    stopping = threading.Event()

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, {"status": "ok"})
        elif self.path == "/stats":
            with self.lock:
                self.reply(200, self.stats)
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/control":
            Handler.mode = {"mode": "ok", "queries_only": False, **json.loads(body)}
            self.reply(200, Handler.mode)
            return
        if self.path != "/v1/embeddings":
            self.reply(404, {"error": {"message": f"no route {self.path}"}})
            return
        request = json.loads(body)
        model, texts = request.get("model"), request.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if model not in MODELS:
            self.reply(404, {"error": {"message": f"model '{model}' not found, try pulling it first"}})
            return
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            self.reply(400, {"error": {"message": "input must be a string or a list of strings"}})
            return
        mode = self.mode["mode"]
        if self.mode.get("queries_only") and len(texts) != 1:
            mode = "ok"
        if self.misbehave(mode, texts):
            return
        vectors = embed(self.model, texts, MODELS[model])
        if mode == "wrong-dimensions":
            vectors = [v + [0.0] for v in vectors]
        if mode == "nan":
            vectors = [[math.nan] + v[1:] for v in vectors]  # json.dumps writes NaN, as some servers do
        with self.lock:
            self.stats["authorization"] = self.headers.get("Authorization")
            self.stats["requests"] += 1
            self.stats["inputs"] += len(texts)
            self.stats["by_model"][model] = self.stats["by_model"].get(model, 0) + len(texts)
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        text = json.dumps({"object": "list", "data": data, "model": model,
                           "usage": {"prompt_tokens": 0, "total_tokens": 0}})
        self.send(200, text.encode())

    def misbehave(self, mode: str, texts: list[str]) -> bool:
        if mode == "error":
            self.reply(500, {"error": {"message": "the model crashed"}})
        elif mode == "bad-request":
            self.reply(400, {"error": {"message": "input is too large to process"}})
        elif mode == "refuse-poison" and any("POISON" in t for t in texts):
            self.reply(400, {"error": {"message": "cannot embed this"}})
        elif mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "hang":
            self.stopping.wait(120)
        elif mode in ("huge", "huge-chunked"):
            self.send_huge(chunked=mode == "huge-chunked")
        else:
            return False
        return True

    def send_huge(self, chunked: bool) -> None:
        size, piece = 50 * 1024 * 1024, b"0.123456789, " * 5000
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding" if chunked else "Content-Length", "chunked" if chunked else str(size))
        self.end_headers()
        try:
            sent = 0
            while sent < size:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading, as it should

    def reply(self, status: int, payload) -> None:
        self.send(status, json.dumps(payload).encode())

    def send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    port = int(sys.argv[1])
    Handler.model = load_model()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"embeddings server on http://127.0.0.1:{port}/v1/embeddings", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        Handler.stopping.set()
        time.sleep(0.1)


if __name__ == "__main__":
    main()
