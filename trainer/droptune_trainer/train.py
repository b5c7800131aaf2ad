"""The training recipe: setup, train, save. One screen each, nothing hidden behind a framework.

    python -m droptune_trainer train --run-dir runs/chat-1700000000123456-6d4ec4d5
    python -m droptune_trainer train --run-dir gs://RUNS/runs/ID --set learning_rate=1e-4

Settings the run leaves unset (passes, batch, learning rate, evaluation, early stopping) are
sized to the data once it is tokenized (`droptune.sizing`), and `training/metrics.json`
records each with why (`chosen`). Loss is a sum over label tokens divided by the label
tokens of the whole optimizer step, so gradient accumulation over rows of different sizes
weighs every token the same. Logits are computed only where a label is (`logits_to_keep`):
with assistant-only loss that is a small share of the rows, and the vocabulary-sized logits
are most of the memory. While it trains, a progress line is logged at least every 15 s.
"""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import nullcontext
from copy import copy
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from droptune import sizing
from droptune.errors import ConfigError
from droptune.log import get_logger, labelled
from droptune.models import locate
from droptune_trainer import attention, checkpoint, cluster, precision, qlora, system_turn
from droptune_trainer.config import TrainConfig, from_run_config
from droptune_trainer.data import (
    IGNORE,
    Example,
    Row,
    collate,
    epoch_order,
    pack,
    pad_rows,
    read_run,
    read_split,
    refuse_what_the_template_drops,
    run_id_of,
    to_device,
    tokenize,
)
from droptune_trainer.generation import name_the_ends
from droptune_trainer.report import (
    Progress,
    heartbeat,
    log_step,
    peak_memory_mb,
    tensorboard_writer,
    write_training_metrics,
)
from droptune_trainer.vertex import Place, env_uri, local_run_dir, publish_results, run_output

log = get_logger("droptune.trainer")


@dataclass
class Setup:
    config: TrainConfig
    run_dir: Path
    device: torch.device
    dtype: torch.dtype
    tokenizer: Any
    model: Any
    train_rows: list[Row]
    eval_rows: list[Row]
    model_out: Place
    checkpoints: Place
    tensorboard: Place | None
    group: cluster.Group = field(default_factory=cluster.Group)
    unquantized: bool = False  # QLoRA: the model is the unquantized base with the adapter
    plan: sizing.Plan | None = None  # what was sized to the data, and why
    progress: Progress | None = None  # the progress lines' state, while training runs


@dataclass
class History:
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    eval_loss: list[tuple[int, float]] = field(default_factory=list)
    learning_rate: list[tuple[int, float]] = field(default_factory=list)
    best_eval: float = math.inf
    evals_without_gain: int = 0
    label_tokens: int = 0
    tokens: int = 0
    seconds: float = 0.0
    resumed_from: int | None = None
    stopped_early: bool = False
    step_end: list[tuple[float, int]] = field(default_factory=list)  # (seconds, tokens) so far
    peak_memory_mb: float = 0.0  # read when training ends, before the evaluation adds its own
    master_weights: bool = False  # the optimizer stepped fp32 copies of low-precision weights


# --- setup --------------------------------------------------------------------------------
def load_config(
    run_dir: Path, recipe: dict[str, Any] | None, overrides: dict[str, Any]
) -> TrainConfig:
    from_run = from_run_config(read_run(run_dir)["config"])
    return TrainConfig.from_mapping(
        {**from_run, **(recipe or {}), **overrides}, source="the training config"
    )


def load_base(config: TrainConfig) -> tuple[str, dict[str, Any]]:
    """Where the base model loads from, and the keyword arguments that file needs."""
    files = locate(config.base_model)
    return files.location, ({"gguf_file": files.gguf_file} if files.gguf_file else {})


def load_tokenizer(config: TrainConfig) -> Any:
    from transformers import AutoTokenizer

    location, kwargs = load_base(config)
    tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(config: TrainConfig, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(config)
    location, kwargs = load_base(config)
    if config.method == "qlora":
        kwargs |= qlora.quantization(device, dtype)
    model = precision.contiguous_head_input(
        AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **kwargs)
    )
    if config.method == "full":
        return tokenizer, model.to(device)
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.method == "qlora":
        model = prepare_model_for_kbit_training(model)
    targets = (
        config.target_modules
        if config.target_modules == "all-linear"
        else config.target_modules.split(",")
    )
    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=targets, task_type="CAUSAL_LM",
    )  # fmt: skip
    return tokenizer, get_peft_model(model, lora).to(device)


