"""The upload function's deployment settings, read from the environment.

Terraform sets these in the cloud and `droptune local` sets them on one machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from droptune.config import parse_flag
from droptune.errors import ConfigError


@dataclass(frozen=True)
class IntakeSettings:
    runs_bucket: str
    topic: str  # projects/<project>/topics/<topic>
    uploads_bucket: str | None = None
    default_backend: str = "custom"
    max_upload_bytes: int = 1 << 30  # 1 GiB: Gemini tuning's file limit; size memory for it
    lease_seconds: float = 60.0  # a stopped attempt's run is taken over after this long
    max_wait_seconds: float = 240.0  # how long a duplicate delivery waits for the one working
    publish_timeout: float = 30.0
    max_attempts: int = 5  # attempts that end in an error before the run is FAILED
    preload_tokenizer: bool = False  # load the default model's tokenizer when the instance starts

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> IntakeSettings:
        missing = [k for k in ("DROPTUNE_RUNS_BUCKET", "DROPTUNE_TOPIC") if not env.get(k)]
        if missing:
            raise ConfigError(f"the upload function needs {' and '.join(missing)} set")
        topic = env["DROPTUNE_TOPIC"]
        if not topic.startswith("projects/") or "/topics/" not in topic:
            raise ConfigError(f"DROPTUNE_TOPIC must be projects/<p>/topics/<t>; got {topic!r}")
        return cls(
            runs_bucket=env["DROPTUNE_RUNS_BUCKET"],
            topic=topic,
            uploads_bucket=env.get("DROPTUNE_UPLOADS_BUCKET") or None,
            default_backend=env.get("DROPTUNE_DEFAULT_BACKEND") or "custom",
            max_upload_bytes=_number(env, "DROPTUNE_MAX_UPLOAD_BYTES", int, 1 << 30, "bytes"),
            lease_seconds=_number(env, "DROPTUNE_LEASE_SECONDS", float, 60, "seconds"),
            max_wait_seconds=_number(env, "DROPTUNE_MAX_WAIT_SECONDS", float, 240, "seconds"),
            max_attempts=_number(env, "DROPTUNE_MAX_ATTEMPTS", int, 5, "attempts"),
            preload_tokenizer=_flag(env, "DROPTUNE_PRELOAD_TOKENIZER"),
        )


def _number(env: Mapping[str, str], name: str, kind: type, default: float, unit: str) -> Any:
    """`env[name]` as an int or a float (unset: `default`), or an error that names it.

    >>> _number({"DROPTUNE_MAX_UPLOAD_BYTES": "1GB"}, "DROPTUNE_MAX_UPLOAD_BYTES", int, 2**30, "bytes")
    Traceback (most recent call last):
    droptune.errors.ConfigError: DROPTUNE_MAX_UPLOAD_BYTES must be a whole number of bytes (e.g. 1073741824); got '1GB'
    """
    value = env.get(name)
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(
            f"{name} must be {what} of {unit} (e.g. {kind(default)!r}); got {value!r}"
        ) from None


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = parse_flag(env.get(name) or "false")
    if value is None:
        raise ConfigError(f"{name} must be true or false; got {env[name]!r}")
    return value
