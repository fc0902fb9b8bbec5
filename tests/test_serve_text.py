"""The text track's runs are served the same way: a tiny BLOOM run behind the API, answered as RunServer answers."""

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from conftest import tiny_run_config
from serve_helpers import ThreadedServer, request, user_message
from test_text_runner import TEXT_TRAIN, write_task

from llava_cit.config import load_config
from llava_cit.continual.runner import ContinualRunner
from llava_cit.data.example import Example
from llava_cit.serve.openai_api import ServeSettings, create_app
from llava_cit.serve.served_run import ServedRun
from llava_cit.serve.vllm_export import export_vllm
from llava_cit.util.errors import UserError

WORDS = ["red", "blue", "green", "yellow"]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-serve")
    colour = write_task(root, "colour", "What color is the shape on the left?",
                        [(f"the {w} circle left", w) for w in WORDS] * 6, "rouge1")
    simp = write_task(root, "simp", "Describe the image briefly.",
                      [(f"the big {w} square", f"{w} square") for w in WORDS] * 6, "sari")
    config = tiny_run_config(model="tiny-bloom", tasks=[colour, simp], lora={"r": 4, "alpha": 8, "dropout": 0.0},
                             train=TEXT_TRAIN)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLAVA_CIT_CACHE", str(root / "cache"))
        ContinualRunner(load_config(None, base=config), root / "bloom").run()
    return root / "bloom"


def test_a_text_run_is_served_like_a_vision_run(text_run, tmp_path):
    served = ServedRun(text_run)
    questions = [("What color is the shape on the left?", "the blue circle left"),
                 ("Describe the image briefly.", "the big red square")] * 2
    with ThreadedServer(create_app(served, ServeSettings(batch_window_s=0.3))) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="-", max_retries=0, timeout=120)

        def ask(question, model="bloom"):  # the text track's instruction and input: two text parts
            parts = [{"type": "text", "text": question[0]}, {"type": "text", "text": question[1]}]
            return client.chat.completions.create(model=model, messages=[{"role": "user", "content": parts}],
                                                  max_tokens=4)

        with ThreadPoolExecutor(len(questions)) as pool:
            responses = list(pool.map(ask, questions))
        pinned = ask(questions[0], model="bloom/simp")
        status, refused = request(f"{running.url}/v1/chat/completions", {
            "model": "bloom", "max_tokens": 2,
            "messages": user_message("What color?", "data:image/png;base64,iVBORw0KGgo=")})
        status_turns, turns = request(f"{running.url}/v1/chat/completions", {
            "model": "bloom", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                           {"role": "user", "content": "c"}]})
    examples = [Example(id=str(i), turns=[(q, "")], input=x) for i, (q, x) in enumerate(questions)]
    expected = served.server.answer(examples, max_new_tokens=4)
    assert [r.choices[0].message.content for r in responses] == [answer for answer, _, _, _ in expected]
    assert [r.routing["task"] for r in responses] == [route for _, route, _, _ in expected] == ["colour", "simp"] * 2
    assert pinned.routing["task"] == "simp" and pinned.routing["pinned"]
    assert status == 400 and "reads no images" in refused["error"]["message"]
    # the text template reads one question (no chat template on tiny BLOOM): several turns are refused, not dropped
    assert status_turns == 400 and "single user message" in turns["error"]["message"]


def test_a_bloom_run_is_not_exported_for_vllm(text_run, tmp_path):
    with pytest.raises(UserError, match="BloomForCausalLM implements no LoRA support"):
        export_vllm(text_run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
