"""Split a script's reconstructions over processes: ``torchrun`` ranks or SLURM array tasks.

Every reconstruction of the seven scripts is independent: one (subject, ROI, image label
[, layer set]) job writes its own files under
``results/<script>/[<layer set>/]<subject>/<roi>/``. Scaling out therefore needs no
scheduler and no communication: each process enumerates the full job list in the same
order, keeps every ``world_size``-th job starting at its ``rank`` (round-robin) and writes
its outputs with :func:`icnn_torch._util.atomic_output`, so two processes never write the same file and a
reader never sees a half-written one.

Where the rank comes from (:func:`rank_info`):

* ``torchrun --nproc_per_node=N script.py`` sets ``RANK``, ``WORLD_SIZE`` and
  ``LOCAL_RANK`` (the process index on its node, used to pick the GPU).
* ``sbatch --array=0-(K-1) ...`` runs K tasks with ``SLURM_ARRAY_TASK_ID``,
  ``SLURM_ARRAY_TASK_COUNT`` and ``SLURM_ARRAY_TASK_MIN`` (and ``SLURM_ARRAY_TASK_STEP``
  for ``--array=a-b:s``); the rank is the task's position in the array.
* Both at once (a SLURM array whose tasks each start ``torchrun``): the array position
  is the outer index, ``rank = array_rank * WORLD_SIZE + RANK`` and
  ``world_size = array_count * WORLD_SIZE``.
* Neither: a single process, ``(0, 1, 0)``.

No ``torch.distributed`` process group is created; none is needed.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, TypeVar

from ..store.layout import job_dir

__all__ = ["Job", "make_jobs", "rank_info", "split_jobs"]

T = TypeVar("T")


@dataclass(frozen=True, order=True)
class Job:
    """One reconstruction of a script.

    Attributes
    ----------
    subject : str
        Subject name, e.g. ``"S1"``.
    roi : str
        Brain region, e.g. ``"VC"``.
    label : str
        Image label, e.g. ``"Img0009"``.
    layer_set : str or None
        Result folder of the layer combination (script 3 only), e.g. ``"layers-1to5"``;
        ``None`` for the other scripts.
    """

    subject: str
    roi: str
    label: str
    layer_set: Optional[str] = None

    def result_dir(self, script_results_dir: str | os.PathLike) -> Path:
        """Folder of this job's outputs (:func:`icnn_torch.store.layout.job_dir`)."""
        return job_dir(script_results_dir, self.subject, self.roi, self.layer_set)


def make_jobs(subjects: Sequence[str], rois: Sequence[str], labels: Sequence[str],
              layer_sets: Optional[Sequence[str]] = None) -> list[Job]:
    """All jobs of a script in the original loop order.

    The order is subject, then ROI, then label, then layer set (innermost), as the
    original scripts nest their loops. Every process must build the same list.

    Parameters
    ----------
    subjects, rois, labels : sequence of str
    layer_sets : sequence of str, optional
        Layer-set folder names (script 3); ``None`` for scripts without that level.

    Returns
    -------
    list of Job
    """
    sets: Sequence[Optional[str]] = [None] if layer_sets is None else list(layer_sets)
    return [Job(subject, roi, label, layer_set)
            for subject, roi, label, layer_set
            in itertools.product(subjects, rois, labels, sets)]


def _read_int(environ: Mapping[str, str], name: str) -> Optional[int]:
    """The integer in ``environ[name]``; ``None`` when unset or empty."""
    value = environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _torchrun_rank(environ: Mapping[str, str]) -> Optional[tuple[int, int, int]]:
    """(rank, world size, local rank) from torchrun's variables, or None when absent."""
    rank = _read_int(environ, "RANK")
    world_size = _read_int(environ, "WORLD_SIZE")
    if rank is None and world_size is None:
        return None
    if rank is None or world_size is None:
        raise ValueError("set both RANK and WORLD_SIZE (torchrun sets them) or neither; "
                         f"got RANK={environ.get('RANK')!r}, "
                         f"WORLD_SIZE={environ.get('WORLD_SIZE')!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= RANK < WORLD_SIZE, got RANK={rank}, "
                         f"WORLD_SIZE={world_size}")
    local_rank = _read_int(environ, "LOCAL_RANK")
    return rank, world_size, (0 if local_rank is None else local_rank)


def _slurm_array_rank(environ: Mapping[str, str]) -> Optional[tuple[int, int]]:
    """(position in the array, number of array tasks), or None outside a SLURM array."""
    task_id = _read_int(environ, "SLURM_ARRAY_TASK_ID")
    if task_id is None:
        return None
    count = _read_int(environ, "SLURM_ARRAY_TASK_COUNT")
    if count is None:
        raise ValueError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; "
                         "start the script with sbatch --array=0-<N-1>")
    task_min = _read_int(environ, "SLURM_ARRAY_TASK_MIN") or 0
    step = _read_int(environ, "SLURM_ARRAY_TASK_STEP") or 1
    offset = task_id - task_min
    if step < 1 or offset % step:
        raise ValueError(f"SLURM_ARRAY_TASK_ID={task_id} is not on the array grid "
                         f"(min {task_min}, step {step}); use a range such as "
                         f"--array=0-{count - 1}")
    rank = offset // step
    if count < 1 or not 0 <= rank < count:
        raise ValueError(f"SLURM array task {task_id} maps to position {rank}, outside "
                         f"0..{count - 1} (SLURM_ARRAY_TASK_MIN={task_min}, "
                         f"SLURM_ARRAY_TASK_STEP={step}, SLURM_ARRAY_TASK_COUNT={count}); "
                         "list-form arrays such as --array=1,5,9 are not supported, use a "
                         f"range such as --array=0-{count - 1}")
    return rank, count


def rank_info(environ: Optional[Mapping[str, str]] = None) -> tuple[int, int, int]:
    """This process's place among the processes sharing a script's jobs.

    Parameters
    ----------
    environ : mapping, optional
        Environment to read; ``os.environ`` by default.

    Returns
    -------
    rank : int
        0 <= rank < world_size.
    world_size : int
        Number of processes sharing the jobs.
    local_rank : int
        Process index on its machine (``LOCAL_RANK``; 0 when unset), for
        :func:`icnn_torch.nets.device.device_for_rank`.

    Raises
    ------
    ValueError
        Inconsistent or non-integer variables (the message names them).
    """
    env = os.environ if environ is None else environ
    torchrun = _torchrun_rank(env)
    array = _slurm_array_rank(env)
    rank, world_size, local_rank = torchrun if torchrun is not None else (0, 1, 0)
    if local_rank < 0:
        raise ValueError(f"LOCAL_RANK must be >= 0, got {local_rank}")
    if array is not None:
        array_rank, array_count = array
        rank, world_size = array_rank * world_size + rank, array_count * world_size
    return rank, world_size, local_rank


def split_jobs(jobs: Iterable[T], rank: int, world_size: int) -> list[T]:
    """The jobs of one rank: every ``world_size``-th job starting at ``rank``.

    Round-robin keeps the split deterministic (it depends only on the list order) and
    balanced (rank loads differ by at most one job). The parts of ranks
    ``0..world_size-1`` are disjoint and together give the whole list.

    Parameters
    ----------
    jobs : iterable
        The full job list, in the same order in every process.
    rank, world_size : int
        From :func:`rank_info`.

    Returns
    -------
    list
        This rank's jobs in list order (empty when ``rank >= len(jobs)``).
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                         f"world_size={world_size}")
    return list(jobs)[rank::world_size]