def device_and_dtype(config: TrainConfig, local_rank: int = 0) -> tuple[torch.device, torch.dtype]:
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    on_cpu = device.type == "cpu" and config.cpu_bf16 and precision.cpu_bf16()
    bf16 = config.bf16 and (precision.native_bf16(device) or on_cpu)
    return device, torch.bfloat16 if bf16 else torch.float32


def examples_for(
    config: TrainConfig, tokenizer: Any, records: list[dict[str, Any]]
) -> list[Example]:
    refuse_what_the_template_drops(tokenizer, records, config.base_model)
    tokenized = tokenize(tokenizer, records, config.max_length, config.assistant_only_loss)
    if tokenized.whole_sequence_loss:
        log.warning(
            f"{tokenized.whole_sequence_loss} example(s): the chat template renders no stable prefixes; learning every token of those"
        )
    return tokenized.examples


def rows_of(config: TrainConfig, examples: list[Example]) -> list[Row]:
    if config.packing:
        return pack(examples, config.tokens_per_batch)
    return pad_rows(examples, config.tokens_per_batch)


def base_parameters(model: Any) -> int:
    """The base model's parameters (adapters left out), from the weights as they load."""
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)


def size_to_data(
    config: TrainConfig,
    examples: list[Example],
    model: Any,
    device: torch.device,
    dtype: torch.dtype,
    world: int,
) -> tuple[TrainConfig, sizing.Plan]:
    """The config with what it left unset sized to the training examples, and the plan that
    says why. Several processes each take a share of a step's micro-batches."""
    lengths = [len(e.input_ids) for e in examples]
    plan = sizing.plan(
        len(examples),
        sum(lengths),
        max(lengths),
        model_params=base_parameters(model),
        method=config.method,
        device="cpu" if device.type == "cpu" else "gpu",
        dtype=str(dtype).removeprefix("torch."),
        settings=config.to_dict(),
    )
    accumulation = plan.gradient_accumulation
    if world > 1 and accumulation.auto:
        share = max(1, math.ceil(accumulation.value / world))
        accumulation = sizing.Choice(share, f"{accumulation.why}, shared by {world} processes")
        plan = replace(plan, gradient_accumulation=accumulation)
    resolved = copy(config)  # not re-checked: the plan sizes micro-batches to the data
    for key, value in plan.settings().items():
        setattr(resolved, key, value)
    if resolved.tokens_per_batch < max(lengths):
        raise ConfigError(
            f"tokens_per_batch ({resolved.tokens_per_batch}) is shorter than the longest "
            f"training example ({max(lengths)} tokens): raise it, or lower max_length"
        )
    return resolved, plan


def setup(
    run_dir: str,
    recipe: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    local: Path | None = None,
    group: cluster.Group | None = None,
) -> Setup:
    """Everything a training loop needs; `local` is the run folder on disk (`run` brings a
    `gs://` one there with `local_run_dir`), by default `run_dir` itself."""
    local = local or Path(run_dir)
    group = group or cluster.Group()
    config = load_config(local, recipe, overrides or {})
    torch.manual_seed(config.seed)
    device, dtype = device_and_dtype(config, group.local_rank)
    # Fully tuned weights are trained in fp32 under autocast (precision.py), then cast down.
    weights_dtype = torch.float32 if config.method == "full" else dtype
    tokenizer, model = load_model(config, device, weights_dtype)
    if config.packing:
        attention.install(model)
    train_examples = examples_for(config, tokenizer, read_split(local, "train", required=True))
    if not train_examples:
        raise ConfigError(f"{run_dir}: data/train.jsonl has no example with a label to learn")
    validation = examples_for(config, tokenizer, read_split(local, "validation"))
    config, plan = size_to_data(config, train_examples, model, device, dtype, group.world)
    return Setup(
        config=config,
        run_dir=local,
        device=device,
        dtype=dtype,
        tokenizer=tokenizer,
        model=model,
        train_rows=rows_of(config, train_examples),
        # the first ones: the split's order is already a hash's, independent of content
        eval_rows=rows_of(config, validation[: config.eval_examples]),
        model_out=run_output("AIP_MODEL_DIR", run_dir, local, "model"),
        checkpoints=run_output("AIP_CHECKPOINT_DIR", run_dir, local, "training/checkpoints"),
        tensorboard=(
            run_output("AIP_TENSORBOARD_LOG_DIR", run_dir, local, "training/tensorboard")
            if env_uri("AIP_TENSORBOARD_LOG_DIR")
            else None
        ),
        group=group,
        plan=plan,
    )


