"""The chatbot: its shipped corpus and tokenizer, replies, the web server (in process and over real
sockets on 127.0.0.1), and ``knetpy chat``."""

import gzip
import hashlib
import http.client
import importlib
import importlib.util
import json
import socket
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import knetpy as kp
from knetpy import cli
from knetpy.chat import MAX_BODY, MAX_CHARS, MODEL_FILE, ChatBot
from knetpy.datasets.dialogue import DIALOGUE_SHA256, Vocabulary, detokenize, tokenize

sys.path.insert(0, str(Path(__file__).parent))
from chat_cases import tiny_bot  # noqa: E402

FILES = Path(kp.datasets.__file__).parent / "files"


# -- the corpus and the tokenizer --------------------------------------------------------------------
def test_shipped_dialogue_is_what_its_generator_writes():
    pairs = kp.datasets.dialogue()
    assert len(pairs) >= 2000 and all(len(p) == 2 and p[0] and p[1] for p in pairs)
    if not (FILES / "make_dialogue.py").is_file():
        pytest.skip("make_dialogue.py is in a source checkout, not in an installed package")
    spec = importlib.util.spec_from_file_location("make_dialogue", FILES / "make_dialogue.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    assert maker.pairs() == pairs
    text = "".join(f"{q}\t{a}\n" for q, a in maker.pairs()).encode()
    assert hashlib.sha256(text).hexdigest() == DIALOGUE_SHA256
    assert gzip.decompress((FILES / "dialogue.tsv.gz").read_bytes()) == text
    assert "dialogue.tsv.gz" in (FILES / "README.md").read_text() and DIALOGUE_SHA256 in (FILES / "README.md").read_text()


def test_a_damaged_dialogue_file_is_refused(monkeypatch):
    from knetpy.datasets.download import CorruptFileError

    module = importlib.import_module("knetpy.datasets.dialogue")  # the package's name is the function

    monkeypatch.setattr(module, "DIALOGUE_SHA256", "0" * 64)
    with pytest.raises(CorruptFileError, match="SHA-256|sha256|checksum"):
        module.dialogue()


def test_tokenizer_and_vocabulary():
    assert tokenize("Hello, World! What's 3+4?") == ["hello", ",", "world", "!", "what's", "3", "+", "4", "?"]
    assert detokenize(["hello", "!", "i", "am", "fine", ",", "thanks", "."]) == "Hello! I am fine, thanks."
    vocab = Vocabulary.build(["a b b", "b c"])
    assert vocab.tokens[:4] == ("<pad>", "<bos>", "<eos>", "<unk>") and vocab.tokens[4] == "b"
    assert vocab.encode("a zebra") == [vocab.index["a"], 3]
    assert vocab.decode([1, vocab.index["c"], 2, vocab.index["a"]]) == "C"
    with pytest.raises(TypeError, match="expected a str"):
        tokenize(b"bytes")


# -- replies ---------------------------------------------------------------------------------------------
def test_reply_has_attention_over_the_question_words(tmp_path):
    bot = tiny_bot()
    r = bot.reply("Hello, how are you?")
    assert isinstance(r["answer"], str) and r["answer"]
    assert r["question_tokens"] == ["hello", ",", "how", "are", "you", "?"]
    w = np.array(r["attention"])
    assert w.shape == (len(r["answer_tokens"]), len(r["question_tokens"]))
    np.testing.assert_allclose(w.sum(axis=1), 1, atol=1e-3)
    with pytest.raises(ValueError, match="empty"):
        bot.reply("   ")
    with pytest.raises(ValueError, match="limit is"):
        bot.reply("a" * (MAX_CHARS + 1))
    path = bot.save(tmp_path / "bot.ckpt")
    again = ChatBot.load(path)
    assert again.vocab.tokens == bot.vocab.tokens
    assert again.reply("hello")["answer"] == bot.reply("hello")["answer"]
    kp.save(tmp_path / "other.ckpt", {"w": np.zeros(2)})
    with pytest.raises(ValueError, match="not a saved chatbot"):
        ChatBot.load(tmp_path / "other.ckpt")


# -- the server, in process ------------------------------------------------------------------------------
def _test_client(bot):
    pytest.importorskip("starlette", reason="the chat server needs the extra 'chat' (Starlette)")
    try:
        from starlette.testclient import TestClient
    except RuntimeError as e:  # raised when neither httpx2 nor httpx is installed
        pytest.skip(f"Starlette's TestClient needs httpx2 (the extra 'test'): {e}")
    from knetpy.chat import create_app

    return TestClient(create_app(bot), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client():
    return _test_client(tiny_bot())


def _post(client, body, ctype="application/json"):
    return client.post("/api/chat", content=body, headers={"Content-Type": ctype} if ctype else {})


def test_page_and_a_valid_question(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="message"' in page.text and "heat" in page.text
    r = client.post("/api/chat", json={"message": "what is 3 plus 4?"})
    assert r.status_code == 200
    data = r.json()
    assert data["answer"] and len(data["attention"]) == len(data["answer_tokens"])
    assert client.get("/api/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "body, ctype, status, message",
    [
        (b'{"message": ""}', "application/json", 400, "empty"),
        (b'{"message": "   \\n\\t"}', "application/json", 400, "empty"),
        (json.dumps({"message": "x" * (MAX_CHARS + 1)}).encode(), "application/json", 413, "limit is"),
        (b'{"message": "' + b"x" * MAX_BODY + b'"}', "application/json", 413, "larger than"),
        (b'{"message": "caf\xe9"}', "application/json", 400, "not valid UTF-8"),
        (b"\xff\xfe\x00", "application/json", 400, "not valid UTF-8"),
        (b'{"message": "hello"', "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "not valid JSON"),
        (b"NaN-ish garbage", "application/json", 400, "not valid JSON"),
        (b'["hello"]', "application/json", 400, '"message" field'),
        (b'{"text": "hello"}', "application/json", 400, '"message" field'),
        (b'{"message": 42}', "application/json", 400, "must be a string"),
        (b'{"message": null}', "application/json", 400, "must be a string"),
        (b'{"message": "hello"}', "text/plain", 415, "application/json"),
        (b'{"message": "hello"}', None, 415, "application/json"),
        (b"message=hello", "application/x-www-form-urlencoded", 415, "application/json"),
    ],
)
def test_invalid_requests_get_a_4xx_with_a_json_message(client, body, ctype, status, message):
    r = _post(client, body, ctype)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_wrong_method_and_path_answer_json(client):
    r = client.get("/api/chat")
    assert r.status_code == 405 and "error" in r.json()
    r = client.get("/nowhere")
    assert r.status_code == 404 and "error" in r.json()


def test_random_bodies_never_make_a_5xx(client):
    rng = np.random.default_rng(0)
    for _ in range(60):
        raw = rng.integers(0, 256, size=rng.integers(0, 300)).astype(np.uint8).tobytes()
        assert 400 <= _post(client, raw).status_code < 500
        text = "".join(chr(c) for c in rng.integers(1, 0x2FFF, size=rng.integers(1, 80)))
        r = client.post("/api/chat", json={"message": text})
        assert r.status_code in (200, 400), (text, r.text)
    assert client.post("/api/chat", json={"message": "hello"}).status_code == 200


def test_an_internal_failure_is_a_json_500_and_the_server_goes_on():
    class Broken:
        calls = 0

        def reply(self, text):
            Broken.calls += 1
            if Broken.calls == 1:
                raise RuntimeError("boom")
            return tiny_bot().reply(text)

    client = _test_client(Broken())
    r = client.post("/api/chat", json={"message": "hello"})
    assert r.status_code == 500 and r.json() == {"error": "internal error (RuntimeError)"}
    assert client.post("/api/chat", json={"message": "hello"}).status_code == 200


# -- the server, over real sockets -----------------------------------------------------------------------
def _request(url, body, ctype="application/json", method="POST"):
    req = urllib.request.Request(url + "api/chat", data=body, method=method,
                                 headers={"Content-Type": ctype} if ctype else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_real_server_on_localhost_answers_and_survives_bad_input():
    pytest.importorskip("starlette", reason="the chat server needs the extra 'chat' (Starlette)")
    pytest.importorskip("uvicorn", reason="the chat server needs the extra 'chat' (uvicorn)")
    from knetpy.chat import running

    with running(tiny_bot()) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == 200 and b'id="message"' in r.read()
        status, data = _request(url, json.dumps({"message": "hello"}).encode())
        assert status == 200 and data["answer"]
        for body, ctype, expect in [(b"{", "application/json", 400), (b"\xc3\x28", "application/json", 400),
                                    (b'{"message": ""}', "application/json", 400),
                                    (b'{"message": "hi"}', "text/html", 415),
                                    (b"x" * (MAX_BODY + 10), "application/json", 413)]:
            status, data = _request(url, body, ctype)
            assert status == expect and data["error"]
        # a body sent in chunks without a length is counted as it arrives
        host, port = url[len("http://"):-1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.putrequest("POST", "/api/chat")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"x" * 1000
        for _ in range(6):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        assert response.status == 413 and "larger than" in json.loads(response.read())["error"]
        conn.close()
        # garbage that is not HTTP at all
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"\x00\x01\x02 not http\r\n\r\n")
            s.recv(1024)
        status, data = _request(url, json.dumps({"message": "thanks"}).encode())
        assert status == 200 and data["answer"]


# -- the command ---------------------------------------------------------------------------------------------
def test_cli_chat_loads_a_saved_bot_and_answers(tmp_path, capsys):
    tiny_bot().save(tmp_path / MODEL_FILE)
    assert cli.main(["chat", "--out", str(tmp_path), "--ask", "hello", "--ask", ""]) == 0
    out = capsys.readouterr().out
    assert f"loading the chatbot from {tmp_path / MODEL_FILE}" in out
    assert "> hello\n" in out and "(refused: the message is empty" in out


def test_cli_chat_reports_a_file_that_is_not_a_bot(tmp_path, capsys):
    kp.save(tmp_path / MODEL_FILE, {"w": np.zeros(2)})
    assert cli.main(["chat", "--out", str(tmp_path), "--ask", "hi"]) == 2
    err = capsys.readouterr().err
    assert "not a saved chatbot" in err and "--retrain" in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["chat", "--port", "70000", "--ask", "hi"])
    assert exit_info.value.code == 2 and "--port must be in 0..65535" in capsys.readouterr().err


def test_cli_chat_refuses_a_busy_port(tmp_path, capsys):
    pytest.importorskip("uvicorn", reason="the chat server needs the extra 'chat' (uvicorn)")
    pytest.importorskip("starlette", reason="the chat server needs the extra 'chat' (Starlette)")
    tiny_bot().save(tmp_path / MODEL_FILE)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert cli.main(["chat", "--out", str(tmp_path), "--port", str(port)]) == 2
    assert "choose another --port" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_chat_quick_trains_saves_and_answers(tmp_path, capsys):
    assert cli.main(["chat", "--quick", "--out", str(tmp_path), "--ask", "what is 2 plus 3?"]) == 0
    out = capsys.readouterr().out
    assert "training the chatbot" in out and "(:epoch, 10, :trn," in out and (tmp_path / MODEL_FILE).is_file()
    assert "> what is 2 plus 3?\n" in out


@pytest.mark.slow
def test_the_full_bot_gives_its_training_answers():
    """Trained as `knetpy chat` trains it, the bot answers >= 90% of 300 training questions with one of
    their answers (some questions have two), and the arithmetic is right."""
    bot = ChatBot.train(seed=0)
    pairs = kp.datasets.dialogue()
    answers = {}
    for q, a in pairs:
        answers.setdefault(q, set()).add(" ".join(tokenize(a)))
    questions = sorted(answers)
    chosen = [questions[i] for i in np.random.default_rng(0).choice(len(questions), 300, replace=False)]
    right = sum(" ".join(tokenize(bot.reply(q)["answer"])) in answers[q] for q in chosen)
    assert right >= 270, right
    assert bot.reply("What is 3 plus 4?")["answer"] == "3 plus 4 is 7."


def test_cli_chat_without_the_extra_says_what_to_install_before_training(tmp_path, monkeypatch, capsys):
    import knetpy.chat

    def missing():
        raise ImportError("the chat page needs Starlette and uvicorn: pip install 'knetpy[chat]'")

    monkeypatch.setattr(knetpy.chat, "_uvicorn", missing)
    assert cli.main(["chat", "--out", str(tmp_path)]) == 2
    assert "pip install 'knetpy[chat]'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # it stopped before training
