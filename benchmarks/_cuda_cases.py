"""A pytest plugin that keeps only the suite's CUDA cases (used by bench_gpu.py).

Load it with ``python -m pytest -p _cuda_cases`` (``benchmarks/`` on ``PYTHONPATH``). A
CUDA case is a test item that

- runs with ``device`` = ``"cuda"`` (the ``device`` fixture of ``tests/conftest.py``), or
- carries a ``skipif`` mark whose reason names CUDA (a test written for CUDA only).

``pytest -k cuda`` is not this set: it also picks CPU cases whose name says "cuda"
(``test_full_float32_turns_tf32_off_for_cuda_and_restores_it``,
``test_cuda_engine_loops_run_without_tf32[cpu]``). Every other item is deselected (pytest
reports them as deselected).
"""

from __future__ import annotations


def is_cuda_case(item) -> bool:
    """Whether a collected test item is one of the suite's CUDA cases."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("device") == "cuda":
        return True
    return any("cuda" in str(mark.kwargs.get("reason", "")).lower()
               for mark in item.iter_markers("skipif"))


def pytest_collection_modifyitems(config, items) -> None:
    keep = [item for item in items if is_cuda_case(item)]
    drop = [item for item in items if not is_cuda_case(item)]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
