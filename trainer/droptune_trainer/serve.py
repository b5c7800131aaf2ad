"""Serving on Vertex AI's custom-container contract (FastAPI + uvicorn).

    python -m droptune_trainer serve            # AIP_STORAGE_URI=gs://RUNS/runs/ID/model

- `AIP_HTTP_PORT` (8080), `AIP_HEALTH_ROUTE` (/health), `AIP_PREDICT_ROUTE` (/predict);
  the model comes from `AIP_STORAGE_URI` (a `gs://` folder is downloaded first, a local path
  is used as it is): the tuned `merged/` checkpoint of a run, or any plain checkpoint.
- `POST {"instances": [{"messages": [...], "tools": [...]} | {"prompt": "raw text"}],
  "parameters": {"max_new_tokens", "temperature", "top_p"}}` answers `{"predictions": [text,
  ...], "metadata": {"usage": [{"inputTokens", "outputTokens"}, ...]}}` (Vertex passes
  `metadata` on; callers that count cost read it, the rest ignore it). `messages` (and
  `tools`, for a model tuned on tool calls) are rendered with the model's chat template, as
  in training and evaluation; a `prompt` is continued as it is.
- A chat without a system turn is opened with the one the model was tuned with, saved beside
  the checkpoint (`droptune.json`, `system_turn`): every caller gets the answer the
  evaluation measured, with or without knowing the run. A chat's own system turn is kept.
- Requests that arrive together are generated together: a worker takes what is queued, oldest
  first, with every later request of the same parameters that fits (up to `MAX_BATCH`
  instances), and runs batched generations of them under the evaluation's token budget (what
  the device's memory holds), so concurrent callers share the model instead of waiting in
  line. If a shared generation fails, each request is tried again alone, so only the one
  that caused it gets the error (a 500 that says why). A device that fails after that (a CUDA
  error sticks to the process) stops the worker: the waiting requests and every later one get
  a 503, and so does the health route, for Vertex to replace the replica.
- Answers to `messages` are stripped of surrounding whitespace; a `prompt`'s continuation is
  returned as generated (its leading space included). A reasoning model's thinking
  (`<think>...</think>`) is not part of the prediction: `metadata.reasoning` has it, one entry
  an instance, when any answer had some.
- A malformed body, an empty prompt, messages the chat template refuses, or a prompt that
  with `max_new_tokens` does not fit the model's context is a 400 that says what is wrong;
  bodies over 1.5 MB (Vertex's online prediction limit) are refused with a 413, counted as
  they arrive when the client sends no length; with `MAX_WAITING` instances already waiting
  a request gets a 503, for the caller to retry later.
- The health route answers 503 if the generation worker has stopped.
- The model computes in bf16 on GPUs that have it natively, as in training; in fp32 on older
  ones (T4, V100) and on a CPU.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from jinja2 import TemplateError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from droptune.log import get_logger
from droptune_trainer.errors import RunFolderError, TrainerError
from droptune_trainer.generation import (
    Generated,
    batches,
    generate,
    prompt_lengths,
    render,
    token_budget,
)
from droptune_trainer.precision import native_bf16
from droptune_trainer.system_turn import load as load_system_prompt
from droptune_trainer.system_turn import opened

log = get_logger("droptune.serve")
MAX_BODY_BYTES = 1_500_000
MAX_BATCH = 16  # instances generated together
MAX_WAITING = 1024  # instances queued before requests are turned away
MAX_NEW_TOKENS = 2048  # the most a request may ask for
MIN_TEMPERATURE = 0.01  # below it, logits / temperature overflow: use 0 for greedy


class GenerationFailed(TrainerError):
    """The model could not answer a request (it is answered with a 500 that says why)."""


class WorkerStopped(TrainerError):
    """Nothing generates any more (the device failed): a 503, and the health route says so."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None


class Instance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] | None = None
    prompt: str | None = Field(None, min_length=1)
    tools: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def one_of(self) -> Instance:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError('give exactly one of "messages" (a chat) or "prompt" (raw text)')
        if self.messages is not None and not self.messages:
            raise ValueError('"messages" is empty')
        if self.tools is not None and self.messages is None:
            raise ValueError('"tools" go with "messages", which the chat template renders')
        return self