# --- the loop -------------------------------------------------------------------------------
def loss_sum(s: Setup, row: Row, module: Any = None) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the row's label tokens, and how many there were; `module`
    runs the forward pass (the data-parallel wrapper when training), `s.model` by default.
    What depends on the labels is worked out on the host, so the device is not waited for."""
    batch = collate(row, s.config.packing, s.tokenizer.pad_token_id)
    targets = batch.pop("labels")[:, 1:]
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(-1)  # positions with a label
    chosen = targets[:, keep]
    count = int((chosen != IGNORE).sum())
    batch = {k: to_device(v, s.device) for k, v in batch.items()}
    if s.config.packing and attention.installed(s.model):
        lengths = [len(e.input_ids) for e in row.examples]
        batch[attention.KWARG] = attention.documents(lengths, s.device)
    keep = to_device(keep, s.device)
    with precision.compute(s.config.method, s.dtype, s.device):
        logits = (module or s.model)(**batch, use_cache=False, logits_to_keep=keep).logits
    total = functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        to_device(chosen, s.device).reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return total, count


@torch.no_grad()
def evaluate_loss(s: Setup) -> float | None:
    """Validation loss per label token; each rank scores its share of the rows."""
    if not s.eval_rows:
        return None
    s.model.eval()
    total, count = 0.0, 0
    for row in s.eval_rows[s.group.rank :: s.group.world]:
        loss, n = loss_sum(s, row)
        total, count = total + float(loss), count + n
    s.model.train()
    total, count = s.group.sum([total, count], s.device)
    return total / max(count, 1)


def schedule(config: TrainConfig, total_steps: int) -> Any:
    warmup = int(total_steps * config.warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def accumulation(config: TrainConfig) -> int:
    """Micro-batches a process takes a step (1 for a Setup made by hand, with no plan)."""
    return config.gradient_accumulation or 1


def rows_of_step(s: Setup, step: int, rank: int | None = None) -> list[Row]:
    """A rank's micro-batches of optimizer step `step` (this process's by default). A step
    takes accumulation × world rows in the epoch's order and each rank every world-th of
    them, so that W processes with accumulation A follow the same path as one process with
    accumulation W × A."""
    per_epoch, world = len(s.train_rows), s.group.world
    rank = s.group.rank if rank is None else rank
    per_step = accumulation(s.config) * world
    rows = []
    for j in range(accumulation(s.config)):
        index = step * per_step + j * world + rank
        epoch, position = divmod(index, per_epoch)
        rows.append(s.train_rows[epoch_order(per_epoch, s.config.seed, epoch)[position]])
    return rows


def step_rows(s: Setup, step: int) -> list[Row]:
    """Every rank's rows of a step: each rank knows them, so a step's totals need no collective."""
    return [r for rank in range(s.group.world) for r in rows_of_step(s, step, rank)]


@dataclass(frozen=True)
class Lengths:
    """How long the loop runs, and how often it evaluates and checkpoints, in steps."""

    total: int
    eval_every: int
    checkpoint_every: int


def lengths(s: Setup) -> Lengths:
    config = s.config
    per_step = accumulation(config) * s.group.world
    steps_per_epoch = math.ceil(len(s.train_rows) / per_step)
    # Steps run on through epoch boundaries, so `epochs` passes take this many, no more.
    epochs = config.epochs or 1
    total = config.max_steps or max(1, math.ceil(epochs * len(s.train_rows) / per_step))
    return Lengths(
        total=total,
        eval_every=config.eval_every or steps_per_epoch,
        checkpoint_every=config.checkpoint_every or min(steps_per_epoch, total),
    )


def train(s: Setup) -> History:
    config, model = s.config, s.model
    length = lengths(s)
    total = length.total
    weights = precision.weights_for(model, s.dtype, config.method, config.master_weights)
    optimizer = torch.optim.AdamW(
        weights.trainable, lr=config.learning_rate or sizing.UNKNOWN_SIZE_RATE,
        weight_decay=config.weight_decay,
        fused=s.device.type == "cuda",  # one kernel for every parameter's update
    )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(config, total))
    history, start = History(), 0
    if s.checkpoints.fetch(checkpoint.LATEST):  # staged: bring the newest one down to resume
        newest = checkpoint.latest_name(s.checkpoints.local)
        if newest:
            s.checkpoints.fetch(newest)
    saved = checkpoint.load_latest(s.checkpoints.local)
    if saved is not None:
        checkpoint.restore(saved, weights, optimizer, scheduler)
        history = History(**{**saved["loop"], "resumed_from": saved["step"]})
        start = saved["step"]
        log.info(f"resumed from the checkpoint at step {start}", step=start)
        if history.stopped_early:  # that run had ended; it stopped before saving the model
            total = start
    history.master_weights = isinstance(weights, precision.Masters)
    writer = tensorboard_writer(s) if s.group.primary else None
    module = weights.wrap(s.group, s.device)  # what runs forward and backward
    if s.group.primary:
        s.progress = Progress(total, sum(r.tokens for t in range(total) for r in step_rows(s, t)))
        s.progress.resume(start, history.tokens)
    model.train()
    started = time.perf_counter() - history.seconds
    with heartbeat(s.progress):
        for step in range(start, total):
            label_tokens, tokens, step_loss = train_step(s, step, module, weights)
            optimizer.step()
            rate = scheduler.get_last_lr()[0]  # the rate this step was taken with
            scheduler.step()
            weights.after_step(optimizer)
            done = step + 1
            history.label_tokens += int(label_tokens)
            history.tokens += int(tokens)
            history.seconds = time.perf_counter() - started
            history.step_end.append((history.seconds, history.tokens))
            history.train_loss.append((done, step_loss / max(label_tokens, 1)))
            history.learning_rate.append((done, rate))
            if s.progress is not None:
                s.progress.advance(done, 0, history.train_loss[-1][1])
            log_step(writer, history, done)
            if done % length.eval_every == 0 or done == total:
                improved = record_eval(s, history, done, writer)
                patience = config.early_stopping_patience or 0
                history.stopped_early = not improved and 0 < patience <= history.evals_without_gain
            due = done % length.checkpoint_every == 0 or done == total or history.stopped_early
            if due and s.group.primary:
                save_checkpoint(s, done, history, weights, optimizer, scheduler)
            if history.stopped_early:
                log.info(
                    f"early stop at step {done}: no better validation loss in {history.evals_without_gain} evaluations"
                )
                break
    weights.restore()  # evaluation and saving see the weights as the model made them
    if writer is not None:
        writer.close()
        s.tensorboard.publish()
    history.peak_memory_mb = peak_memory_mb()
    return history


def train_step(s: Setup, step: int, module: Any, weights: Any) -> tuple[int, int, float]:
    """Forward and backward over this process's micro-batches of `step`, the gradients in
    `weights`, clipped: (label tokens, tokens, summed loss) of every rank's rows."""
    rows = rows_of_step(s, step)
    everyone = step_rows(s, step)
    label_tokens = sum(row.label_tokens for row in everyone)
    tokens = sum(row.tokens for row in everyone)
    # Gradients are averaged over ranks: scaled by world, each step is the loss summed
    # over every rank's label tokens divided by their count, as in one process.
    scale = s.group.world / max(label_tokens, 1)
    summed = torch.zeros((), device=s.device)  # read once a step: one device sync
    weights.begin_step()
    for i, row in enumerate(rows):
        last = i == len(rows) - 1
        with nullcontext() if last or module is s.model else module.no_sync():
            loss, _ = loss_sum(s, row, module)
            (loss * scale).backward()
        weights.take_gradients()
        summed += loss.detach()
        del loss  # its graph is freed by backward; the next micro-batch starts clean
        if s.progress is not None:  # the other ranks' rows take as long, side by side
            s.progress.advance(step, row.tokens * s.group.world)
    step_loss = s.group.sum([float(summed)], s.device)[0]
    weights.end_step(s.group)
    torch.nn.utils.clip_grad_norm_(weights.trainable, 1.0)
    return label_tokens, tokens, step_loss


