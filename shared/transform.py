"""The optional per-batch transform hook (``RECOMPRESS_TRANSFORM=pkg.module:function``).

By default nothing touches the data: the pipeline is lossless Arrow in, Arrow
out. A transform is the one place an operator may change it, and pandas is
used only when the transform asks for a ``DataFrame`` in its signature,
because a pandas round trip changes types (nullable ints become floats).
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from shared.errors import ConfigError, first_line

#: What the engine calls: one Arrow batch in, Arrow data out.
BatchTransform = Callable[[pa.RecordBatch], pa.RecordBatch | pa.Table]


def load_transform(spec: str, subject: str = "RECOMPRESS_TRANSFORM") -> BatchTransform:
    """Import ``pkg.module:function`` and adapt it to Arrow batches."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(subject, f"must look like package.module:function, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a syntax error or a raise at import time is as fatal as a missing module
        raise ConfigError(subject, f"cannot import module {module_name!r}: {type(exc).__name__}: "
                                   f"{first_line(exc)}") from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ConfigError(subject, f"module {module_name!r} has no attribute {attr!r}")
    if not callable(target):
        raise ConfigError(subject, f"{spec!r} is not callable")
    return _via_pandas(target) if wants_pandas(target) else _via_arrow(target)


def wants_pandas(function: Callable[..., Any]) -> bool:
    """True when the first parameter is annotated as a pandas DataFrame."""
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable annotations: fall back to their text
        hints = {}
    params = list(inspect.signature(function).parameters.values())
    if not params:
        return False
    annotation = hints.get(params[0].name, params[0].annotation)
    if isinstance(annotation, str):
        return annotation.split(".")[-1] == "DataFrame"
    return getattr(annotation, "__name__", "") == "DataFrame" and "pandas" in getattr(
        annotation, "__module__", ""
    )


def _via_arrow(function: Callable[..., Any]) -> BatchTransform:
    def apply(batch: pa.RecordBatch) -> pa.RecordBatch | pa.Table:
        result = function(batch)
        if not isinstance(result, pa.RecordBatch | pa.Table):
            raise TypeError(f"returned {type(result).__name__}, expected a RecordBatch or Table")
        return result

    return apply


def _via_pandas(function: Callable[..., Any]) -> BatchTransform:
    import pandas as pd  # only when a transform asks for it: pandas is slow to import

    def apply(batch: pa.RecordBatch) -> pa.RecordBatch | pa.Table:
        result = function(batch.to_pandas())
        if not isinstance(result, pd.DataFrame):
            raise TypeError(f"returned {type(result).__name__}, expected a DataFrame")
        return pa.Table.from_pandas(result, preserve_index=False)

    return apply
