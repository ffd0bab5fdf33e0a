"""A script's engine options: checked against the engine (every problem at once), the
scripts' symbolic values resolved, and described for the run record.

A script's ``opts`` are the keyword options of its engine's ``reconstruct_image``. Three
values are symbolic, so that ``options.pkl`` stays small and readable, and resolved when
the run starts (:func:`resolve_options`): ``initial_image='mean'`` (the flat image of the
ImageNet mean colour), ``initial_gen_feat='zeros'``, and ``feat_upper_bound='fc7_3x'``
(``data/act_range/3x/fc7.txt``, the paper's bounds of the generator input: 3 SD of fc7) or,
for ``icnn_dgn_lbfgs``, ``gen_feat_bounds='fc7_3x'`` (the pairs ``(0, bound)``).
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from .._util import file_md5
from ..errors import ConfigError
from ..nets.tables import GENERATOR_INPUT_SIZE
from ..recon.engines import ENGINES, EngineInfo
from ..store.layout import fc7_bounds_path
from ..store.net_data import load_fc7_upper_bound
from ..store.record import json_plain
from .config import RunPlan, ScriptConfig

__all__ = ["SYMBOLIC_OPTIONS", "MANAGED_OPTIONS", "engine_parameters", "check_options",
           "resolve_options", "describe_options", "bounds_note"]

#: The symbolic option values the scripts use, resolved at run time.
SYMBOLIC_OPTIONS = {"initial_image": ("mean",), "initial_gen_feat": ("zeros",),
                    "feat_upper_bound": ("fc7_3x",), "gen_feat_bounds": ("fc7_3x",)}
#: The option of each DGN engine that bounds the generator input.
BOUND_OPTIONS = {"icnn_dgn_gd": "feat_upper_bound", "icnn_dgn_lbfgs": "gen_feat_bounds"}
#: Options the scripts set themselves (layer weights from the features, snapshots from
#: ``snapshot_every``).
MANAGED_OPTIONS = ("layer_weight", "save_intermediate", "save_intermediate_every",
                   "save_intermediate_path")
_ARGUMENTS = ("features", "net", "net_gen")


def engine_parameters(module) -> dict[str, inspect.Parameter]:
    """The keyword options of an engine module's ``reconstruct_image``, in order."""
    return {name: p for name, p in inspect.signature(module.reconstruct_image).parameters.items()
            if name not in _ARGUMENTS}


def _scripts_using(engine: str, folder: Path) -> list[tuple[str, dict]]:
    """(script file name, opts) of the numbered scripts in ``folder`` that run ``engine``."""
    found = []
    for path in sorted(folder.glob("[0-9]*_*.py")):
        try:
            config = ScriptConfig.from_file(path)
        except Exception:  # noqa: BLE001 - a suggestion only: skip what cannot be read
            continue
        if config.engine == engine:
            found.append((path.name, dict(config.opts)))
    return found


def check_options(plan: RunPlan, module, script_folder: Optional[Path] = None) -> None:
    """Every problem of ``plan.options`` for its engine, in one error.

    Checks that each option is a keyword of the engine, that the script does not set
    what it manages itself (layer weights, snapshots), and that symbolic values are known
    ones. The message says, for each problem, what the engine takes instead (its
    iteration and progress options, the closest keyword), lists the engine's options,
    and, when another numbered script in ``script_folder`` runs the same engine, gives
    that script's ``opts`` as a starting point.

    Raises
    ------
    ConfigError
    """
    info: EngineInfo = ENGINES[plan.engine]
    accepted = engine_parameters(module)
    problems = []
    for key, value in plan.options.items():
        if key in MANAGED_OPTIONS:
            problems.append(f"{key!r} (the script sets it: layer weights from the features, "
                            "snapshots from snapshot_every)")
        elif key not in accepted:
            if key in ("iter_n", "maxiter"):
                why = f"{plan.engine} counts iterations with {info.iteration_option!r}"
            elif key in ("disp", "disp_every"):
                why = f"its progress option is {info.display_option!r}"
            else:
                close = difflib.get_close_matches(key, list(accepted), n=1, cutoff=0.6)
                why = f"did you mean {close[0]!r}?" if close else \
                    f"not an option of {plan.engine}"
            problems.append(f"{key!r} ({why})")
        elif isinstance(value, str) and key in SYMBOLIC_OPTIONS and \
                value not in SYMBOLIC_OPTIONS[key]:
            problems.append(f"{key!r} = {value!r} (the known symbolic values are "
                            f"{', '.join(map(repr, SYMBOLIC_OPTIONS[key]))}; or give an array)")
    if not problems:
        return
    offered = [k for k in accepted if k not in MANAGED_OPTIONS]
    message = (f"opts does not fit {plan.engine}: {'; '.join(problems)}. {plan.engine} takes "
               f"{', '.join(offered)}")
    others = [(name, opts) for name, opts in _scripts_using(plan.engine, script_folder)
              if name != f"{plan.script_name}.py"] if script_folder is not None else []
    if others:
        name, opts = others[0]
        message += f". {name} runs {plan.engine} with opts = {opts!r}"
    raise ConfigError(message)