def save_checkpoint(
    s: Setup, done: int, history: History, weights: Any, optimizer: Any, scheduler: Any
) -> None:
    loop = {k: v for k, v in history.__dict__.items() if k != "resumed_from"}
    saved_to = checkpoint.save(
        s.checkpoints.local, done, weights.state(), optimizer, scheduler, loop
    )
    checkpoint.prune(s.checkpoints.local, s.config.keep_checkpoints)
    s.checkpoints.publish(saved_to.name, checkpoint.LATEST)  # the pointer last
    # staged: the bucket keeps no more either, earlier attempts' checkpoints included
    published = s.checkpoints.published_folders()
    s.checkpoints.remove(*checkpoint.stale(published, s.config.keep_checkpoints))


def record_eval(s: Setup, history: History, step: int, writer: Any) -> bool:
    """Evaluate; True when the validation loss improved (or there is no validation split)."""
    if s.progress is not None:
        s.progress.enter("validating")
    loss = evaluate_loss(s)
    if s.progress is not None:
        s.progress.enter("training")
    if loss is None:
        return True
    history.eval_loss.append((step, loss))
    if writer is not None:
        writer.add_scalar("eval/loss", loss, step)
    log.info(f"step {step}: validation loss {loss:.4f}", step=step)
    if loss < history.best_eval:
        history.best_eval, history.evals_without_gain = loss, 0
        return True
    history.evals_without_gain += 1
    return False


