"""A chatbot: a :class:`~knetpy.seq2seq.Seq2Seq` model trained on the shipped dialogue pairs, behind a web page.

    bot = ChatBot.train(epochs=30)              # or ChatBot.load(path)
    bot.reply("what is 3 plus 4?")              # {'answer': '3 plus 4 is 7.', 'attention': [[...]], ...}
    app = create_app(bot)                       # a Starlette app: the page at /, the bot at POST /api/chat

``knetpy chat`` trains (or loads) a bot and serves the page with uvicorn; the web part needs the extra
``chat`` (``pip install 'knetpy[chat]'``: Starlette and uvicorn).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np

from .backend import set_seed
from .datasets.dialogue import BOS, EOS, PAD, Vocabulary, dialogue, tokenize
from .io import load, save
from .seq2seq import Seq2Seq, pad_batch, train

FORMAT = "knetpy-chatbot"
MODEL_FILE = "chatbot.ckpt"
MAX_CHARS = 300  # the longest message the bot reads, in characters
MAX_BODY = 4096  # bytes of a request body: a message of MAX_CHARS characters in JSON fits


class ChatBot:
    """A trained model and its vocabulary. :meth:`reply` answers one message."""

    def __init__(self, model, vocab, beam=3, max_len=30):
        if not isinstance(model, Seq2Seq):
            raise TypeError(f"ChatBot: expected a Seq2Seq model, got {type(model).__name__}")
        if len(vocab) != model.src_vocab:
            raise ValueError(f"ChatBot: the vocabulary has {len(vocab)} tokens, the model {model.src_vocab}")
        self.model, self.vocab, self.beam, self.max_len = model, vocab, int(beam), int(max_len)
        self._lock = threading.Lock()  # one reply at a time: the layers are shared

    @classmethod
    def train(cls, pairs=None, *, epochs=20, embed=64, hidden=128, cell="lstm", attention="luong", lr=5e-3,
              batch_size=64, seed=0, log=None):
        """A bot trained on ``pairs`` (default: :func:`knetpy.datasets.dialogue`); ``log(epoch, loss)`` each epoch."""
        pairs = dialogue() if pairs is None else list(pairs)
        if not pairs:
            raise ValueError("ChatBot.train: no (question, answer) pairs given")
        vocab = Vocabulary.build(t for pair in pairs for t in pair)
        src = pad_batch([vocab.encode(q) for q, _ in pairs], pad=PAD)
        tgt = pad_batch([vocab.encode(a) for _, a in pairs], pad=PAD, bos=BOS, eos=EOS)
        set_seed(seed)  # the initial weights
        model = Seq2Seq(len(vocab), embed=embed, hidden=hidden, cell=cell, attention=attention,
                        pad=PAD, bos=BOS, eos=EOS)
        train(model, src, tgt, epochs=epochs, batch_size=batch_size, lr=lr, final_lr=lr / 10, seed=seed,
              callback=(lambda e, loss: log(e, loss)) if log else None)
        return cls(model, vocab)

    def save(self, path):
        """Write the model and vocabulary to ``path`` (a knetpy checkpoint, written atomically)."""
        save(path, {"format": FORMAT, "model": self.model, "vocab": list(self.vocab.tokens)})
        return Path(path)

    @classmethod
    def load(cls, path):
        """The bot saved at ``path`` by :meth:`save`."""
        saved = load(path)
        if not (isinstance(saved, dict) and saved.get("format") == FORMAT):
            raise ValueError(f"{path} is not a saved chatbot (no {FORMAT!r} format tag in it)")
        return cls(saved["model"], Vocabulary(saved["vocab"]))

    def reply(self, text):
        """The answer to ``text``, with the attention of each answer token over the question's tokens.

        Returns a dict: ``answer`` (str), ``question_tokens`` (the words read, unknown ones included),
        ``answer_tokens`` (the words written; ``<eos>`` last when the model ended the answer),
        ``attention`` (one row per answer token, one weight per question token, each row summing to 1).
        Raises ValueError for an empty or too long message.
        """
        if not isinstance(text, str):
            raise TypeError(f"ChatBot.reply: the message must be a str, got {type(text).__name__}")
        if len(text) > MAX_CHARS:
            raise ValueError(f"the message is {len(text)} characters long; the limit is {MAX_CHARS}")
        words = tokenize(text)
        if not words:
            raise ValueError("the message is empty: type a question")
        ids = self.vocab.encode(text)
        with self._lock:
            tokens, _, weights = self.model.beam_search(np.array(ids), beam=self.beam, max_len=self.max_len)[0]
        answer_words = self.vocab.words(tokens)
        if len(weights) > len(tokens):
            answer_words.append("<eos>")
        return {
            "answer": self.vocab.decode(tokens) or "...",
            "question_tokens": words,
            "answer_tokens": answer_words,
            "attention": np.round(np.asarray(weights, dtype=np.float64), 4).tolist(),
        }


def train_or_load(folder, *, quick=False, retrain=False, epochs=None, seed=0, log=print):
    """The bot saved in ``folder``, or a new one trained and saved there (``retrain`` always trains)."""
    path = Path(folder) / MODEL_FILE
    if path.is_file() and not retrain:
        log(f"loading the chatbot from {path} (--retrain to train a new one)")
        return ChatBot.load(path), path
    epochs = epochs or (10 if quick else 20)
    options = {"hidden": 96, "embed": 32, "lr": 1e-2} if quick else {}
    log(f"training the chatbot on {len(dialogue())} question/answer pairs for {epochs} epochs"
        + (" (--quick: a small model)" if quick else ""))
    from .examples._common import knet_line

    bot = ChatBot.train(epochs=epochs, seed=seed, log=lambda e, loss: log(knet_line("epoch", e, "trn", loss)),
                        **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    bot.save(path)
    log(f"saved the chatbot to {path}")
    return bot, path


# -- the web page ----------------------------------------------------------------------------------------
class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


async def _read_message(request):
    """The ``message`` of a JSON request body, or a BadRequest saying what is wrong with it."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise BadRequest(415, f"send JSON (Content-Type: application/json), not {ctype or 'no content type'}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise BadRequest(413, f"the request body is larger than {MAX_BODY} bytes")
    body = b""
    async for chunk in request.stream():  # counted as it arrives: a body without a length cannot flood memory
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(413, f"the request body is larger than {MAX_BODY} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(400, f"the request body is not valid UTF-8 (byte {e.start})") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise BadRequest(400, f"the request body is not valid JSON ({e})") from None
    if not isinstance(data, dict) or "message" not in data:
        raise BadRequest(400, 'send a JSON object with a "message" field, e.g. {"message": "hello"}')
    message = data["message"]
    if not isinstance(message, str):
        raise BadRequest(400, f'"message" must be a string, got {type(message).__name__}')
    if len(message) > MAX_CHARS:
        raise BadRequest(413, f"the message is {len(message)} characters long; the limit is {MAX_CHARS}")
    if not tokenize(message):
        raise BadRequest(400, "the message is empty: type a question")
    return message


def create_app(bot):
    """The Starlette app serving ``bot``: the page at ``/``, ``POST /api/chat``, ``GET /api/health``."""
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import HTMLResponse, JSONResponse
        from starlette.routing import Route
    except ImportError:
        raise ImportError("the chat page needs Starlette and uvicorn: pip install 'knetpy[chat]'") from None

    async def page(request):
        return HTMLResponse(PAGE)

    async def health(request):
        return JSONResponse({"status": "ok"})

    async def chat(request):
        try:
            message = await _read_message(request)
        except BadRequest as e:
            return JSONResponse({"error": e.message}, status_code=e.status)
        try:
            return JSONResponse(await run_in_threadpool(bot.reply, message))
        except ValueError as e:  # what reply itself refuses
            return JSONResponse({"error": str(e)}, status_code=400)

    async def failure(request, exc):
        # Whatever goes wrong inside, the client gets JSON and the server keeps running.
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, status_code=500)

    async def not_allowed(request, exc):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    from starlette.exceptions import HTTPException

    routes = [Route("/", page), Route("/api/health", health), Route("/api/chat", chat, methods=["POST"])]
    return Starlette(routes=routes, exception_handlers={Exception: failure, HTTPException: not_allowed})


