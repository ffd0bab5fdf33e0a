"""Feature decoders: FastL2LiR (the lab's package, the reference) and a batched one of ours.

The lab's decoder of one unit (FastL2LiR, as KamitaniLab's feature-decoding scripts run
it for Shen et al. 2019): of the training samples X (trials x voxels, each voxel
normalised with the training mean and SD) and the unit's normalised feature y, keep the
``num_voxel`` voxels with the largest absolute Pearson correlation with y (voxels of
variance below 1e-8 count as uncorrelated), append a constant column, and solve the
ridge normal equations ``(X1'X1 + alpha I) w = X1'y`` on those columns (the constant's
weight, the bias, is regularised too). With ``num_voxel`` at least the number of voxels,
every voxel is used. Units are independent of one another: how they are chunked does
not change any result.

Two implementations, selected by name (:data:`DECODERS`):

``"fastl2lir"`` (default)
    ``fastl2lir.FastL2LiR.fit`` / ``predict`` on each unit chunk, in the given dtype
    (float32 in the lab's scripts). fastl2lir 0.11 (the last release) stops with "setting
    an array element with a sequence" under NumPy >= 2.4 whenever it selects voxels (its
    solve returns a column whose elements it assigns as scalars; fixed upstream in
    KamitaniLab/PyFastL2LiR pull request 11, not released). Where that happens, the call
    runs with ``numpy.linalg.solve`` given a vector right-hand side instead of a
    one-column matrix: the same LAPACK solve, the same numbers, the vector that NumPy
    < 2.4 handed to those assignments.
``"torch"`` (ours)
    The same equations, batched: ``X1'X1 + alpha I`` is formed once per training set and
    reused for every chunk (FastL2LiR forms it again on every call), and the selected
    systems (symmetric positive definite) are solved in batches by Cholesky, half the
    arithmetic of FastL2LiR's LU, on the CPU or a GPU. On the CPU the solves run on one
    thread, as FastL2LiR's do: run one process per core (``torchrun`` ranks, SLURM
    array tasks) to use them all. On the CPU it ranks the voxels with FastL2LiR's own
    correlation function, so it selects the same voxels; its predictions then equal
    FastL2LiR's to the rounding of the solves: in float64 to about 1e-12 of the
    prediction scale; in float32 both are within their own float32 rounding of the
    exact (float64) solution, measured by ``benchmarks/bench_decoding.py``.

Both return the predictions of test samples and, on request, the decoders in a compact
form (:class:`LinearDecoders`: the selected voxels, their weights, the bias; FastL2LiR's
own ``W`` is dense, voxels x units).
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Tuple

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["DECODERS", "DEFAULT_ALPHA", "DEFAULT_NUM_VOXEL", "LinearDecoders",
           "Fastl2lirDecoder", "TorchDecoder", "make_decoder"]

DECODERS = ("fastl2lir", "torch")
#: The lab's settings for Shen et al. (2019): alpha 100, 500 voxels per unit.
DEFAULT_ALPHA = 100.0
DEFAULT_NUM_VOXEL = 500
#: FastL2LiR's threshold below which a voxel's variance counts as zero.
MIN_VOXEL_VARIANCE = 1e-8
DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass
class LinearDecoders:
    """Decoders of U units over the selected voxels.

    Attributes
    ----------
    voxel_index : ndarray, shape (U, k), int32
        Selected voxel columns of each unit, ascending.
    weight : ndarray, shape (U, k)
        Their weights (normalised space).
    bias : ndarray, shape (U,)
    """

    voxel_index: np.ndarray
    weight: np.ndarray
    bias: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Normalised predictions (n, U) of normalised samples ``x`` (n, n_voxels)."""
        x = np.asarray(x, dtype=self.weight.dtype)
        return np.einsum("nuk,uk->nu", x[:, self.voxel_index], self.weight) + self.bias


def _check_dtype(dtype: str) -> type:
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return DTYPES[dtype]


def _num_selected(num_voxel: int, n_voxels: int) -> int:
    if num_voxel < 1:
        raise ConfigError(f"num_voxel must be at least 1, not {num_voxel}")
    return min(int(num_voxel), n_voxels)


# --------------------------------------------------------------------------- fastl2lir

