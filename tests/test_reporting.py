"""Progress lines and the loss record of :class:`icnn_torch.recon.progress.Reporter`.

The lines must read exactly as the original printed them, and showing them must not
synchronise a GPU loop: a due loss goes to the host asynchronously and its line is
printed once the copy has arrived. That deferral is tested here on the CPU with hand-made
events; the absence of host transfers inside :func:`run_momentum_gd` is tested by counting
the tensor methods that read device values (and, with a GPU, by CUDA's sync debug mode).
"""

from __future__ import annotations

import os
import traceback

import numpy as np
import pytest
import torch

from _engine_helpers import encoder_features, tiny_encoder
from icnn_torch.recon import progress as reporting
from icnn_torch.recon.gd import run_momentum_gd
from icnn_torch.recon.objective import build_feature_loss
from icnn_torch.recon.progress import Reporter
from icnn_torch.recon.transforms import Schedule

#: Four iterations of a batch of 2 (float32), and how the original prints them.
LOSSES = [[1.5, 2.25], [0.125, 1e-7], [123456789.0, 3.0], [0.5, 7.0]]
LINES = ["iter=1; err=1.5,2.25;",
         "iter=2; err=0.125,1e-07;",
         "iter=3; err=1.23457e+08,3;",
         "iter=4; err=0.5,7;"]

#: Tensor methods that hand a value to the host (a device sync on CUDA).
HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__bool__", "__int__")


class FakeEvent:
    """Stands in for a CUDA event: not complete until :meth:`set` (or a wait)."""

    def __init__(self) -> None:
        self.done = False
        self.waited = False

    def set(self) -> None:
        self.done = True

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        self.waited = True
        self.done = True


class FakeCopies:
    """A ``start_copy`` for :class:`Reporter` whose copies complete when the test says."""

    def __init__(self) -> None:
        self.events: list[FakeEvent] = []

    def __call__(self, values: torch.Tensor) -> tuple[torch.Tensor, FakeEvent]:
        event = FakeEvent()
        self.events.append(event)
        return values.detach().clone(), event  # no host read: the tensor is kept as is


def out_lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def show_iterations(reporter: Reporter, iterations, device="cpu") -> None:
    for t in iterations:
        err = torch.tensor(LOSSES[(t - 1) % len(LOSSES)], dtype=torch.float32, device=device)
        reporter.record(err)
        reporter.show(t, err)


# --------------------------------------------------------------------------- the lines

def test_lines_every_iteration(device, capsys):
    reporter = Reporter(4, 2, 1, "test")
    for t in range(1, 5):
        show_iterations(reporter, [t], device)
        if device.type == "cpu":  # printed at once
            assert out_lines(capsys) == [LINES[t - 1]]
    losses = reporter.losses()
    reporter.close()
    if device.type != "cpu":  # all there by the end of the run
        assert out_lines(capsys) == LINES
    assert losses.dtype == np.float32 and losses.shape == (4, 2)
    np.testing.assert_array_equal(losses, np.float32(LOSSES))


def test_lines_every_third_iteration(device, capsys):
    reporter = Reporter(7, 2, 3, "test")
    show_iterations(reporter, range(1, 8), device)
    reporter.close()
    assert capsys.readouterr().out == f"{LINES[2]}\n" + "iter=6; err=0.125,1e-07;\n"
    np.testing.assert_array_equal(reporter.losses(), np.float32([LOSSES[i % 4] for i in range(7)]))


def test_silent_and_default_display(capsys, monkeypatch):
    copies = FakeCopies()
    silent = Reporter(3, 2, 0, "test", start_copy=copies)
    show_iterations(silent, range(1, 4))
    silent.close()
    assert capsys.readouterr().out == "" and copies.events == []  # nothing copied either
    monkeypatch.setattr(reporting, "_interactive_terminal", lambda: False)
    logged = Reporter(2, 2, None, "test")  # not a terminal: every line
    show_iterations(logged, range(1, 3))
    logged.close()
    assert out_lines(capsys) == LINES[:2]


def test_no_records():
    losses = Reporter(3, 2, 0, "test").losses()
    assert losses.shape == (0, 2) and losses.dtype == np.float32


# --------------------------------------------------------------------------- deferred lines

