"""Training on CPU with the real SmolLM2-135M: weights change, loss falls, a killed job
resumes from its checkpoint, and the merged model reloads and generates."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from droptune_trainer.config import TrainConfig
from droptune_trainer.train import base_with_adapter, run, setup
from safetensors.torch import load_file

from droptune.errors import ConfigError
from tests.trainer.conftest import FAST, VERTEX_ENV, make_run_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pulled_model: Path) -> tuple[Path, dict]:
    """One six-step run, whose outputs the tests that only read them share."""
    run_dir = make_run_dir(tmp_path_factory.mktemp("trained"))
    with pytest.MonkeyPatch.context() as env:
        for name in VERTEX_ENV:
            env.delenv(name, raising=False)
        metrics = run(str(run_dir), overrides={**FAST, "max_steps": 6})
    return run_dir, metrics


def test_a_few_steps_change_the_adapter_and_lower_the_loss(trained: tuple[Path, dict]):
    run_dir, metrics = trained
    losses = [loss for _, loss in metrics["train_loss"]]
    assert len(losses) == 6 and losses[-1] < losses[0] * 0.8
    assert metrics["eval_loss"][-1][1] < metrics["eval_loss"][0][1]
    adapter = load_file(run_dir / "model" / "adapter" / "adapter_model.safetensors")
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert lora_b and any(float(t.abs().max()) > 0 for t in lora_b)  # B starts at zero
    assert (run_dir / "training" / "loss.png").stat().st_size > 1000
    saved = json.loads((run_dir / "training" / "metrics.json").read_text())
    assert saved["steps"] == 6 and saved["tokens_per_second"] > 0 and saved["peak_memory_mb"] > 0
    assert (saved["dtype"], saved["master_weights"]) == ("float32", False)  # a CPU computes fp32


def test_the_merged_model_reloads_and_generates(trained: tuple[Path, dict]):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = trained[0] / "model" / "merged"
    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_the_saved_adapter_on_its_base_is_the_merged_model(trained: tuple[Path, dict]):
    """What a QLoRA run evaluates and merges once training is done (its 4-bit base cannot
    take the update), and what `evaluate` loads: on a LoRA run, the weights it merged."""
    run_dir = trained[0]
    adapter = run_dir / "model" / "adapter"
    reloaded = base_with_adapter(TrainConfig(), adapter, torch.device("cpu"), torch.float32)
    state = reloaded.merge_and_unload().state_dict()
    saved = load_file(run_dir / "model" / "merged" / "model.safetensors")
    assert saved.keys() <= state.keys()
    for name, weight in saved.items():
        torch.testing.assert_close(state[name], weight, rtol=0, atol=1e-6, msg=name)


def test_qlora_falls_back_to_the_4_bit_model_when_the_base_does_not_fit(
    trained: tuple[Path, dict], caplog
):
    """What the GPU would do with a base too large for it unquantized (bitsandbytes is not
    needed here: the loader is the test's): evaluate on the 4-bit model, said in the log."""
    import weakref

    from droptune_trainer import qlora
    from droptune_trainer.train import base_model

    adapter = trained[0] / "model" / "adapter"
    asked, half_moved = [], []

    class Moving:  # the base whose .to(device) ran out of memory half-way
        def to(self, device):
            raise torch.OutOfMemoryError("CUDA out of memory")

    def load_base(device, dtype, quantized):
        asked.append(quantized)
        if not quantized:
            base = Moving()
            half_moved.append(weakref.ref(base))
            return base.to(device)  # the traceback holds `base` while the error is handled
        assert half_moved[0]() is None, "the half-moved model is still held"
        return base_model(TrainConfig(), device, dtype)  # stands in for the 4-bit one

    model, unquantized = qlora.unquantize(adapter, load_base, torch.device("cpu"), torch.float32)
    assert asked == [False, True] and not unquantized
    assert hasattr(model, "disable_adapter")  # the adapter is on: the evaluation can compare
    assert "does not fit on the GPU" in caplog.text


def test_a_killed_job_resumes_from_its_last_checkpoint(run_dir: Path):
    args = [sys.executable, "-m", "droptune_trainer", "train", "--run-dir", str(run_dir)]
    settings = {**FAST, "max_steps": 6, "checkpoint_every": 2, "eval_max_new_tokens": 4}
    args += [f"--set={k}={v}" for k, v in settings.items()]
    job = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = run_dir / "training" / "checkpoints"
    deadline = time.monotonic() + 300
    while not (checkpoints / "latest").exists():
        assert job.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.2)
    job.send_signal(signal.SIGKILL)  # as a preempted VM: no cleanup
    job.wait()
    first = (checkpoints / "latest").read_text().strip()
    assert not (run_dir / "training" / "metrics.json").exists()
    finished = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    metrics = json.loads((run_dir / "training" / "metrics.json").read_text())
    assert metrics["steps"] == 6
    assert metrics["resumed_from"] == int(first.removeprefix("step-"))
    assert [step for step, _ in metrics["train_loss"]] == list(range(1, 7))
    assert_every_line_labelled(finished.stderr, run_id="test")