class _SolveVectorRhs:
    """``numpy.linalg`` whose ``solve`` takes a one-column right-hand side as a vector."""

    def __getattr__(self, name):
        return getattr(np.linalg, name)

    @staticmethod
    def solve(a, b):
        b = np.asarray(b)
        if b.ndim == 2 and b.shape[1] == 1:
            return np.linalg.solve(a, b[:, 0])
        return np.linalg.solve(a, b)


class _NumpyVectorSolve:
    """``numpy`` with :class:`_SolveVectorRhs` as ``linalg`` (see the module docstring)."""

    linalg = _SolveVectorRhs()

    def __getattr__(self, name):
        return getattr(np, name)


@functools.lru_cache(maxsize=None)
def fastl2lir_needs_vector_solve() -> bool:
    """Whether FastL2LiR's voxel selection fails under this NumPy (>= 2.4 with
    fastl2lir 0.11); tried once on a 6 x 4 problem."""
    from fastl2lir import FastL2LiR
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its per-unit progress bar
            FastL2LiR().fit(x, y, alpha=1.0, n_feat=2)
    except (TypeError, ValueError):
        return True
    return False


@contextlib.contextmanager
def _fastl2lir_compatible(selecting: bool):
    """Run FastL2LiR with the vector solve when its voxel selection needs it."""
    import fastl2lir.fastl2lir as module
    if not (selecting and fastl2lir_needs_vector_solve()):
        yield
        return
    original = module.np
    module.np = _NumpyVectorSolve()
    try:
        yield
    finally:
        module.np = original


def _compact(W: np.ndarray, b: np.ndarray, k: int) -> LinearDecoders:
    """FastL2LiR's dense (n_voxels, U) weights -> the k largest-magnitude per unit."""
    W = np.asarray(W).reshape(W.shape[0], -1)
    if k < W.shape[0]:
        index = np.argpartition(-np.abs(W), k - 1, axis=0)[:k].T
    else:
        index = np.broadcast_to(np.arange(W.shape[0]), (W.shape[1], W.shape[0]))
    index = np.sort(index, axis=1).astype(np.int32)
    weight = np.take_along_axis(W.T, index, axis=1)
    return LinearDecoders(index, weight, np.asarray(b).reshape(-1).astype(W.dtype))


class Fastl2lirDecoder:
    """FastL2LiR on the unit chunks of one training set.

    Parameters
    ----------
    x_train : ndarray, shape (n_samples, n_voxels)
        Normalised training samples (one row per trial).
    alpha : float
    num_voxel : int
        Voxels selected per unit.
    dtype : {"float32", "float64"}
        FastL2LiR's computation dtype.
    """

    name = "fastl2lir"

    def __init__(self, x_train: np.ndarray, alpha: float = DEFAULT_ALPHA,
                 num_voxel: int = DEFAULT_NUM_VOXEL, dtype: str = "float32") -> None:
        self.dtype = _check_dtype(dtype)
        self.x_train = np.ascontiguousarray(x_train, dtype=self.dtype)
        self.alpha = float(alpha)
        self.num_voxel = _num_selected(num_voxel, self.x_train.shape[1])

    def fit_predict(self, y_train: np.ndarray, x_test: np.ndarray, keep: bool = False
                    ) -> Tuple[np.ndarray, Optional[LinearDecoders]]:
        """Fit the units of ``y_train`` (n_samples, U) and predict ``x_test`` (n, n_voxels).

        Returns
        -------
        prediction : ndarray, shape (n, U), of the dtype
            In the normalised space of ``y_train``.
        decoders : LinearDecoders or None
            With ``keep``.
        """
        from fastl2lir import FastL2LiR
        model = FastL2LiR()
        selecting = self.num_voxel < self.x_train.shape[1]
        with _fastl2lir_compatible(selecting), warnings.catch_warnings(), \
                contextlib.redirect_stderr(io.StringIO()):  # its per-unit bar: ours is per chunk
            warnings.simplefilter("ignore", PendingDeprecationWarning)  # its np.matrix
            model.fit(self.x_train, np.asarray(y_train, dtype=self.dtype), alpha=self.alpha,
                      n_feat=self.num_voxel, dtype=self.dtype)
        prediction = model.predict(np.asarray(x_test, dtype=self.dtype), dtype=self.dtype)
        decoders = _compact(model.W, model.b, self.num_voxel) if keep else None
        return np.asarray(prediction, dtype=self.dtype), decoders


