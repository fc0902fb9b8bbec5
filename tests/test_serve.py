"""`llava-cit serve`: the OpenAI-compatible API over a tiny routed run, driven by the official `openai` client on
loopback. One tiny run (switch with rejection) and one server serve the whole module."""

import base64
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from conftest import tiny_run_config
from PIL import Image
from serve_helpers import ThreadedServer, data_url, request, user_message

from llava_cit.config import load_config
from llava_cit.continual.runner import ContinualRunner
from llava_cit.data import synthetic
from llava_cit.data.example import Example
from llava_cit.data.images import BadImage
from llava_cit.serve.batch_queue import BatchQueue, QueueClosed
from llava_cit.serve.chat_request import RequestLimits
from llava_cit.serve.openai_api import ServeSettings, create_app
from llava_cit.serve.request_images import ImagePolicy
from llava_cit.serve.run_server import RunServer
from llava_cit.serve.served_run import Query, Reply, ServedRun

RUN = "served"
KEY = "test-key"
OUT_OF_FAMILY = ["translate this sentence to french", "write a short poem about the sea"]  # the switch rejects these


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("serve-cache")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache):
    root = tmp_path_factory.mktemp("serve")
    config = tiny_run_config(switch={"extractor": "tiny-opt", "hidden": 32, "epochs": 100, "reject": True})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLAVA_CIT_CACHE", str(cache))
        ContinualRunner(load_config(None, base=config), root / RUN).run()
    return root / RUN


@pytest.fixture(scope="module")
def served(run_dir):
    return ServedRun(run_dir)


@pytest.fixture(scope="module")
def images_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    (root / "inside").mkdir()
    synthetic.generate("synth-ocr", 1, split="test")[0].image.save(root / "inside" / "word.png")
    synthetic.generate("synth-ocr", 1, split="test")[0].image.save(root / "secret.png")  # outside the served root
    return root / "inside"


@pytest.fixture(scope="module")
def server(served, images_root):
    limits = RequestLimits(max_tokens=64, max_request_bytes=2_000_000,
                           images=ImagePolicy(images_root, allow_remote=False, max_bytes=300_000, max_pixels=500_000))
    # a window long enough that requests sent together are answered together on a slow, shared CPU
    settings = ServeSettings(api_key=KEY, limits=limits, batch_window_s=0.5, max_batch=32)
    with ThreadedServer(create_app(served, settings)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)


def ask(client, example: Example, model: str = RUN, max_tokens: int = 3, **options):
    image = data_url(example.image) if example.image is not None else None
    return client.chat.completions.create(model=model, max_tokens=max_tokens, temperature=0,
                                          messages=user_message(example.instruction.replace("<image>\n", ""), image),
                                          **options)


def mixed_examples(per_task: int = 3) -> list[Example]:
    shapes = synthetic.generate("synth-shapes", per_task, split="test")
    ocr = synthetic.generate("synth-ocr", per_task, split="test")
    text = [Example(id=f"text-{i}", turns=[(q, "")]) for i, q in enumerate(OUT_OF_FAMILY)]
    return [x for pair in zip(shapes, ocr) for x in pair] + text


def test_concurrent_answers_equal_run_server_answers(client, served):
    examples = mixed_examples()
    with ThreadPoolExecutor(len(examples)) as pool:
        responses = list(pool.map(lambda ex: ask(client, ex), examples))
    expected = served.server.answer(examples, max_new_tokens=3)  # RunServer.answer: route by route
    assert [r.choices[0].message.content for r in responses] == [answer for answer, _, _, _ in expected]
    routing = [r.routing for r in responses]
    assert [x["task"] for x in routing] == [route for _, route, _, _ in expected]
    tasks = {x["task"] for x in routing}
    assert tasks == {"synth-shapes", "synth-ocr", None}  # None: rejected by the switch, answered by the bare base
    together = defaultdict(set)
    for x in routing:
        together[x["batch"]].add(x["task"])
    assert any(len(batch_tasks) > 1 for batch_tasks in together.values())  # one generation served mixed tasks
    assert all(r.usage.prompt_tokens > 0 and r.choices[0].finish_reason in ("stop", "length") for r in responses)


