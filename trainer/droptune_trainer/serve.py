"""Serving on Vertex AI's custom-container contract (FastAPI + uvicorn).

    python -m droptune_trainer serve            # AIP_STORAGE_URI=gs://RUNS/runs/ID/model

- `AIP_HTTP_PORT` (8080), `AIP_HEALTH_ROUTE` (/health), `AIP_PREDICT_ROUTE` (/predict);
  the model comes from `AIP_STORAGE_URI` (a `gs://` folder is downloaded first, a local path
  is used as it is): the tuned `merged/` checkpoint of a run, or any plain checkpoint.
- `POST {"instances": [{"messages": [...]} | {"prompt": "raw text"}], "parameters":
  {"max_new_tokens", "temperature", "top_p"}}` answers `{"predictions": [text, ...],
  "metadata": {"usage": [{"inputTokens", "outputTokens"}, ...]}}` (Vertex passes `metadata`
  on; callers that count cost read it, the rest ignore it). `messages` are rendered with the model's chat template; a `prompt` is continued as it is.
- Requests that arrive together are generated together: a worker takes what is queued
  (up to `MAX_BATCH` instances with the same parameters) and runs one batched generation,
  so concurrent callers share the model instead of waiting in line.
- A malformed body is a 400 that says what is wrong; bodies over 1.5 MB (Vertex's online
  prediction limit) are refused with a 413 before they are parsed.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from droptune.log import get_logger
from droptune_trainer.errors import RunFolderError
from droptune_trainer.generation import generate, render

log = get_logger("droptune.serve")
MAX_BODY_BYTES = 1_500_000
MAX_BATCH = 16
MAX_NEW_TOKENS = 2048


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None


class Instance(BaseModel):
    messages: list[Message] | None = None
    prompt: str | None = None

    @model_validator(mode="after")
    def one_of(self) -> Instance:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError('give exactly one of "messages" (a chat) or "prompt" (raw text)')
        if self.messages is not None and not self.messages:
            raise ValueError('"messages" is empty')
        return self


class Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int = Field(256, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)


class PredictRequest(BaseModel):
    instances: list[Instance] = Field(min_length=1, max_length=256)
    parameters: Parameters = Field(default_factory=Parameters)


@dataclass
class Pending:
    texts: list[str]
    parameters: Parameters
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Model:
    """A checkpoint on a device, and the queue that batches requests for it."""

    def __init__(self, folder: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = (
            AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(self.device).eval()
        )
        self.queue: asyncio.Queue[Pending] = asyncio.Queue()
        self.batches = 0  # generations run, for tests and logs

    async def predict(self, request: PredictRequest) -> list[tuple[str, int, int]]:
        """(text, input tokens, output tokens) of each instance."""
        texts = [
            inst.prompt
            if inst.prompt is not None
            else render(self.tokenizer, [m.model_dump(exclude_none=True) for m in inst.messages])
            for inst in request.instances
        ]
        pending = Pending(texts, request.parameters)
        await self.queue.put(pending)
        answers = await pending.done
        return [
            (text, len(self.tokenizer(prompt, add_special_tokens=False).input_ids), out)
            for prompt, (text, out) in zip(texts, answers, strict=True)
        ]

    async def worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = [await self.queue.get()]
            size = len(group[0].texts)
            while not self.queue.empty() and size < MAX_BATCH:
                candidate = self.queue.get_nowait()
                if (
                    candidate.parameters != group[0].parameters
                    or size + len(candidate.texts) > MAX_BATCH
                ):
                    await self.queue.put(candidate)  # its turn comes with the next batch
                    break
                group.append(candidate)
                size += len(candidate.texts)
            texts = [t for p in group for t in p.texts]
            params = group[0].parameters
            try:
                run = partial(
                    generate,
                    self.model,
                    self.tokenizer,
                    texts,
                    params.max_new_tokens,
                    self.device,
                    params.temperature,
                    params.top_p,
                )
                answers = await loop.run_in_executor(None, run)
            except Exception as exc:  # a failed generation fails its requests, not the server
                for p in group:
                    p.done.set_exception(exc)
                continue
            self.batches += 1
            start = 0
            for p in group:
                p.done.set_result(answers[start : start + len(p.texts)])
                start += len(p.texts)


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
        task = asyncio.create_task(app.state.model.worker())
        log.info(f"serving {uri} on {predict_route}")
        yield
        task.cancel()

    app = FastAPI(title="droptune model", lifespan=lifespan)

    @app.middleware("http")
    async def cap_body(request: Request, call_next: Any) -> Any:
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            return JSONResponse(
                {"error": f"request body over {MAX_BODY_BYTES:,} bytes"}, status_code=413
            )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        ]
        return JSONResponse({"error": "; ".join(problems)}, status_code=400)

    @app.get(health_route)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(predict_route)
    async def predict(body: PredictRequest, request: Request) -> dict[str, Any]:
        answers = await request.app.state.model.predict(body)
        return {
            "predictions": [text for text, _, _ in answers],
            "metadata": {"usage": [{"inputTokens": i, "outputTokens": o} for _, i, o in answers]},
        }

    return app


def main() -> None:
    import uvicorn

    port = int(os.environ.get("AIP_HTTP_PORT", "8080"))
    uvicorn.run(create_app(), host="0.0.0.0", port=port, log_level="warning")
