"""An OpenAI chat-completions request, validated and turned into a query for a served run.

Every refusal is a RequestError carrying the HTTP status and OpenAI's error fields (message, type, param, code):
malformed JSON, a field of the wrong type, an unknown model, a budget over the server's limit, an image that is
remote, outside the images root, too large or a decompression bomb, settings this server does not honour (sampling,
several choices, tools). Served: `messages` of user and assistant turns (the last a user turn) whose first user turn
may carry one image (a text model: the first user message's second text part is the task input);
`max_tokens` (or `max_completion_tokens`); `temperature` 0 or absent (greedy, as the run
was evaluated); `stop`; `stream` with `stream_options.include_usage`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llava_cit.data.example import Example
from llava_cit.data.images import BadImage
from llava_cit.serve.request_images import ImagePolicy, fetch_image
from llava_cit.serve.served_run import Query

IMAGE_TOKEN = "<image>"


class RequestError(Exception):
    """A request the server refuses: `status` (4xx) and OpenAI's error object."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class _ImageURL(BaseModel):
    url: str
    detail: str | None = None


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: _ImageURL | str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_Part] | None = None
    name: str | None = None


class _StreamOptions(BaseModel):
    include_usage: bool = False


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    n: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    stop: str | list[str] | None = None
    logprobs: bool | None = None
    tools: list[Any] | None = None


@dataclass(frozen=True)
class RequestLimits:
    max_tokens: int = 1024  # the most tokens one request may ask to generate
    max_request_bytes: int = 32 * 1024 * 1024
    images: ImagePolicy = field(default_factory=ImagePolicy)


@dataclass
class ChatRequest:
    model: str  # as the client named it
    query: Query
    stream: bool = False
    include_usage: bool = False
    stop: list[str] = field(default_factory=list)


def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(400, f"the request body is not valid JSON ({err})", code="invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def _validated(body: dict) -> _Body:
    try:
        return _Body.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RequestError(400, f"{where}: {first['msg']}", param=where, code="invalid_value") from None


def resolve_model(name: str, run: str, tasks: list[str]) -> str | None:
    """The task `name` pins (None: routed by the switch), or RequestError 404 for a model this server lacks."""
    if name == run:
        return None
    prefix = f"{run}/"
    if name.startswith(prefix) and name[len(prefix):] in tasks:
        return name[len(prefix):]
    known = ", ".join([run] + [f"{run}/{task}" for task in tasks])
    raise RequestError(404, f"The model '{name}' does not exist (this server serves: {known})", param="model",
                       code="model_not_found")


def _unsupported(body: _Body) -> None:
    if body.temperature not in (None, 0):
        raise RequestError(400, "only greedy decoding is served (temperature 0): the run's adapters and switch "
                                "were evaluated greedily", param="temperature", code="unsupported_value")
    if body.n not in (None, 1):
        raise RequestError(400, "only one choice per request is served (n = 1)", param="n", code="unsupported_value")
    if body.logprobs:
        raise RequestError(400, "log probabilities are not served", param="logprobs", code="unsupported_value")
    if body.tools:
        raise RequestError(400, "tools are not served", param="tools", code="unsupported_value")


def _turns(messages: list[_Message], policy: ImagePolicy, vision: bool) -> tuple[list[tuple[str, str]], Any, str]:
    """(question, answer) turns, the last answer empty; the first user turn's image (or None); and, for a text
    model, the task input: the first user message's text parts after its first (the text track's instruction and
    input, as the run trained on them)."""
    turns: list[tuple[str, str]] = []
    image, task_input = None, ""
    expect = "user"
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if message.role in ("system", "developer"):
            raise RequestError(400, f"{where}: {message.role} messages are not served: a run answers with the system "
                                    "prompt it was trained with", param=f"{where}.role", code="unsupported_value")
        if message.role != expect:
            raise RequestError(400, f"{where}: expected a {expect} message (user and assistant turns alternate, "
                                    "the first and the last from the user)", param=f"{where}.role")
        parts = [_Part(type="text", text=message.content or "")] if not isinstance(message.content, list) else \
            message.content
        texts = []
        for k, part in enumerate(parts):
            if part.type == "text":
                if part.text is None:
                    raise RequestError(400, f"{where}.content.{k}: a text part needs 'text'", param=f"{where}.content")
                texts.append(part.text)
                continue
            if message.role != "user" or turns or image is not None:
                raise RequestError(400, f"{where}.content.{k}: one image per conversation, in the first user message",
                                   param=f"{where}.content", code="unsupported_value")
            if not vision:
                raise RequestError(400, f"{where}.content.{k}: this run's model reads no images (a text model)",
                                   param=f"{where}.content", code="unsupported_value")
            url = part.image_url.url if isinstance(part.image_url, _ImageURL) else part.image_url
            try:
                image = fetch_image(url or "", policy)
            except BadImage as err:
                raise RequestError(400, f"{where}.content.{k}: {err}", param=f"{where}.content",
                                   code="invalid_image") from None
        if message.role == "user" and not turns and not vision and len(texts) > 1:
            texts, task_input = texts[:1], "\n".join(texts[1:]).strip()
        text = "\n".join(texts).strip()
        if IMAGE_TOKEN in text or IMAGE_TOKEN in task_input:
            raise RequestError(400, f"{where}: the text may not contain '{IMAGE_TOKEN}' (send the image as an image_url "
                                    "part)", param=f"{where}.content")
        if message.role == "user":
            turns.append((text, ""))
            expect = "assistant"
        else:
            turns[-1] = (turns[-1][0], text)
            expect = "user"
    if expect != "assistant":
        raise RequestError(400, "the last message must come from the user", param="messages")
    return turns, image, task_input


def parse_chat_request(body: dict, run: str, tasks: list[str], vision: bool, limits: RequestLimits,
                       multi_turn: bool = True) -> ChatRequest:
    """The request as a query for `run` (serving `tasks`), or RequestError."""
    parsed = _validated(body)
    _unsupported(parsed)
    task = resolve_model(parsed.model, run, tasks)
    budget = parsed.max_completion_tokens or parsed.max_tokens
    if budget is not None and budget > limits.max_tokens:
        raise RequestError(400, f"max_tokens {budget} is over this server's limit of {limits.max_tokens}",
                           param="max_tokens", code="max_tokens_exceeded")
    turns, image, task_input = _turns(parsed.messages, limits.images, vision)
    if len(turns) > 1 and not multi_turn:
        raise RequestError(400, "this run's prompt format reads one question: send a single user message",
                           param="messages", code="unsupported_value")
    if image is not None:
        turns[0] = (f"{IMAGE_TOKEN}\n{turns[0][0]}", turns[0][1])
    example = Example(id="request", turns=turns, image=image, input=task_input)
    stop = [parsed.stop] if isinstance(parsed.stop, str) else list(parsed.stop or [])
    include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
    return ChatRequest(parsed.model, Query(example, task, budget), parsed.stream, include_usage,
                       [s for s in stop if s])
