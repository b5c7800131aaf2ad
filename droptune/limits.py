"""What the tuning backends accept: the limits validation checks data against."""

from __future__ import annotations

from droptune.config import RunConfig

# Vertex AI Gemini supervised tuning limits (Gemini 2.x documentation).
GEMINI_LIMITS = {
    "tokens_per_example": 131_072,
    "train_examples": 1_000_000,
    "validation_examples": 5_000,
    "file_bytes": 1 << 30,
}


def tokens_per_example(config: RunConfig) -> tuple[int, str]:
    """The longest example the backend takes, and the issue code of a longer one: Gemini
    rejects it (an error), the custom trainer truncates it to `max_length` (a warning)."""
    if config.backend == "gemini":
        return GEMINI_LIMITS["tokens_per_example"], "over_token_limit"
    return config.max_length, "over_max_length"
