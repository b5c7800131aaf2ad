"""QLoRA's two models: the 4-bit base it trains on, and the unquantized one it deploys.

Servers load plain checkpoints, so a QLoRA run deploys its adapter merged into the base in
the run's dtype, which answers a little differently from the 4-bit model it trained: once
trained, `unquantize` swaps the 4-bit model for that base with the adapter, so that the
evaluation and its gate judge the model that is deployed, and the merge is done on it. A
base too large for the GPU unquantized (a 14B model in bf16 on a 24 GB L4) falls back to
the 4-bit model for the evaluation, said in the log, and is merged on the CPU.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import torch

from droptune.errors import ConfigError
from droptune.log import get_logger

log = get_logger("droptune.trainer")


def quantization(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """`from_pretrained` arguments that load a base in 4 bits (NF4, double quantization),
    computing in `dtype`."""
    if device.type != "cuda":
        raise ConfigError("qlora needs a CUDA GPU (bitsandbytes 4-bit); use method: lora on CPU")
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True,
    )
    return {"quantization_config": config}


def with_adapter(base: Any, adapter: Path) -> Any:
    from peft import PeftModel

    return PeftModel.from_pretrained(base, adapter)


def unquantize(
    adapter: Path, load_base: Any, device: torch.device, dtype: torch.dtype
) -> tuple[Any, bool]:
    """(the model to evaluate and merge, whether it is the unquantized one), from the saved
    `adapter`; `load_base(device, dtype, quantized)` loads the base model. The caller has
    let go of the 4-bit model: its memory is freed first."""
    _free(device)
    try:
        return with_adapter(load_base(device, dtype, False), adapter), True
    except torch.OutOfMemoryError:
        pass  # its traceback holds the half-moved model: freed once this block is left
    _free(device)
    log.warning(
        f"the base model in {str(dtype).removeprefix('torch.')} does not fit on the GPU: "
        "the evaluation judges the 4-bit model, and the adapter is merged on the CPU"
    )
    return with_adapter(load_base(device, dtype, True), adapter), False


def merged_on_cpu(adapter: Path, load_base: Any, dtype: torch.dtype) -> Any:
    """The adapter merged into the unquantized base, in host memory."""
    return with_adapter(load_base(torch.device("cpu"), dtype, False), adapter).merge_and_unload()


def _free(device: torch.device) -> None:
    gc.collect()  # reference cycles in a model would keep its GPU memory until collected
    if device.type == "cuda":
        torch.cuda.empty_cache()