def test_a_pinned_task_answers_with_its_adapter(client, run_dir):
    examples = synthetic.generate("synth-shapes", 3, split="test")
    responses = [ask(client, ex, model=f"{RUN}/synth-ocr") for ex in examples]
    expected = RunServer(run_dir, adapter="synth-ocr").answer(examples, max_new_tokens=3)
    assert [r.choices[0].message.content for r in responses] == [answer for answer, _, _, _ in expected]
    assert all(r.routing["task"] == "synth-ocr" and r.routing["pinned"] for r in responses)


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list()] == [RUN, f"{RUN}/synth-shapes", f"{RUN}/synth-ocr"]
    assert client.models.retrieve(f"{RUN}/synth-ocr").task == "synth-ocr"
    status, health = request(f"{server.url}/health")  # no key needed
    assert status == 200 and health["status"] == "ok" and health["run"] == RUN


def test_streaming_sends_the_same_answer_as_events(client):
    example = synthetic.generate("synth-ocr", 1, split="test")[0]
    whole = ask(client, example)
    chunks = list(ask(client, example, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage == whole.usage and not chunks[-1].choices


def test_thirty_two_concurrent_clients(server, served):
    examples = (mixed_examples(4) * 4)[:32]
    models = [RUN if i % 3 else f"{RUN}/synth-shapes" for i in range(32)]

    def one(i):  # a client of its own per thread, as 32 separate programs would
        own = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=300)
        return ask(own, examples[i], model=models[i])

    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(one, range(32)))
    assert all(isinstance(r.choices[0].message.content, str) for r in responses)
    status, health = request(f"{server.url}/health")
    assert health["in_flight"] == 0 and health["largest_batch"] > 1


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's signature); its pixels are never there."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_bad_requests_get_openai_errors_and_the_server_stays_up(server, images_root):
    url, auth = f"{server.url}/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}

    def body(content, model=RUN, **extra):
        return {"model": model, "messages": [{"role": "user", "content": content}], **extra}

    question = synthetic.generate("synth-ocr", 1, split="test")[0].instruction.replace("<image>\n", "")

    def image(url_):
        return [{"type": "image_url", "image_url": {"url": url_}}, {"type": "text", "text": question}]

    big = Image.effect_noise((400, 400), 100).convert("RGB")  # noise: hundreds of KB as PNG, over max_bytes
    wide = Image.new("RGB", (1000, 600))  # 600,000 pixels: over max_pixels, few bytes
    bomb = "data:image/png;base64," + base64.b64encode(_png_header_only(40_000, 40_000)).decode()
    cases = {
        "malformed JSON": (b'{"model": ', 400, "invalid_json"),
        "not an object": (b"[1, 2]", 400, "invalid_json"),
        "no messages": ({"model": RUN}, 400, "invalid_value"),
        "unknown model": (body("hi", model="other"), 404, "model_not_found"),
        "unknown task": (body("hi", model=f"{RUN}/nope"), 404, "model_not_found"),
        "too many tokens": (body("hi", max_tokens=65), 400, "max_tokens_exceeded"),
        "sampling": (body("hi", temperature=0.7), 400, "unsupported_value"),
        "system prompt": ({"model": RUN, "messages": [{"role": "system", "content": "x"},
                                                      {"role": "user", "content": "hi"}]}, 400, "unsupported_value"),
        "empty question": (body("   "), 400, "unanswerable"),
        "oversize image bytes": (body(image(data_url(big))), 400, "invalid_image"),
        "oversize image pixels": (body(image(data_url(wide))), 400, "invalid_image"),
        "decompression bomb": (body(image(bomb)), 400, "invalid_image"),
        "not base64": (body(image("data:image/png;base64,%%%")), 400, "invalid_image"),
        "remote image": (body(image("https://example.com/cat.png")), 400, "invalid_image"),
        "path outside the root": (body(image("../secret.png")), 400, "invalid_image"),
        "absolute path outside": (body(image(str(images_root.parent / "secret.png"))), 400, "invalid_image"),
        "file URL outside": (body(image((images_root.parent / "secret.png").as_uri())), 400, "invalid_image"),
        "missing file": (body(image("none.png")), 400, "invalid_image"),
    }
    for name, (payload, status, code) in cases.items():
        got, answer = request(url, payload, auth)
        assert (got, answer["error"]["code"]) == (status, code), name
        assert set(answer["error"]) == {"message", "type", "param", "code"} and answer["error"]["message"], name
    assert "decompression bomb" in request(url, cases["decompression bomb"][0], auth)[1]["error"]["message"]
    assert "--allow-remote-images" in request(url, cases["remote image"][0], auth)[1]["error"]["message"]
    # a body declared larger than --max-request-bytes: refused from its headers, before any of it is read
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.putrequest("POST", "/v1/chat/completions")
    for header, value in {**auth, "Content-Type": "application/json", "Content-Length": "2100000"}.items():
        connection.putheader(header, value)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]["code"] == "request_too_large"
    connection.close()
    status, answer = request(f"{server.url}/v1/nowhere", None, auth)
    assert status == 404 and answer["error"]["code"] == "not_found"
    # after all that: still up, and a file under the images root is served
    status, answer = request(url, body(image("word.png"), max_tokens=2), auth)
    assert status == 200 and answer["routing"]["task"] == "synth-ocr"
    status, answer = request(url, body(image((images_root / "word.png").as_uri()), max_tokens=2), auth)
    assert status == 200


