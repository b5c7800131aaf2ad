"""The docstring examples (input -> output) of droptune's modules still hold."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import droptune


def modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(droptune.__path__, "droptune."):
        if info.name.endswith("__main__"):
            continue
        spec = importlib.util.find_spec(info.name)
        source = spec.loader.get_source(info.name) if spec and spec.loader else None
        if source and ">>>" in source:
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # e.g. a cloud SDK that is not installed here
        pytest.skip(f"{name}: {exc}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