def not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("Input should be a valid integer, not a boolean")
    return value


class Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_new_tokens: Annotated[int, BeforeValidator(not_a_boolean)] = Field(
        256, ge=1, le=MAX_NEW_TOKENS
    )  # 256.0 is 256: JSON that went through protobuf (the Vertex AI SDK) has no integers
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def greedy_or_sampled(self) -> Parameters:
        if 0 < self.temperature < MIN_TEMPERATURE:
            raise ValueError(
                f"temperature {self.temperature} is too small to sample with: use 0 (greedy) "
                f"or at least {MIN_TEMPERATURE}"
            )
        if self.temperature == 0:  # greedy reads no top_p: such requests share a batch
            self.top_p = 1.0
        return self


class PredictRequest(BaseModel):
    instances: list[Instance] = Field(min_length=1, max_length=256)
    parameters: Parameters = Field(default_factory=Parameters)

    @field_validator("parameters", mode="before")
    @classmethod
    def null_is_default(cls, value: Any) -> Any:
        return {} if value is None else value


@dataclass
class Pending:
    texts: list[str]
    parameters: Parameters
    lengths: list[int] = field(default_factory=list)  # prompt tokens of each text
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Model:
    """A checkpoint on a device, and the queue that batches requests for it."""

    def __init__(self, folder: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if native_bf16(self.device) else torch.float32  # as training
        self.system = load_system_prompt(folder)  # the tuned system turn, if the run had one
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Requests are rendered and measured on the event loop while the worker thread pads
        # a batch: a tokenizer of their own, since padding settings live in the tokenizer.
        self.counter = AutoTokenizer.from_pretrained(folder)
        self.model = (
            AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(self.device).eval()
        )
        text_config = self.model.config.get_text_config()  # a multimodal model's language part
        self.context = getattr(text_config, "max_position_embeddings", None)
        self.budget = token_budget(self.model, self.device)  # tokens one generation holds
        self.queue: asyncio.Queue[Pending] = asyncio.Queue()
        self.backlog: deque[Pending] = deque()  # taken from the queue, not yet generated
        self.waiting = 0  # instances queued or being generated
        self.batches = 0  # generations run, for tests and logs
        self.stopped: str | None = None  # why nothing generates any more

    def prompts(self, request: PredictRequest) -> tuple[list[str], list[int]]:
        """Each instance's text and its tokens; a 400 for what the model cannot answer."""
        texts = []
        for i, inst in enumerate(request.instances):
            if inst.prompt is not None:
                texts.append(render(self.counter, inst.prompt))
                continue
            chat = opened([m.model_dump(exclude_none=True) for m in inst.messages], self.system)
            try:
                texts.append(render(self.counter, chat, inst.tools))
            except (TemplateError, TypeError, ValueError, KeyError) as exc:
                raise HTTPException(
                    400, f"instances.{i}.messages: the model's chat template refuses them: {exc}"
                ) from None
        lengths = prompt_lengths(self.counter, texts)
        new_tokens = request.parameters.max_new_tokens
        for i, length in enumerate(lengths):
            if not length:
                raise HTTPException(400, f"instances.{i}: the prompt is empty; give it text")
            if self.context and length + new_tokens > self.context:
                raise HTTPException(
                    400,
                    f"instances.{i}: {length} prompt tokens + max_new_tokens {new_tokens} "
                    f"exceed the model's context of {self.context} tokens; shorten the prompt "
                    "or ask for fewer tokens",
                )
        return texts, lengths

    async def predict(self, request: PredictRequest) -> list[tuple[Generated, int]]:
        """(answer, input tokens) of each instance; a chat's answer stripped."""
        texts, lengths = self.prompts(request)
        if self.stopped:
            raise WorkerStopped(self.stopped)
        if self.waiting + len(texts) > MAX_WAITING:
            raise HTTPException(
                503, f"busy: {self.waiting} instances are waiting to be answered; retry later"
            )
        pending = Pending(texts, request.parameters, lengths)
        self.waiting += len(texts)
        try:
            await self.queue.put(pending)
            answers = await pending.done
        finally:
            self.waiting -= len(texts)
        chats = [inst.messages is not None for inst in request.instances]
        return [
            (a._replace(text=a.text.strip()) if chat else a, n)
            for a, n, chat in zip(answers, lengths, chats, strict=True)
        ]

    async def next_group(self) -> list[Pending]:
        """The oldest waiting request and every later one that can share its generation;
        requests whose callers are gone (their futures cancelled) are dropped."""
        while True:
            if not self.backlog:
                self.backlog.append(await self.queue.get())
            while not self.queue.empty():
                self.backlog.append(self.queue.get_nowait())
            self.backlog = deque(p for p in self.backlog if not p.done.done())
            if self.backlog:
                break
        first = self.backlog.popleft()
        group, size, later = [first], len(first.texts), deque()
        for p in self.backlog:
            if p.parameters == first.parameters and size + len(p.texts) <= MAX_BATCH:
                group.append(p)
                size += len(p.texts)
            else:
                later.append(p)
        self.backlog = later
        return group

    def generate_all(
        self, texts: list[str], lengths: list[int], params: Parameters
    ) -> list[Generated]:
        """Answers to `texts` in their order, generated in batches of similar lengths that
        the token budget holds (at most MAX_BATCH rows each)."""
        answers = [Generated("", 0)] * len(texts)
        for group in batches(lengths, self.budget, params.max_new_tokens):
            for start in range(0, len(group), MAX_BATCH):
                rows = group[start : start + MAX_BATCH]
                generated = generate(
                    self.model,
                    self.tokenizer,
                    [texts[i] for i in rows],
                    params.max_new_tokens,
                    self.device,
                    params.temperature,
                    params.top_p,
                )
                for i, answer in zip(rows, generated, strict=True):
                    answers[i] = answer
        return answers

    async def answer(self, group: list[Pending]) -> None:
        """Generate `group` together and settle each request's future."""
        loop = asyncio.get_running_loop()
        texts = [t for p in group for t in p.texts]
        lengths = [n for p in group for n in p.lengths]
        run = partial(self.generate_all, texts, lengths, group[0].parameters)
        try:
            answers = await loop.run_in_executor(None, run)
        except Exception as exc:  # fails its requests, not the server
            failure = f"{type(exc).__name__}: {exc}"
        else:
            self.batches += 1
            start = 0
            for p in group:
                if not p.done.done():  # its caller may have gone
                    p.done.set_result(answers[start : start + len(p.texts)])
                start += len(p.texts)
            return
        # Out of the except block: the traceback, and the tensors its frames held, are gone.
        self.recover()
        if len(group) > 1:  # which request was it? Each alone, so only that one fails.
            for p in group:
                await self.answer([p])
            return
        log.error(f"generation failed: {failure}")
        settle(group, GenerationFailed(failure))

    def recover(self) -> None:
        """After a failure (often out of memory): give the allocator's memory back, and
        raise DeviceLost if the device no longer works (a CUDA error sticks to the process).
        The failed generation's tensors are freed on a CPU too: its exception and traceback
        form reference cycles that only the collector breaks, and until then they hold them."""
        import gc

        gc.collect()
        if self.device.type != "cuda":
            return
        import torch

        try:
            torch.cuda.empty_cache()
            torch.cuda.synchronize(self.device)
        except Exception as exc:
            raise DeviceLost(f"the GPU failed ({type(exc).__name__}: {exc})") from None

    async def worker(self) -> None:
        """Answers groups until the device fails; then every waiting request gets a 503."""
        group: list[Pending] = []
        try:
            while True:
                group = await self.next_group()
                await self.answer(group)
        except DeviceLost as exc:
            self.stopped = f"{exc}; this replica no longer answers"
            log.error(self.stopped)
        except Exception as exc:  # a fault of the worker's own: nothing would answer
            self.stopped = f"the generation worker failed ({type(exc).__name__}: {exc})"
            log.error(self.stopped)
        finally:  # stopped, or cancelled as the server shuts down
            self.stopped = self.stopped or "the generation worker stopped"
            waiting = [*group, *self.backlog]
            while not self.queue.empty():
                waiting.append(self.queue.get_nowait())
            settle(waiting, WorkerStopped(self.stopped))


class DeviceLost(Exception):
    """The device failed beyond recovery (within the worker; callers see WorkerStopped)."""


def settle(requests: list[Pending], error: Exception) -> None:
    """Fail each request still waiting for its answer (a new error each, so that no two
    share a traceback)."""
    for p in requests:
        if not p.done.done():
            p.done.set_exception(type(error)(*error.args))


class BodyLimit:
    """413 for a body over `limit` bytes: by its Content-Length before anything is read, or,
    when the client sends none (chunked), as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self.too_large(scope, receive, send)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self.message)
            return message

        await self.app(scope, counted, send)

    @property
    def message(self) -> str:
        return f"request body over {self.limit:,} bytes"

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse({"error": self.message}, status_code=413)(scope, receive, send)


def model_folder(uri: str, scratch: Path) -> Path:
    """The checkpoint to serve: `merged/` inside a run's model folder, or the folder itself;
    a `gs://` folder is downloaded into `scratch` first."""
    if uri.startswith("gs://"):
        from droptune.cloud.gcs import download_prefix

        local = scratch
        download_prefix(uri, local)
    else:
        local = Path(uri)
    folder = local / "merged" if (local / "merged" / "config.json").is_file() else local
    if not (folder / "config.json").is_file():
        raise RunFolderError(
            f"{uri}: no checkpoint there (config.json); point AIP_STORAGE_URI at a run's "
            "model/ folder or a Hugging Face checkpoint folder"
        )
    return folder


def create_app(storage_uri: str | None = None) -> FastAPI:
    health_route = os.environ.get("AIP_HEALTH_ROUTE", "/health")
    predict_route = os.environ.get("AIP_PREDICT_ROUTE", "/predict")
    uri = storage_uri or os.environ.get("AIP_STORAGE_URI")
    if not uri:
        raise SystemExit("set AIP_STORAGE_URI to the model folder (local path or gs://)")

    # A downloaded copy is only read while the model loads: removed once it is in memory.
    scratch = tempfile.TemporaryDirectory(prefix="droptune-serve-")
    folder = model_folder(uri, Path(scratch.name))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.model = Model(folder)
        scratch.cleanup()
        app.state.worker = asyncio.create_task(app.state.model.worker())
        tuned = app.state.model.system
        opens = f"; chats without a system turn get the tuned one: {tuned!r}" if tuned else ""
        log.info(f"serving {uri} on {predict_route}{opens}")
        yield
        app.state.worker.cancel()

    app = FastAPI(title="droptune model", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's and routing's 404 and 405
    async def refused(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(WorkerStopped)
    async def stopped(request: Request, exc: WorkerStopped) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)

    @app.exception_handler(GenerationFailed)
    async def failed(request: Request, exc: GenerationFailed) -> JSONResponse:
        return JSONResponse({"error": f"generation failed: {exc}"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        ]
        return JSONResponse({"error": "; ".join(problems)}, status_code=400)

    @app.get(health_route)
    async def health(request: Request) -> JSONResponse:
        if request.app.state.worker.done():  # nothing would answer a prediction
            why = request.app.state.model.stopped or "generation worker stopped"
            return JSONResponse({"status": why}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.post(predict_route)
    async def predict(body: PredictRequest, request: Request) -> dict[str, Any]:
        answers = await request.app.state.model.predict(body)
        metadata: dict[str, Any] = {
            "usage": [{"inputTokens": n, "outputTokens": a.tokens} for a, n in answers]
        }
        if any(a.reasoning for a, _ in answers):
            metadata["reasoning"] = [a.reasoning for a, _ in answers]
        return {"predictions": [a.text for a, _ in answers], "metadata": metadata}

    return app


def main() -> None:
    import uvicorn

    port = int(os.environ.get("AIP_HTTP_PORT", "8080"))
    uvicorn.run(create_app(), host="0.0.0.0", port=port, log_level="warning")