# --------------------------------------------------------------------------- ours

class TorchDecoder:
    """The FastL2LiR equations batched in torch (see the module docstring).

    Parameters
    ----------
    x_train : ndarray, shape (n_samples, n_voxels)
        Normalised training samples.
    alpha, num_voxel, dtype
        As :class:`Fastl2lirDecoder`.
    device : torch.device or str, optional
        Default: CPU.
    batch_bytes : int
        Memory of the selected systems solved at once (per batch of units).
    """

    name = "torch"

    def __init__(self, x_train: np.ndarray, alpha: float = DEFAULT_ALPHA,
                 num_voxel: int = DEFAULT_NUM_VOXEL, dtype: str = "float32",
                 device=None, batch_bytes: int = 64 << 20) -> None:
        import torch
        np_dtype = _check_dtype(dtype)
        self.dtype = {np.float32: torch.float32, np.float64: torch.float64}[np_dtype]
        self.np_dtype = np_dtype
        self.device = torch.device("cpu" if device is None else device)
        x = torch.as_tensor(np.asarray(x_train, dtype=np_dtype)).to(self.device)
        n, v = x.shape
        self.n_voxels = v
        self.num_voxel = _num_selected(num_voxel, v)
        self.alpha = float(alpha)
        ones = torch.ones(n, 1, dtype=self.dtype, device=self.device)
        self.x1 = torch.cat([x, ones], dim=1)
        # (X1'X1 + alpha I): once per training set
        self.gram = self.x1.T @ self.x1
        self.gram.diagonal().add_(self.alpha)
        # flat voxels correlate 0 (FastL2LiR's rule, on the same variance)
        x_np = np.asarray(x_train, dtype=np_dtype)
        self.flat_np = np.var(x_np, axis=0) < MIN_VOXEL_VARIANCE
        if self.device.type == "cpu":
            self.x_np = x_np
        else:  # voxels standardised (ddof 1) for the correlations, on the device
            centred = x - x.mean(dim=0, keepdim=True)
            std = centred.std(dim=0, keepdim=True)
            flat = torch.as_tensor(self.flat_np, device=self.device)
            self.x_std = torch.where(flat[None, :], torch.zeros_like(centred),
                                     centred / torch.where(std > 0, std, torch.ones_like(std)))
        itemsize = torch.finfo(self.dtype).bits // 8
        self.batch_units = max(1, int(batch_bytes // (itemsize * (self.num_voxel + 1) ** 2)))

    def _select_cpu(self, y: np.ndarray) -> np.ndarray:
        """Selected voxels (U, k), ascending, ranked by FastL2LiR's own correlation
        matrix (``fastl2lir.fastl2lir.corrmat``) of the same arrays."""
        from fastl2lir.fastl2lir import corrmat
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)  # its np.matrix
            warnings.simplefilter("ignore", RuntimeWarning)  # constant units: NaN
            corr = corrmat(self.x_np, y, "col")  # (v, U)
        k = self.num_voxel
        top = np.empty((y.shape[1], k), dtype=np.int64)
        for start in range(0, y.shape[1], 1024):  # bounded memory for the ranking
            rank = np.abs(corr[:, start:start + 1024])
            rank[self.flat_np] = 0.0
            rank[np.isnan(rank)] = 0.0
            top[start:start + 1024] = np.argpartition(-rank, k - 1, axis=0)[:k].T
        top.sort(axis=1)
        return top

    def _select_device(self, y) -> "torch.Tensor":
        """The same from a product on the device (a unit whose 500th and 501st voxels
        tie to float rounding may select the other one)."""
        corr = self.x_std.T @ (y - y.mean(dim=0, keepdim=True))  # (v, U), up to a scale per unit
        return corr.abs_().topk(self.num_voxel, dim=0).indices.T.sort(dim=1).values

    def select(self, y_train) -> "torch.Tensor":
        """Selected voxels (U, k), ascending, of normalised targets (n_samples, U).

        On the CPU the voxels are ranked with FastL2LiR's own correlation function
        (``fastl2lir.fastl2lir.corrmat``) on the same arrays, so that units whose 500th
        and 501st voxels tie to float rounding select what FastL2LiR selects.
        """
        import torch
        y_np = np.asarray(y_train, dtype=self.np_dtype)
        if self.num_voxel >= self.n_voxels:
            return torch.arange(self.n_voxels, device=self.device).expand(y_np.shape[1], -1)
        if self.device.type == "cpu":
            return torch.from_numpy(self._select_cpu(y_np))
        return self._select_device(torch.as_tensor(y_np).to(self.device))

    def fit_predict(self, y_train: np.ndarray, x_test: np.ndarray, keep: bool = False
                    ) -> Tuple[np.ndarray, Optional[LinearDecoders]]:
        """As :meth:`Fastl2lirDecoder.fit_predict`."""
        import torch
        y_np = np.asarray(y_train, dtype=self.np_dtype)
        xt = torch.as_tensor(np.asarray(x_test, dtype=self.np_dtype)).to(self.device)
        xt1 = torch.cat([xt, torch.ones(len(xt), 1, dtype=self.dtype, device=self.device)], 1)
        units = y_np.shape[1]
        if self.num_voxel >= self.n_voxels:  # no selection: one system, U right-hand sides
            rhs_all = (self.x1.T @ torch.as_tensor(y_np).to(self.device)).T
            w = torch.linalg.solve(self.gram, rhs_all.T).T
            decoders = None
            if keep:
                w_np = w.cpu().numpy()
                index = np.broadcast_to(np.arange(self.n_voxels, dtype=np.int32),
                                        (units, self.n_voxels)).copy()
                decoders = LinearDecoders(index, w_np[:, :-1].copy(), w_np[:, -1].copy())
            return (xt1 @ w.T).cpu().numpy(), decoders
        y = torch.as_tensor(y_np).to(self.device)
        selected = self.select(y_np)
        bias_col = torch.full((units, 1), self.n_voxels, dtype=torch.int64, device=self.device)
        columns = torch.cat([selected.to(self.device), bias_col], dim=1)  # (U, k + 1)
        rhs_sel = torch.gather((self.x1.T @ y).T, 1, columns)  # X1'y at the selected columns
        prediction = torch.empty(len(xt), units, dtype=self.dtype, device=self.device)
        weights = torch.empty(units, columns.shape[1], dtype=self.dtype,
                              device=self.device) if keep else None
        for start in range(0, units, self.batch_units):
            cols = columns[start:start + self.batch_units]
            systems = self.gram[cols[:, :, None], cols[:, None, :]]
            w = _solve_spd(systems, rhs_sel[start:start + len(cols)], self.device)
            prediction[:, start:start + len(cols)] = torch.einsum("nbk,bk->nb", xt1[:, cols], w)
            if keep:
                weights[start:start + len(cols)] = w
        decoders = None
        if keep:
            w = weights.cpu().numpy()
            decoders = LinearDecoders(selected.cpu().numpy().astype(np.int32), w[:, :-1],
                                      w[:, -1].copy())
        return prediction.cpu().numpy(), decoders


@contextlib.contextmanager
def _one_cpu_thread(device):
    """One intra-op thread on the CPU: batched small Cholesky factorisations run several
    times slower with MKL's threads than one after another on one core."""
    import torch
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _solve_spd(systems, rhs, device):
    """Solve the batch ``systems @ w = rhs`` (symmetric positive definite for alpha > 0)
    by Cholesky; systems that are not positive definite to working precision (alpha 0)
    are solved by LU with partial pivoting."""
    import torch
    with _one_cpu_thread(device):
        factor, info = torch.linalg.cholesky_ex(systems)
        w = torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1)
        failed = info != 0
        if bool(failed.any()):
            w[failed] = torch.linalg.solve(systems[failed], rhs[failed].unsqueeze(-1)).squeeze(-1)
    return w


def make_decoder(name: str, x_train: np.ndarray, alpha: float = DEFAULT_ALPHA,
                 num_voxel: int = DEFAULT_NUM_VOXEL, dtype: str = "float32", device=None):
    """A decoder of :data:`DECODERS` prepared for one training set.

    ``device`` is used by ``"torch"`` only (FastL2LiR runs on the CPU with NumPy).
    """
    if name == "fastl2lir":
        return Fastl2lirDecoder(x_train, alpha, num_voxel, dtype)
    if name == "torch":
        return TorchDecoder(x_train, alpha, num_voxel, dtype, device)
    raise ConfigError(f"decoder must be one of {', '.join(DECODERS)}, not {name!r}")
