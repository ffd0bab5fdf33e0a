"""A figure script's constants, and the plan of one run derived from them.

The seven numbered scripts (and any copy of them, under any name) are the one record of
a figure's settings: :class:`ScriptConfig` holds their constants, :meth:`ScriptConfig.plan`
turns them (plus command-line overrides) into a :class:`RunPlan`: the image type,
network, engine, subjects, ROIs, image labels in order, layer sets and options of one
run. Everything else derives from the plan: the files to download
(:func:`icnn_torch.download.items_for_plan`), the jobs, the run record written beside
``options.pkl`` (:mod:`icnn_torch.store.record`), and what ``evaluate`` and ``figure`` read
back from it.

Nothing here imports torch, so that a script's ``--help`` answers at once.
"""

from __future__ import annotations

import os
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Mapping, Optional, Sequence

from .._util import PathLike
from ..errors import ConfigError
from ..recon.engines import engine_info
from ..store.record import plain_values
from .advice import Context, as_given
from .script import ScriptConstants

__all__ = ["ScriptConfig", "RunPlan", "find_script", "script_context", "DEFAULT_FEATURES_DIR"]

#: Where the scripts read decoded features (relative to the project root), as the
#: original's ``decoded_features_dir``.
DEFAULT_FEATURES_DIR = "./data/decodedfeatures"