def require_web():
    """Raise ImportError, saying what to install, unless Starlette and uvicorn are installed."""
    _uvicorn()
    try:
        import starlette  # noqa: F401
    except ImportError:
        raise ImportError("the chat page needs Starlette and uvicorn: pip install 'knetpy[chat]'") from None


def _uvicorn():
    try:
        import uvicorn
    except ImportError:
        raise ImportError("the chat page needs Starlette and uvicorn: pip install 'knetpy[chat]'") from None
    return uvicorn


def _bind(host, port):
    """A listening socket on ``host``:``port`` (0: a free port), so the address is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port") from None
    sock.listen(128)
    return sock


def _url(sock):
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def serve(bot, host="127.0.0.1", port=8000, log_level="warning", announce=print):
    """Serve :func:`create_app` with uvicorn until interrupted; ``announce(url)`` once it listens."""
    uvicorn = _uvicorn()
    sock = _bind(host, port)
    server = uvicorn.Server(uvicorn.Config(create_app(bot), log_level=log_level))
    announce(_url(sock))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def running(bot, host="127.0.0.1", port=0, log_level="warning"):
    """Serve ``bot`` in a background thread for the ``with`` block; yields the page's URL."""
    uvicorn = _uvicorn()
    sock = _bind(host, port)
    server = uvicorn.Server(uvicorn.Config(create_app(bot), log_level=log_level))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the chat server did not start")
            time.sleep(0.02)
        yield _url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>knetpy chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
 h1 { font-size: 1.4rem; } .sub { color: #666; font-size: .9rem; }
 #log { border: 1px solid #ccc; border-radius: 6px; padding: .5rem; min-height: 8rem; max-height: 22rem;
        overflow-y: auto; background: #fafafa; }
 .msg { margin: .35rem 0; } .you b { color: #1a5fb4; } .bot b { color: #26a269; } .err { color: #c01c28; }
 form { display: flex; gap: .5rem; margin: .8rem 0; }
 #message { flex: 1; padding: .5rem; font-size: 1rem; } button { padding: .5rem 1rem; font-size: 1rem; }
 table.heat { border-collapse: collapse; margin-top: .5rem; font-size: .85rem; }
 table.heat td, table.heat th { border: 1px solid #ddd; padding: .25rem .4rem; text-align: center; }
 table.heat th { background: #f0f0f0; font-weight: normal; }
</style></head>
<body>
<h1>knetpy chat</h1>
<p class="sub">A sequence-to-sequence model with attention, trained on knetpy's small dialogue set.
Ask about numbers (what is 3 plus 4?), days, animals, capitals, knetpy, or say hello.</p>
<div id="log" aria-live="polite"></div>
<form id="form"><input id="message" autocomplete="off" maxlength="300" placeholder="Type a question"
 autofocus><button id="send" type="submit">Send</button></form>
<h2 style="font-size:1.1rem">Attention for the last answer</h2>
<p class="sub">Rows: the words of the answer; columns: the words of the question; darker: more weight.</p>
<div id="heat"></div>
<script>
const log = document.getElementById("log"), box = document.getElementById("message");
function line(who, text, cls) {
  const div = document.createElement("div");
  div.className = "msg " + cls;
  const b = document.createElement("b"); b.textContent = who + ": ";
  div.appendChild(b); div.appendChild(document.createTextNode(text));
  log.appendChild(div); log.scrollTop = log.scrollHeight; return div;
}
function heatmap(rows, cols, weights) {
  const table = document.createElement("table"); table.className = "heat"; table.id = "heatmap";
  const head = table.insertRow(); head.appendChild(document.createElement("th"));
  for (const c of cols) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
  weights.forEach((row, i) => {
    const tr = table.insertRow(); const th = document.createElement("th"); th.textContent = rows[i];
    tr.appendChild(th);
    row.forEach(w => {
      const td = tr.insertCell(); td.textContent = w.toFixed(2); td.dataset.weight = w;
      td.style.background = "rgba(26, 95, 180, " + w.toFixed(3) + ")";
      td.style.color = w > 0.5 ? "white" : "#222";
    });
  });
  const heat = document.getElementById("heat"); heat.replaceChildren(table);
}
document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = box.value; if (!text.trim()) return;
  line("You", text, "you"); box.value = "";
  try {
    const r = await fetch("/api/chat", {method: "POST", headers: {"Content-Type": "application/json"},
                                       body: JSON.stringify({message: text})});
    const data = await r.json();
    if (!r.ok) { line("Error", data.error, "err"); return; }
    line("Bot", data.answer, "bot answer");
    heatmap(data.answer_tokens, data.question_tokens, data.attention);
  } catch (e) { line("Error", String(e), "err"); }
});
</script>
</body></html>
"""