def test_deferred_lines_print_in_order_when_ready(capsys):
    copies = FakeCopies()
    reporter = Reporter(8, 2, 1, "test", start_copy=copies)
    show_iterations(reporter, [1, 2, 3])
    assert out_lines(capsys) == []  # no copy has arrived
    copies.events[1].set()
    show_iterations(reporter, [4])
    assert out_lines(capsys) == []  # iteration 2 is ready, but 1 is not
    copies.events[0].set()
    show_iterations(reporter, [5])
    assert out_lines(capsys) == LINES[:2]
    copies.events[3].set()
    copies.events[4].set()
    show_iterations(reporter, [6])
    assert out_lines(capsys) == []  # 3 still in flight holds back 4 and 5
    copies.events[2].set()
    show_iterations(reporter, [7])
    assert out_lines(capsys) == [LINES[2], LINES[3], "iter=5; err=1.5,2.25;"]
    assert not any(e.waited for e in copies.events)  # show never waited
    reporter.close()  # waits for 6 and 7
    assert out_lines(capsys) == ["iter=6; err=0.125,1e-07;", "iter=7; err=1.23457e+08,3;"]
    assert [e.waited for e in copies.events] == [False] * 5 + [True, True]
    reporter.close()  # nothing left
    assert out_lines(capsys) == []


def test_deferred_lines_flushed_by_losses(capsys):
    copies = FakeCopies()
    reporter = Reporter(4, 2, 2, "test", start_copy=copies)
    show_iterations(reporter, range(1, 5))
    assert len(copies.events) == 2 and out_lines(capsys) == []  # due at 2 and 4 only
    losses = reporter.losses()
    assert out_lines(capsys) == [LINES[1], LINES[3]]
    np.testing.assert_array_equal(losses, np.float32(LOSSES))
    reporter.close()
    assert out_lines(capsys) == []


def test_bar_postfix_shows_latest_ready_loss(capsys, monkeypatch):
    monkeypatch.setattr(reporting, "_interactive_terminal", lambda: True)
    copies = FakeCopies()
    reporter = Reporter(100, 2, None, "test", start_copy=copies)
    bar = reporter._bar
    assert bar is not None and reporter.disp_every == 0  # a bar instead of lines
    show_iterations(reporter, [1, 2, 3, 4])  # postfix due every 100 // 50 = 2 iterations
    assert len(copies.events) == 2 and bar.n == 4 and bar.postfix in (None, "")
    copies.events[1].set()
    show_iterations(reporter, [5])
    assert bar.postfix in (None, "")  # iteration 4's loss waits for iteration 2's
    copies.events[0].set()
    show_iterations(reporter, [6])
    assert bar.postfix == "err=0.5" and bar.n == 6  # iteration 4: LOSSES[3][0]
    reporter.close()
    assert reporter._bar is None and capsys.readouterr().out == ""


# --------------------------------------------------------------------------- the GD loop

class LoopSpan:
    """Marks the span of :func:`run_momentum_gd`'s loop: from the first render (the first
    step of an iteration) to the ``losses()`` call that follows the loop."""

    def __init__(self) -> None:
        self.phase = "before"
        self.renders = 0
        self.on_enter = lambda: None
        self.on_exit = lambda: None

    def render(self, v: torch.Tensor) -> torch.Tensor:
        if self.phase == "before":
            self.phase = "loop"
            self.on_enter()
        self.renders += 1
        return v

    def end(self) -> None:
        if self.phase == "loop":
            self.phase = "after"
            self.on_exit()


class SpanReporter(Reporter):
    """A Reporter that ends the loop span when the engine asks for the losses."""

    def __init__(self, span: LoopSpan, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.span = span

    def losses(self) -> np.ndarray:
        self.span.end()
        return super().losses()


def count_host_reads(monkeypatch, span: LoopSpan) -> dict[str, list[str]]:
    """Wrap the tensor methods in HOST_READS; collect the callers, per phase of ``span``."""
    calls: dict[str, list[str]] = {"before": [], "loop": [], "after": []}

    def wrap(name: str, original):
        def counted(self, *args, **kwargs):
            caller = traceback.extract_stack(limit=2)[0]
            calls[span.phase].append(f"Tensor.{name} from {caller.filename}:{caller.lineno}")
            return original(self, *args, **kwargs)
        return counted

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, wrap(name, getattr(torch.Tensor, name)))
    return calls