@dataclass(kw_only=True)
class ScriptConfig(ScriptConstants):
    """The constants of one figure script (names as in the original scripts).

    Attributes
    ----------
    script_file : str
        The script's path; its stem names the results folder, and its folder is the
        project root (``data/``, ``net/``, ``results/``) unless the environment variable
        ``ICNN_TORCH_ROOT`` points elsewhere.
    image_type, network : str
        E.g. ``"natural"``, ``"VGG19"`` (``"VGG19_leaky"`` for script 7).
    subjects_list, rois_list, image_label_list : list of str
    engine : str
        One of :data:`icnn_torch.recon.engines.ENGINES`.
    opts : dict
        Keyword options of the engine's ``reconstruct_image``. The symbolic values
        ``initial_image="mean"`` (the flat mean-colour image), ``initial_gen_feat="zeros"``
        and ``feat_upper_bound="fc7_3x"`` (``data/act_range/3x/fc7.txt``) are resolved at
        run time, so that ``options.pkl`` stays small and readable.
    layers : list of str, optional
        The feature layers (every script but 3).
    layers_sets : dict of str to list of str, optional
        Script 3: named layer combinations, each reconstructed into its own folder.
    results_dir : str
        Results go to ``<results_dir>/<script name>/``.
    decoded_features_dir : str
        The decoded-feature tree (``<dir>/<image_type>/<network>/<layer>/<subject>/<roi>/``),
        as the original's constant: the published features (``./data/decodedfeatures``,
        downloaded when missing) or a tree decoded from fMRI (only checked).
    snapshot_every : int
        Snapshot period in the engine's steps (iterations, or function evaluations for
        L-BFGS); 1 is the original's; 0: no snapshots.
    batch_size : int
        Images reconstructed together by the GD engines (the same arithmetic as one at a
        time, in another float32 rounding: see the README); 1 for the L-BFGS engines.
    figure_title : str
        The paper's figure this script reproduces, its number and title, e.g.
        ``"Fig 2. Seen natural image reconstructions"``; default: the script's name.
    data_dir, net_dir, download, overwrite, device
        See :class:`~icnn_torch.run.script.ScriptConstants`.
    """

    HELPER_NAMES: ClassVar[frozenset] = frozenset({"iter_n", "maxiter"})
    REQUIRED: ClassVar[tuple] = ("image_type", "network", "subjects_list", "rois_list",
                                 "image_label_list", "engine", "opts")

    image_type: str
    network: str
    subjects_list: Sequence[str]
    rois_list: Sequence[str]
    image_label_list: Sequence[str]
    engine: str
    opts: dict
    layers: Optional[Sequence[str]] = None
    layers_sets: Optional[Mapping[str, Sequence[str]]] = None
    results_dir: str = "./results"
    decoded_features_dir: str = DEFAULT_FEATURES_DIR
    snapshot_every: int = 1
    batch_size: int = 1
    figure_title: str = ""

    @classmethod
    def from_file(cls, script: PathLike, root: Optional[PathLike] = None) -> "ScriptConfig":
        """Read the constants of a script file without running its reconstruction.

        Parameters
        ----------
        script : path or str
            The script's path, or its name or number (see :func:`find_script`).
        root : path, optional
            Where a name or number is looked up (default: the current folder).
        """
        path = find_script(script, root)
        try:
            constants = runpy.run_path(str(path), run_name="icnn_torch_constants")
        except SyntaxError as err:
            raise ConfigError(f"{path}: not a valid Python script ({err})") from err
        constants.setdefault("__file__", str(path))
        return cls.from_constants(constants)

    def plan(self, subjects: Optional[Sequence[str]] = None,
             rois: Optional[Sequence[str]] = None, labels: Optional[Sequence[str]] = None,
             layer_sets: Optional[Sequence[str]] = None,
             iterations: Optional[int] = None) -> "RunPlan":
        """The run these constants describe, with optional overrides (quick checks).

        Parameters
        ----------
        subjects, rois, labels : sequence of str, optional
            Replace ``subjects_list`` / ``rois_list`` / ``image_label_list``.
        layer_sets : sequence of str, optional
            Script 3: run only these of ``layers_sets`` (in this order).
        iterations : int, optional
            Replace the engine's iteration count (``iter_n`` / ``maxiter``) in ``opts``.

        Raises
        ------
        ConfigError
            An unknown engine, an unknown layer set, or an empty selection (the options
            are checked against the engine by :func:`icnn_torch.run.options.check_options`).
        """
        info = engine_info(self.engine)
        options = dict(self.opts)
        if iterations is not None:
            if iterations < 1:
                raise ConfigError(f"the number of iterations must be at least 1, not {iterations}")
            options[info.iteration_option] = int(iterations)
        if self.layers_sets is not None:
            names = list(self.layers_sets) if layer_sets is None else list(layer_sets)
            unknown = [s for s in names if s not in self.layers_sets]
            if unknown:
                raise ConfigError(f"unknown layer set(s) {', '.join(unknown)}; this script has "
                                  f"{', '.join(self.layers_sets)}")
            sets = {s: tuple(self.layers_sets[s]) for s in names}
        else:
            if layer_sets is not None:
                raise ConfigError(f"{self.script_name} has no layer sets (it defines `layers`)")
            if not self.layers:
                raise ConfigError(f"{self.script_name} defines neither `layers` nor `layers_sets`")
            sets = None
        plan = RunPlan(
            script_name=self.script_name, image_type=self.image_type, network=self.network,
            engine=self.engine, figure_title=self.figure_title or self.script_name,
            subjects=tuple(self.subjects_list if subjects is None else subjects),
            rois=tuple(self.rois_list if rois is None else rois),
            labels=tuple(self.image_label_list if labels is None else labels),
            layers=tuple(self.layers) if sets is None else (),
            layer_sets=sets, options=options)
        for name, values in (("subjects", plan.subjects), ("ROIs", plan.rois),
                             ("image labels", plan.labels)):
            if not values:
                raise ConfigError(f"no {name} selected")
        return plan