# --- save ---------------------------------------------------------------------------------
def save_trained(s: Setup) -> None:
    """What training made, published before anything else is tried (evaluation can fail:
    `python -m droptune_trainer evaluate` then runs it again): the adapter, or the fully
    tuned model with its tokenizer. QLoRA's adapter was published by `unquantize`."""
    out = s.model_out.local
    out.mkdir(parents=True, exist_ok=True)
    if s.config.method == "full":
        save_merged(s, s.model)
    elif s.config.method == "lora":
        s.model.save_pretrained(out / "adapter", safe_serialization=True)
        s.model_out.publish("adapter")


def save_model(s: Setup) -> None:
    """The merged model beside the adapter (the fully tuned one is saved already)."""
    if s.config.method == "full":
        return
    if s.config.method == "qlora" and not s.unquantized:
        adapter = s.model_out.local / "adapter"
        merged = qlora.merged_on_cpu(adapter, partial(base_model, s.config), s.dtype)
    elif is_merged(s.model):  # by the evaluation, in place: the adapters only come off
        merged = s.model.unload()
    else:
        merged = s.model.merge_and_unload()
    save_merged(s, merged)


def is_merged(model: Any) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) and m.merged for m in model.modules())


def save_merged(s: Setup, model: Any) -> None:
    """`model` as model/merged with its tokenizer, stopping where tuning taught it to."""
    folder = s.model_out.local / "merged"
    name_the_ends(model, s.tokenizer)
    model.save_pretrained(folder, safe_serialization=True)
    s.tokenizer.save_pretrained(folder)
    system_turn.save(folder, s.run_dir)  # droptune.json: the server opens chats with it
    s.model_out.publish("merged")


def base_model(
    config: TrainConfig, device: torch.device, dtype: torch.dtype, quantized: bool = False
) -> Any:
    """The base model in `dtype` (in 4 bits with `quantized`): full tuning's baseline."""
    from transformers import AutoModelForCausalLM

    location, kwargs = load_base(config)
    if quantized:  # placed on the device by bitsandbytes as it loads
        kwargs |= qlora.quantization(device, dtype) | {"device_map": {"": device}}
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **kwargs)
        return precision.contiguous_head_input(model)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **kwargs)
    return precision.contiguous_head_input(model).to(device)