def resolve_options(options: Mapping[str, Any], net, data_dir: Path) -> dict:
    """The options with the scripts' symbolic values replaced by what they stand for.

    Parameters
    ----------
    options : mapping
        A script's ``opts`` (with the iteration count of its overrides).
    net : VGG19 or encoder
        Its ``input_size`` and ``img_mean`` (BGR) make ``initial_image='mean'``.
    data_dir : Path
        Where ``act_range/3x/fc7.txt`` is (``feat_upper_bound='fc7_3x'``).

    Raises
    ------
    MissingDataError, DamagedFileError
        The fc7 bounds file is absent or damaged.
    """
    out = dict(options)

    def symbolic(key: str) -> bool:
        return isinstance(out.get(key), str)  # arrays given in opts are used as they are

    if symbolic("initial_image"):  # "mean": the flat RGB image of the mean colour
        h, w = net.input_size
        out["initial_image"] = np.broadcast_to(
            np.asarray(net.img_mean, np.float32)[::-1], (h, w, 3)).copy()
    if symbolic("initial_gen_feat"):  # "zeros"
        out["initial_gen_feat"] = np.zeros(GENERATOR_INPUT_SIZE, dtype=np.float32)
    if symbolic("feat_upper_bound"):  # "fc7_3x": data/act_range/3x/fc7.txt
        out["feat_upper_bound"] = load_fc7_upper_bound(fc7_bounds_path(data_dir))
    if symbolic("gen_feat_bounds"):  # "fc7_3x": (0, bound) per unit
        upper = load_fc7_upper_bound(fc7_bounds_path(data_dir))
        out["gen_feat_bounds"] = np.stack([np.zeros_like(upper), upper], axis=1)
    return out


def _describe(value: Any) -> Any:
    """A value as the record can hold it: arrays by shape and dtype, code by name."""
    if isinstance(value, np.ndarray):
        return f"array {value.shape} {value.dtype}"
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray):
        return f"{len(value)} arrays {value[0].shape} {value[0].dtype}"
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', value)}"
    return json_plain(value)


def describe_options(module, options: Mapping[str, Any], data_dir: Path) -> dict:
    """Every option the engine runs with, for the run record: the script's (symbolic values
    named, with the file they stand for) and the engine's defaults for the rest.

    ``options`` are the script's options (symbolic values not yet resolved, the display
    option as the run sets it). The options the script sets itself are described, not
    listed by value.
    """
    out: dict[str, Any] = {}
    for name, param in engine_parameters(module).items():
        if name == "layer_weight":
            out[name] = "1/||f||^2 per layer of each image's features, normalised to sum 1"
        elif name == "save_intermediate_path":
            out[name] = "<results>/.../snapshots/image-<label>"
        elif name in ("save_intermediate", "save_intermediate_every"):
            continue  # given by snapshot_every in the record
        elif name in options:
            value = options[name]
            if isinstance(value, str) and name in SYMBOLIC_OPTIONS:
                out[name] = _symbolic_description(name, value, data_dir)
            else:
                out[name] = _describe(value)
        else:
            out[name] = _describe(param.default)
    return out


def _symbolic_description(name: str, value: str, data_dir: Path) -> dict:
    if name in ("feat_upper_bound", "gen_feat_bounds"):
        path = fc7_bounds_path(data_dir)
        return {"symbol": value, "file": str(path),
                "md5": file_md5(path) if path.is_file() else None}
    what = {"mean": "the flat image of the ImageNet mean colour", "zeros": "the zero vector"}
    return {"symbol": value, "means": what.get(value, value)}


def bounds_note(plan: RunPlan, module) -> Optional[str]:
    """One line when a DGN engine runs without the paper's fc7 bounds, else None."""
    name = BOUND_OPTIONS.get(plan.engine)
    if name is None:
        return None
    given = plan.options.get(name, inspect.Parameter.empty)
    if isinstance(given, str) and given == "fc7_3x":
        return None
    if given is inspect.Parameter.empty:
        default = engine_parameters(module)[name].default
        what = f"{name} = {default!r} (the engine's default" + \
            (": (0, 100) per unit)" if default is None else ")")
    else:
        what = f"the {name} of opts"
    return (f"note: {plan.engine} runs with {what}, not the paper's fc7 bounds "
            f"({name} = 'fc7_3x': data/act_range/3x/fc7.txt, 3 SD of fc7)")