@dataclass(frozen=True)
class RunPlan:
    """What one run of a script does.

    Attributes
    ----------
    script_name : str
    image_type, network, engine : str
    figure_title : str
    subjects, rois, labels : tuple of str
        In the script's order (labels are the columns of its figure).
    layers : tuple of str
        The feature layers (empty when ``layer_sets`` is given).
    layer_sets : dict of str to tuple of str, or None
        Script 3's named layer combinations, each its own results folder.
    options : dict
        The engine's keyword options, iteration count included (symbolic values as in
        the script).
    """

    script_name: str
    image_type: str
    network: str
    engine: str
    figure_title: str
    subjects: tuple
    rois: tuple
    labels: tuple
    layers: tuple = ()
    layer_sets: Optional[dict] = None
    options: dict = field(default_factory=dict)

    @property
    def all_layers(self) -> tuple:
        """Every layer the run reads, in first-use order (the union of the layer sets)."""
        if self.layer_sets is None:
            return tuple(self.layers)
        return tuple(dict.fromkeys(l for ls in self.layer_sets.values() for l in ls))

    @property
    def iterations(self) -> Optional[int]:
        """The engine's iteration count (``iter_n`` / ``maxiter``) when the options set it."""
        return self.options.get(engine_info(self.engine).iteration_option)

    @property
    def uses_generator(self) -> bool:
        return engine_info(self.engine).uses_generator

    def to_record(self) -> dict:
        """The plan as the JSON fields of the run record (:mod:`icnn_torch.store.record`):
        ``script``, ``figure_title``, ``image_type``, ``network``, ``engine``,
        ``subjects``, ``rois``, ``labels``, ``layers``, ``layer_sets`` (null or
        name -> layers), ``iterations`` and ``options`` (arrays as lists)."""
        return {"script": self.script_name, "figure_title": self.figure_title,
                "image_type": self.image_type, "network": self.network,
                "engine": self.engine, "subjects": list(self.subjects),
                "rois": list(self.rois), "labels": list(self.labels),
                "layers": list(self.all_layers),
                "layer_sets": None if self.layer_sets is None else
                {name: list(ls) for name, ls in self.layer_sets.items()},
                "iterations": self.iterations, "options": plain_values(self.options)}

    def layers_of(self, layer_set: Optional[str]) -> tuple:
        """The layers of one job: of its layer set, or :attr:`layers`."""
        return tuple(self.layers) if layer_set is None else tuple(self.layer_sets[layer_set])


def find_script(script: PathLike, root: Optional[PathLike] = None) -> Path:
    """The file of a script given by path, file name, name without ``.py``, or number.

    A number (``"5"``) or a name prefix (``"5_reconstruct"``) is looked up among the
    ``*.py`` files of ``root`` (default: the current folder) whose name starts with it
    followed by ``_`` (for a number) or that equal it with ``.py`` added.

    Raises
    ------
    ConfigError
        No such file, or a number that matches several scripts.
    """
    text = os.fspath(script)
    candidate = Path(text)
    if candidate.suffix == ".py" and candidate.is_file():
        return candidate
    base = Path(root) if root is not None else Path(".")
    if candidate.is_absolute() or len(candidate.parts) > 1:
        options = [candidate, candidate.with_name(candidate.name + ".py")]
    else:
        options = [base / text, base / f"{text}.py"]
    for path in options:
        if path.suffix == ".py" and path.is_file():
            return path
    if text.isdigit():
        matches = sorted(base.glob(f"{text}_*.py"))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConfigError(f"script number {text} matches {', '.join(m.name for m in matches)}; "
                              "give the file name")
    known = ", ".join(sorted(p.name for p in base.glob("[0-9]*_*.py"))) or "none"
    raise ConfigError(f"no script {text!r} (looked in {base.resolve()}; scripts there: {known})")


def script_context(script_arg: str, plan: Optional[RunPlan], data_dir: PathLike,
                   net_dir: PathLike, features_published: bool = True,
                   download_options: Sequence[str] = (),
                   results_option: Optional[str] = None) -> Context:
    """The advice context of a script run (or of ``download --script``): the script as the
    user named it, the selection where ``plan`` differs from the script's constants, the
    folders as given and the script's own (what ``--script`` uses by itself)."""
    try:
        config = ScriptConfig.from_file(script_arg)
        base = config.plan()
        script_dirs = (config.path(config.data_dir), config.path(config.net_dir))
    except Exception:  # noqa: BLE001 - advice only: name the whole selection then
        base, script_dirs = None, None
    selection: list[str] = []
    for flag, attribute in (("--subjects", "subjects"), ("--rois", "rois"),
                            ("--labels", "labels"), ("--layers-sets", "layer_sets")):
        mine = tuple((getattr(plan, attribute) or ()) if plan is not None else ())
        if mine and (base is None or mine != tuple(getattr(base, attribute) or ())):
            selection += [flag, ",".join(mine)]
    return Context(data_dir=as_given(data_dir), net_dir=as_given(net_dir), script=script_arg,
                   selection=tuple(selection), script_dirs=script_dirs,
                   features_published=features_published,
                   download_options=tuple(download_options), results_option=results_option,
                   uses_generator=bool(plan is not None and plan.uses_generator))