def tuned_in_full(folder: Path, device: torch.device, dtype: torch.dtype) -> Any:
    """A fully tuned model saved in `folder` (model/merged)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    return precision.contiguous_head_input(model).to(device)


def base_with_adapter(
    config: TrainConfig, adapter: Path, device: torch.device, dtype: torch.dtype
) -> Any:
    """The base model in `dtype`, never quantized, with the saved `adapter` on top."""
    return qlora.with_adapter(base_model(config, device, dtype), adapter)


def unquantize(s: Setup) -> None:
    """A QLoRA run evaluates and merges its adapter on the unquantized base (qlora.py)."""
    adapter = s.model_out.local / "adapter"
    s.model.save_pretrained(adapter, safe_serialization=True)
    s.model_out.publish("adapter")  # the run's result is safe before anything else is tried
    s.model = None  # the only reference to the 4-bit model: its memory can go
    s.model, s.unquantized = qlora.unquantize(
        adapter, partial(base_model, s.config), s.device, s.dtype
    )


def run(
    run_dir: str, recipe: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Setup, train, save: what `python -m droptune_trainer train` does. Every line it logs
    carries the run's id as a label, so Cloud Logging filters the job's lines by run."""
    group = cluster.join(os.environ)
    if not group.primary:  # rank 0 tells the story; the others say only what goes wrong
        logging.getLogger("droptune.trainer").setLevel(logging.WARNING)
    labels = {"rank": str(group.rank)} if group.world > 1 else {}
    with local_run_dir(run_dir) as local, labelled(run_id=run_id_of(local), **labels):
        s = setup(run_dir, recipe, overrides, local, group)
        try:
            log_plan(s)
            history = train(s)
            cluster.leave(group)  # the rest is rank 0's alone
            if not group.primary:
                return {"rank": group.rank}
            metrics = write_training_metrics(s, history)
            if s.config.method == "qlora":
                unquantize(s)
            save_trained(s)
            if s.progress is not None:
                s.progress.enter("evaluating")
            with heartbeat(s.progress):
                evaluation = evaluate_tuned(s)  # before save_model(): it unloads the adapters
            save_model(s)
            publish_results(run_dir, s.run_dir, "training", "evaluation")
        finally:
            for staged in (s.model_out, s.checkpoints, s.tensorboard):
                if staged is not None:
                    staged.discard()
        log.info(f"trained {metrics['steps']} steps; {metrics['tokens_per_second']:.0f} tokens/s")
    return {**metrics, "evaluation": evaluation}


def log_plan(s: Setup) -> None:
    """What training will do, each sized setting with its reason as a field of the line."""
    config, plan = s.config, s.plan
    length = lengths(s)
    log.info(
        f"training {config.base_model} ({config.method}) on {len(s.train_rows)} rows, "
        f"{s.device.type} x {s.group.world}: {length.total} steps of "
        f"{accumulation(config)} x {config.tokens_per_batch} tokens, "
        f"{config.epochs if config.epochs is not None else '-'} passes, "
        f"learning rate {config.learning_rate:g}",
        steps=length.total,
        chosen=plan.to_dict() if plan else None,
    )


def evaluate_tuned(s: Setup) -> dict[str, Any] | None:
    from droptune_trainer.evaluate import evaluate

    if not s.config.evaluate_at_end or not (s.run_dir / "data" / "test.jsonl").is_file():
        return None
    baseline = base_model(s.config, s.device, s.dtype) if s.config.method == "full" else None
    try:
        return evaluate(
            s.model,
            s.tokenizer,
            s.run_dir,
            s.device,
            baseline_model=baseline,
            max_new_tokens=s.config.eval_max_new_tokens,
            # merged as it is served: not a QLoRA model that stayed in 4 bits (qlora.py)
            merge=s.config.method == "lora" or s.unquantized,
        )
    except Exception:
        try:  # the merged model too, the one a deployment serves
            save_model(s)
        except Exception as exc:
            log.error(f"the merged model could not be saved either: {type(exc).__name__}: {exc}")
        log.error(
            f"the evaluation failed; the tuned model is saved in {s.model_out.uri}: "
            "`python -m droptune_trainer evaluate --run-dir RUN` runs the evaluation again"
        )
        raise