def gd_problem(device: torch.device, batch: int = 2, size: int = 16):
    """A tiny encoder, its per-image feature loss and start images."""
    net = tiny_encoder(device, size=size)
    rng = np.random.default_rng(7)
    targets = [encoder_features(net, rng.uniform(0, 255, (size, size, 3)), ("c1", "fc"))
               for _ in range(batch)]
    objective, _ = build_feature_loss(targets, net, device)
    v0 = torch.as_tensor(rng.normal(0, 50, (batch, 3, size, size)).astype(np.float32),
                         device=device)
    return net, objective, v0


def run_gd(span: LoopSpan, net, objective, v0, iter_n: int, disp_every: int,
           start_copy=None):
    reporter = SpanReporter(span, iter_n, v0.shape[0], disp_every, "test",
                            start_copy=start_copy)
    try:
        return run_momentum_gd(v0, span.render, objective, net, iter_n,
                               lr=Schedule(2.0, 1.0, iter_n), momentum=Schedule(0.9, 0.9, iter_n),
                               decay=Schedule(0.01, 0.01, iter_n), reporter=reporter)
    finally:
        reporter.close()


@pytest.mark.parametrize("printing", [False, True], ids=["silent", "lines-in-flight"])
def test_gd_loop_reads_nothing_back(device, printing, monkeypatch, capsys):
    """No host read between the first and the last iteration. Silent: the real reporter.
    Printing every iteration: copies that stay in flight until the loop is over, as a
    GPU's would when it lags behind, so showing the lines must wait until ``losses()``."""
    net, objective, v0 = gd_problem(device)
    iter_n = 6
    span = LoopSpan()
    copies = FakeCopies() if printing else None
    calls = count_host_reads(monkeypatch, span)
    torch.zeros(1).item()  # the counting works
    assert len(calls["before"]) == 1 and calls["before"][0].startswith("Tensor.item from ")
    result = run_gd(span, net, objective, v0, iter_n, disp_every=int(printing), start_copy=copies)
    assert span.renders == iter_n and span.phase == "after"
    assert calls["loop"] == []
    assert calls["after"]  # the losses come back once the loop is over
    assert result.losses.shape == (iter_n, 2) and np.isfinite(result.losses).all()
    lines = out_lines(capsys)
    if printing:
        assert len(copies.events) == iter_n and all(e.waited for e in copies.events)
        assert lines == [f"iter={t + 1}; err={','.join(f'{v:g}' for v in row)};"
                         for t, row in enumerate(result.losses.tolist())]
    else:
        assert lines == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gd_printing_does_not_sync_cuda(capsys):
    """With a line every iteration, the loop passes CUDA's sync debug mode "error"."""
    device = torch.device("cuda")
    net, objective, v0 = gd_problem(device)
    iter_n = 6
    span = LoopSpan()
    previous = torch.cuda.get_sync_debug_mode()
    span.on_enter = lambda: torch.cuda.set_sync_debug_mode("error")
    span.on_exit = lambda: torch.cuda.set_sync_debug_mode(previous)
    try:
        result = run_gd(span, net, objective, v0, iter_n, disp_every=1)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert span.renders == iter_n and span.phase == "after"
    assert out_lines(capsys) == [f"iter={t + 1}; err={','.join(f'{v:g}' for v in row)};"
                                 for t, row in enumerate(result.losses.tolist())]


# --------------------------------------------------------------------------- bar or lines

def test_terminal_without_a_window_size_gets_lines_not_nothing(capsys, monkeypatch):
    """A terminal that reports no size (e.g. some job consoles) cannot show a bar; it used
    to get neither bar nor lines."""
    monkeypatch.setattr(reporting, "is_terminal", lambda stream=None: True)

    def no_size(fd=None):
        raise OSError("no window size")

    monkeypatch.setattr(reporting.os, "get_terminal_size", no_size)
    reporter = Reporter(2, 2, None, "test")
    assert reporter._bar is None and reporter.disp_every == 1
    show_iterations(reporter, range(1, 3))
    reporter.close()
    assert out_lines(capsys) == LINES[:2]
    monkeypatch.setattr(reporting.os, "get_terminal_size", lambda fd=None: os.terminal_size((0, 0)))
    assert Reporter(2, 2, None, "test")._bar is None


def test_bar_stays_on_screen_with_the_final_loss(capsys, monkeypatch):
    monkeypatch.setattr(reporting, "_interactive_terminal", lambda: True)
    reporter = Reporter(4, 2, None, "test")
    show_iterations(reporter, range(1, 5))
    reporter.close()
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "4/4" in last and f"err={LOSSES[3][0]:.4g}" in last  # not erased, final loss shown
    assert err.endswith("\n")