def test_the_api_key_is_required_on_v1(server):
    good = {"model": RUN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        status, answer = request(f"{server.url}/v1/chat/completions", good, headers)
        assert status == 401 and answer["error"]["code"] == "invalid_api_key"
    assert request(f"{server.url}/v1/models")[0] == 401


class FailingEngine:
    """An engine whose answer raises for a question holding 'boom': the API must fail only that request."""

    name, engine, tasks, routed, is_vision, multi_turn = "fake", "fake", [], False, False, True

    def answer(self, queries):
        if any("boom" in q.example.instruction for q in queries):
            raise RuntimeError("boom")
        return [Reply(q.example.instruction.upper(), None) for q in queries]

    def prompt_tokens(self, example):
        return 1

    def count_tokens(self, text):
        return len(text.split())


def test_an_internal_error_fails_only_its_own_request():
    settings = ServeSettings(batch_window_s=0.3)
    with ThreadedServer(create_app(FailingEngine(), settings)) as running:
        questions = ["one", "boom", "two", "three"]

        def post(q):
            return request(f"{running.url}/v1/chat/completions",
                           {"model": "fake", "messages": [{"role": "user", "content": q}]})

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(post, questions))
        status, cut = request(f"{running.url}/v1/chat/completions", {
            "model": "fake", "stop": ["GAMMA"], "messages": [{"role": "user", "content": "alpha beta gamma delta"}]})
    statuses = [status for status, _ in results]
    assert statuses == [200, 500, 200, 200]
    assert results[1][1]["error"]["type"] == "server_error"
    assert [r["choices"][0]["message"]["content"] for s, r in results if s == 200] == ["ONE", "TWO", "THREE"]
    assert status == 200 and cut["choices"][0]["message"]["content"] == "ALPHA BETA "  # cut at the stop string
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_closing_the_queue_answers_what_is_queued_and_refuses_more():
    seen = []

    def answer(queries):
        time.sleep(0.05)
        seen.append(len(queries))
        return [Reply(q.example.instruction, None) for q in queries]

    batches = BatchQueue(answer, window_s=0.05, max_batch=2)
    futures = [batches.submit(Query(Example(id=str(i), turns=[(str(i), "")]))) for i in range(5)]
    batches.close()
    assert [f.result(timeout=0).reply.text for f in futures] == ["0", "1", "2", "3", "4"]
    assert sum(seen) == 5 and max(seen) == 2
    with pytest.raises(QueueClosed):
        batches.submit(Query(Example(id="late", turns=[("late", "")])))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sigterm_finishes_the_request_in_flight(run_dir, cache):
    port = _free_port()
    env = dict(os.environ, LLAVA_CIT_CACHE=str(cache))
    process = subprocess.Popen([sys.executable, "-m", "llava_cit.cli", "serve", str(run_dir), "--port", str(port),
                                "--batch-window-ms", "1500"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if request(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        result = {}
        asking = threading.Thread(target=lambda: result.update(answer=request(
            f"{base}/v1/chat/completions",
            {"model": RUN, "messages": [{"role": "user", "content": "What is written?"}], "max_tokens": 2})))
        asking.start()
        while request(f"{base}/health")[1]["in_flight"] == 0:  # the request waits in its 1.5 s window
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        asking.join(60)
        assert result["answer"][0] == 200 and isinstance(result["answer"][1]["choices"][0]["message"]["content"], str)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0 and "server stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_data_url_images_are_decoded_like_files():
    from llava_cit.serve.request_images import fetch_image

    original = synthetic.generate("synth-ocr", 1, split="test")[0].image
    decoded = fetch_image(data_url(original), ImagePolicy())
    assert list(decoded.getdata()) == list(original.convert("RGB").getdata())
    with pytest.raises(BadImage, match="scheme 'ftp' is not served"):
        fetch_image("ftp://example.com/x.png", ImagePolicy())