def test_unknown_setting_and_qlora_on_cpu_are_clear_errors(run_dir: Path):
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        setup(str(run_dir), overrides={"learning_rte": 1})
    with pytest.raises(
        ConfigError, match=r"gradient_accumulation must be at least 1 \(or unset\); got -1"
    ):
        setup(str(run_dir), overrides={"gradient_accumulation": -1})
    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        setup(str(run_dir), overrides={"method": "qlora"})


def test_training_ends_with_an_evaluation_of_base_and_tuned(trained: tuple[Path, dict]):
    import csv

    run_dir, metrics = trained
    saved = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert saved == metrics["evaluation"]
    assert saved["split"] == "test" and saved["n"] == 2
    for key in ("baseline", "tuned", "delta", "ci95"):
        assert {"exact_match", "rouge_l", "mean_output_tokens"} <= saved[key].keys()
    assert {"metric", "min_delta", "passed", "reason"} <= saved["gate"].keys()
    with (run_dir / "evaluation" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert {
        "user_input",
        "reference",
        "baseline_response",
        "tuned_response",
        "tuned_rouge_l",
    } <= rows[0].keys()
    assert all(0 < float(r["baseline_output_tokens"]) <= 16 for r in rows)
    # One report, rendered after training/metrics.json was written: it shows the training.
    assert "<h2>Training</h2>" in (run_dir / "evaluation" / "report.html").read_text()


def test_evaluate_command_loads_the_saved_adapter(trained: tuple[Path, dict], tmp_path: Path):
    run_dir = tmp_path / "run"  # the trained run without its evaluation, merged model, checkpoints
    skip = {"evaluation", "merged", "checkpoints"}
    shutil.copytree(trained[0], run_dir, ignore=lambda _, names: skip & set(names))
    result = subprocess.run(
        [sys.executable, "-m", "droptune_trainer", "evaluate", "--run-dir", str(run_dir), "--set=eval_max_new_tokens=16"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "evaluation" / "metrics.json").read_text())["n"] == 2
    assert_every_line_labelled(result.stderr, run_id="test")


def test_the_merged_model_stops_where_tuning_taught_it(trained: tuple[Path, dict]):
    merged = trained[0] / "model" / "merged"
    config = json.loads((merged / "generation_config.json").read_text())
    ends = config["eos_token_id"]
    assert 2 in (ends if isinstance(ends, list) else [ends])  # SmolLM2's <|im_end|>


def test_a_failed_evaluation_leaves_the_tuned_model_saved(
    tmp_path: Path, tiny_model: Path, monkeypatch, caplog
):
    def fails(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr("droptune_trainer.evaluate.evaluate", fails)
    run_dir = make_run_dir(tmp_path)
    overrides = {**FAST, "base_model": str(tiny_model), "max_steps": 2}
    with pytest.raises(RuntimeError, match="out of memory"):
        run(str(run_dir), overrides=overrides)
    assert (run_dir / "model" / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "model" / "merged" / "model.safetensors").is_file()  # what is served
    assert "droptune_trainer evaluate --run-dir" in caplog.text


def test_a_fully_tuned_model_is_evaluated_again_by_the_evaluate_command(
    tmp_path: Path, tiny_model: Path
):
    from droptune_trainer.__main__ import evaluate

    run_dir = make_run_dir(tmp_path)
    overrides = {**FAST, "base_model": str(tiny_model), "method": "full", "max_steps": 2}
    first = run(str(run_dir), overrides=overrides)["evaluation"]
    shutil.rmtree(run_dir / "evaluation")
    settings = [f"{key}={value}" for key, value in overrides.items()]
    evaluate(run_dir=str(run_dir), set_=settings)
    again = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert again["n"] == first["n"] == 2
    assert again["tuned"]["rouge_l"] == first["tuned"]["rouge_l"]  # the same model, greedy


def test_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path: Path, run_dir: Path):
    from droptune_trainer.errors import RunFolderError

    tmp_path = tmp_path / "not-a-run"  # run_dir lives in the test's tmp_path itself
    tmp_path.mkdir()
    with pytest.raises(RunFolderError, match=r"run.json: no such file; pass a run folder"):
        setup(str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "droptune_trainer", "train", "--run-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "no such file" in result.stderr
    assert "Traceback" not in result.stderr
    train = run_dir / "data" / "train.jsonl"
    train.write_text(train.read_text() + "{broken\n")
    lines = len(train.read_text().splitlines())
    with pytest.raises(RunFolderError, match=rf"train.jsonl:{lines}: not JSON"):
        setup(str(run_dir))


def test_a_gs_run_folder_gets_its_results_and_the_runs_settings_apply(
    run_dir: Path, gcs_bucket, monkeypatch, tmp_path: Path
):
    record = json.loads((run_dir / "run.json").read_text())
    short = {"max_steps": 1, "keep_checkpoints": 1, "eval_max_new_tokens": 4}
    record["config"]["training"] = {**FAST, **short}
    record["config"]["gate"] = {"metric": "rouge_l", "min_delta": 5}
    prefix = "runs/remote"
    gcs_bucket.blob(f"{prefix}/run.json").upload_from_string(json.dumps(record))
    for path in (run_dir / "data").rglob("*.jsonl"):
        gcs_bucket.blob(f"{prefix}/{path.relative_to(run_dir)}").upload_from_filename(path)
    monkeypatch.setenv("AIP_MODEL_DIR", f"gs://{gcs_bucket.name}/{prefix}/model/")
    scratch = tmp_path / "scratch"  # where the job stages what it uploads
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))

    run(f"gs://{gcs_bucket.name}/{prefix}")

    def read(name: str) -> dict:
        return json.loads(gcs_bucket.blob(f"{prefix}/{name}").download_as_bytes())

    assert read("training/metrics.json")["steps"] == 1
    gate = read("evaluation/metrics.json")["gate"]
    assert gate["metric"] == "rouge_l" and gate["min_delta"] == 5 and not gate["passed"]
    names = {b.name for b in gcs_bucket.list_blobs(prefix=prefix)}
    assert {f"{prefix}/evaluation/predictions.csv", f"{prefix}/training/loss.png"} <= names
    assert f"{prefix}/model/adapter/adapter_model.safetensors" in names
    assert f"{prefix}/training/checkpoints/latest" in names  # in the run folder, to resume from
    assert not staged(scratch), "staged copies are removed once uploaded"

    # A restarted job (no /gcs/ mount) brings its newest checkpoint down and goes on from it,
    # and prunes the bucket's checkpoints, also those it did not bring down.
    older = f"{prefix}/training/checkpoints/step-00000000/state.pt"
    gcs_bucket.blob(older).upload_from_string(b"an earlier attempt's checkpoint")
    run(f"gs://{gcs_bucket.name}/{prefix}", overrides={"max_steps": 2})
    metrics = read("training/metrics.json")
    assert metrics["steps"] == 2 and metrics["resumed_from"] == 1
    assert not staged(scratch)
    kept = {b.name for b in gcs_bucket.list_blobs(prefix=f"{prefix}/training/checkpoints/step-")}
    assert kept == {f"{prefix}/training/checkpoints/step-00000002/state.pt"}  # keep_checkpoints

    # `evaluate` fetches the adapter from AIP_MODEL_DIR.
    blob = gcs_bucket.blob(f"{prefix}/evaluation/metrics.json")
    blob.delete()
    result = subprocess.run(
        [sys.executable, "-m", "droptune_trainer", "evaluate", "--run-dir", f"gs://{gcs_bucket.name}/{prefix}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert read("evaluation/metrics.json")["n"] == 2


def staged(scratch: Path) -> list[Path]:
    """The trainer's own temporary folders in `scratch` (torch may keep caches there too)."""
    return [p for p in scratch.iterdir() if p.name.startswith("droptune-")]


def assert_every_line_labelled(stderr: str, **labels: str) -> None:
    """Each JSON log line the process wrote carries `labels` (Cloud Logging's labels field)."""
    entries = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert len(entries) >= 2, stderr[-2000:]
    for entry in entries:
        assert labels.items() <= entry.get("logging.googleapis.com/labels", {}).items(), entry


# The tiny random model learns the example data quickly with a larger learning rate.
TINY = {**FAST, "max_steps": 8, "learning_rate": 1e-2}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_a_gpu_runs_in_bf16_and_lowers_the_loss(tmp_path: Path, tiny_model: Path):
    """The GPU path: bf16 with fp32 master weights, varlen flash attention on packed rows,
    pinned asynchronous copies, fused AdamW. A tiny model, so the test needs no download and
    fits the GPU machine's 64 MiB of carried files."""
    from droptune_trainer import attention

    run_dir = make_run_dir(tmp_path)
    metrics = run(str(run_dir), overrides={**TINY, "base_model": str(tiny_model)})
    losses = [loss for _, loss in metrics["train_loss"]]
    assert (metrics["device"], metrics["dtype"], metrics["master_weights"]) == (
        "cuda",
        "bfloat16",
        True,
    )
    assert losses[-1] < losses[0] * 0.8
    assert (run_dir / "model" / "merged" / "model.safetensors").is_file()
    assert metrics["evaluation"]["n"] == 2
    query = torch.zeros(1, 9, 1, 64, device="cuda", dtype=torch.bfloat16)  # SmolLM2's heads
    key = query[:, :3]
    assert attention.varlen_works(query, key, key), "the varlen kernel was refused on this GPU"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_evaluates_the_model_it_deploys(tmp_path: Path, tiny_model: Path, monkeypatch):
    """QLoRA trains on a 4-bit base but deploys the adapter merged into the bf16 base: the
    evaluation (and its gate) must see that model, and the 4-bit one is gone by then."""
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (in the image)")
    from bitsandbytes.nn import Linear4bit
    from droptune_trainer import train

    evaluated = []
    judge = train.evaluate_tuned

    def evaluate_tuned(s):
        evaluated.append(any(isinstance(m, Linear4bit) for m in s.model.modules()))
        return judge(s)

    monkeypatch.setattr(train, "evaluate_tuned", evaluate_tuned)
    run_dir = make_run_dir(tmp_path)
    overrides = {**TINY, "base_model": str(tiny_model), "method": "qlora"}
    metrics = run(str(run_dir), overrides=overrides)
    assert evaluated == [False]  # the model it deploys, not the 4-bit one it trained
    assert metrics["evaluation"]["n"] == 2
    config = json.loads((run_dir / "model" / "merged" / "config.json").read_text())
    assert "quantization_config" not in config
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
