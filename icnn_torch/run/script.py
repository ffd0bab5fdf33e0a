"""What every script of the project shares: its constants read from its module, checked for
typos, and its folders resolved.

The seven figure scripts (:class:`icnn_torch.run.config.ScriptConfig`) and
``decode_features.py`` (:class:`icnn_torch.decoding.config.DecodeConfig`) are records of
constants followed by one call. Both read them with :meth:`ScriptConstants.from_constants`:
a lower-case module-level name that is no setting, no imported module, class or function
stops the run and names the closest setting (``subject_list`` -> ``subjects_list``), so a
misspelled constant never runs silently with the default. A script may keep helper values
of its own under names that start with ``_`` (``_my_labels = [...]``).

Paths in the constants are relative to the script's folder (the project root), or to
``ICNN_TORCH_ROOT`` when it is set; absolute paths stay as they are.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

from .._util import PathLike
from ..errors import ConfigError

__all__ = ["ScriptConstants", "ROOT_ENV", "DOWNLOAD_CHOICES", "assume_yes_of",
           "unknown_constants"]

#: Environment variable naming the project root (``data/``, ``net/``, ``results/``).
ROOT_ENV = "ICNN_TORCH_ROOT"
#: The values of the ``download`` constant.
DOWNLOAD_CHOICES = ("ask", "yes", "no")


def unknown_constants(constants: Mapping[str, Any], known: set[str]) -> list[str]:
    """The lower-case public module-level names of ``constants`` that are not in ``known``
    and are no module, class or function (imports and helpers of the script)."""
    def is_code(value: Any) -> bool:
        return isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                                  type)) or callable(value) and hasattr(value, "__module__") \
            and isinstance(value, types.MethodType)
    return [name for name, value in constants.items()
            if not name.startswith("_") and name == name.lower() and name not in known
            and not is_code(value)]


def _typo_message(where: str, unknown: list[str], known: set[str]) -> str:
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return (f"{where} defines {', '.join(parts)}, which {'is' if len(unknown) == 1 else 'are'} "
            f"not {'a setting' if len(unknown) == 1 else 'settings'} of this script; a "
            "helper value of your own: start its name with '_'")


@dataclasses.dataclass
class ScriptConstants:
    """The constants every script has: its file, its folders, how it downloads and where
    it computes.

    Attributes
    ----------
    script_file : str
        The script's path; its folder is the project root unless ``ICNN_TORCH_ROOT`` is set.
    data_dir, net_dir : str
        The data and weights folders (``data``, ``net``), relative to the root.
    download : {"ask", "yes", "no"}
        Missing files: ask on a terminal (never without one), download, or stop with the
        command that downloads them.
    overwrite : bool
        Redo what exists.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: CUDA when present (the rank's
        GPU under torchrun), else CPU.
    """

    #: Script names that are no setting but are the original's names of values the
    #: settings use (the iteration count inside ``opts``).
    HELPER_NAMES: ClassVar[frozenset] = frozenset()
    #: Constants a script must define.
    REQUIRED: ClassVar[tuple] = ()

    script_file: str
    data_dir: str = "data"
    net_dir: str = "net"
    download: str = "ask"
    overwrite: bool = False
    device: Optional[str] = None

    @classmethod
    def settings(cls) -> set[str]:
        """The names a script may set."""
        return {f.name for f in dataclasses.fields(cls)} - {"script_file"}

    @classmethod
    def from_constants(cls, constants: Mapping[str, Any]):
        """The configuration of a script's module-level constants (its ``globals()``).

        Raises
        ------
        ConfigError
            A required constant is missing, or a name is no setting (a typo: the message
            names the closest setting).
        """
        where = Path(str(constants.get("__file__", "the script"))).name
        missing = [n for n in cls.REQUIRED if n not in constants]
        if missing:
            raise ConfigError(f"{where} does not define {', '.join(missing)} "
                              f"(every script defines {', '.join(cls.REQUIRED)})")
        known = cls.settings()
        unknown = unknown_constants(constants, known | cls.HELPER_NAMES)
        if unknown:
            raise ConfigError(_typo_message(where, unknown, known))
        return cls(script_file=str(constants.get("__file__", "script.py")),
                   **{n: constants[n] for n in known if n in constants})

    @property
    def script_name(self) -> str:
        """The script's file name without ``.py``."""
        return Path(self.script_file).stem

    @property
    def root(self) -> Path:
        """The project root: ``ICNN_TORCH_ROOT`` when set, else the script's folder."""
        env = os.environ.get(ROOT_ENV)
        return Path(env).resolve() if env else Path(self.script_file).resolve().parent

    def path(self, relative: PathLike) -> Path:
        """A path of the constants (``data_dir``, ``results_dir``...) resolved against
        :attr:`root` (absolute paths stay as they are)."""
        return (self.root / relative).resolve()


def assume_yes_of(download: str, yes_flag: bool = False) -> Optional[bool]:
    """The download policy of the ``download`` constant and ``--yes``: True (download),
    False (stop), None (ask on a terminal).

    Raises
    ------
    ConfigError
        ``download`` is not one of ``ask``, ``yes``, ``no``.
    """
    if download not in DOWNLOAD_CHOICES:
        raise ConfigError(f"download must be 'ask', 'yes' or 'no', not {download!r}")
    if yes_flag or download == "yes":
        return True
    return False if download == "no" else None
