"""The advice layer: from what went wrong (an :class:`~icnn_torch.errors.IcnnTorchError`'s
facts) to the command that fixes it, in the terms of the command the user ran.

The library raises errors that carry the files and the download items involved, never a
shell command. Here a :class:`Context` (how the user started things: which script, with
which selection, which data and net folders) turns them into one line: the error's
summary and, where there is one, the fix, e.g. ::

    error: net/VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.caffemodel is damaged: ...;
    replace it with: python -m icnn_torch.download --verify vgg19

Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Optional, Sequence

from .._util import PathLike
from ..errors import (DamagedFileError, DeviceError, IcnnTorchError, MissingDataError,
                      NonFiniteError, OutputError)
from ..store.layout import (DEFAULT_DATA_DIR, DEFAULT_NET_DIR, RUN_RECORD_NAME,
                            parse_decoded_feature_zip_name)

__all__ = ["Context", "as_given", "download_command", "script_download_command", "fix_for",
           "render"]

def as_given(path: PathLike) -> Path:
    """``path`` relative to the current folder when it lies inside it (for messages)."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()) if path.is_absolute() else path
    except ValueError:
        return path


@dataclasses.dataclass(frozen=True)
class Context:
    """What the command line knows that the library does not.

    Attributes
    ----------
    data_dir, net_dir : path
        The folders the command uses, as the user would type them.
    script : str, optional
        The figure script as the user named it (commands then use ``--script``).
    selection : tuple of str
        The script's command-line selection where it differs from its constants
        (``("--subjects", "S1")``...).
    script_dirs : (path, path), optional
        The script's own data and net folders: what ``--script`` uses by itself.
    features_published : bool
        The decoded features come from the published tree (downloadable).
    download_options : tuple of str
        ``--pytorch`` / ``--verify`` as the download command that failed used them.
    results_option : str or None
        How to choose another results folder (``--results-dir``), if the command has one.
    uses_generator : bool
        The run optimises the generator input (for the advice on non-finite losses).
    rerun_command : str, optional
        The command the user ran when it fetches what it lacks by itself with ``--yes``
        (``python decode_features.py --subjects S1``): the fix for missing files is then
        that command with ``--yes``, and for a damaged one deleting it first.
    """

    data_dir: PathLike = DEFAULT_DATA_DIR
    net_dir: PathLike = DEFAULT_NET_DIR
    script: Optional[str] = None
    selection: tuple = ()
    script_dirs: Optional[tuple] = None
    features_published: bool = True
    download_options: tuple = ()
    results_option: Optional[str] = None
    uses_generator: bool = False
    rerun_command: Optional[str] = None


def download_command(items: Sequence[str], ctx: Context = Context(),
                     options: Sequence[str] = (),
                     defaults: Optional[tuple] = None) -> str:
    """``python -m icnn_torch.download [options] [--data-dir D] [--net-dir N] items``.

    ``--data-dir`` / ``--net-dir`` are added only when they are not the folders the
    command uses by itself (``defaults``: ``data`` and ``net`` of the current folder).
    """
    parts = ["python", "-m", "icnn_torch.download", *options]
    defaults = defaults or (DEFAULT_DATA_DIR, DEFAULT_NET_DIR)
    for flag, value, default in (("--data-dir", ctx.data_dir, defaults[0]),
                                 ("--net-dir", ctx.net_dir, defaults[1])):
        if Path(value).resolve() != Path(default).resolve():
            parts += [flag, shlex.quote(str(value))]
    parts += [shlex.quote(n) for n in items]
    return " ".join(parts)


def script_download_command(ctx: Context) -> str:
    """``python -m icnn_torch.download --script <script> [selection] --yes [folders]``: the
    selection where it differs from the script's constants, the folders where they are not
    the script's own."""
    options = ["--script", shlex.quote(ctx.script), *ctx.selection, *ctx.download_options,
               "--yes"]
    return download_command((), ctx, options, ctx.script_dirs)


def _damaged_fix(err: DamagedFileError, ctx: Context) -> Optional[str]:
    path, item = Path(err.path), err.item
    name = path.name
    if item is not None and ctx.rerun_command:
        return f"rm {shlex.quote(str(as_given(path)))} && {ctx.rerun_command} --yes"
    if item is None:
        if name == RUN_RECORD_NAME:
            return "rerun the script (it rewrites the record)"
        if name.startswith("recon_img-"):
            return "rerun its script with --force"
        return None
    quoted = shlex.quote(str(as_given(path)))
    if parse_decoded_feature_zip_name(item) is not None:
        if not ctx.features_published:
            return None
        if ctx.script:
            return f"rm {quoted} && python {shlex.quote(ctx.script)}"
        return download_command([item], ctx, ["--verify"])
    if item in ("vgg19", "generator"):
        pytorch = ["--pytorch"] if name.endswith((".pt", ".pth")) else []
        if item == "vgg19" and not pytorch:
            return download_command([item], ctx, ["--verify"])  # its md5 is published
        return f"rm {quoted} && {download_command([item], ctx, pytorch)}"
    return download_command([item], ctx, ["--verify"])  # figshare files and fc7.txt: md5s


def fix_for(err: IcnnTorchError, ctx: Context = Context()) -> Optional[str]:
    """The command (or sentence) that fixes ``err`` in ``ctx``; None when the message says
    all there is."""
    if isinstance(err, MissingDataError):
        if not err.items:
            return None
        if ctx.rerun_command:
            return f"{ctx.rerun_command} --yes"
        if any(parse_decoded_feature_zip_name(i) for i in err.items) and \
                not ctx.features_published:
            return None
        if ctx.script:
            return script_download_command(ctx)
        return download_command(err.items, ctx, ctx.download_options)
    if isinstance(err, DamagedFileError):
        return _damaged_fix(err, ctx)
    if isinstance(err, DeviceError) and (ctx.script or ctx.rerun_command):
        return "use --device cpu (or device = None in the script)"
    if isinstance(err, OutputError) and ctx.results_option:
        return f"choose a writable {ctx.results_option}"
    if isinstance(err, NonFiniteError):
        command = download_command(["vgg19"], ctx, ["--verify"])
        text = f"check the VGG19 weights by their published md5: {command}"
        if ctx.uses_generator:
            text += ("; no md5 of the generator is published, so a damaged generator can only "
                     "be deleted and downloaded again")
        return text
    return None


def render(err: IcnnTorchError, ctx: Context = Context()) -> str:
    """The one line the command line prints for ``err`` (without ``error:``)."""
    summary, fix = err.summary(), fix_for(err, ctx)
    if isinstance(err, MissingDataError):
        if fix is not None and ctx.script:
            return (f"{summary} Download with: {fix} (or point the script's data_dir and "
                    "net_dir at the folders that hold them)")
        if fix is not None:
            return f"{summary} Download with: {fix}"
        if any(parse_decoded_feature_zip_name(i) for i in err.items) and \
                not ctx.features_published:
            return f"{summary} This decoded-feature tree is not the published one: decode the " \
                   "features into it again."
        return summary
    if isinstance(err, DamagedFileError):
        if fix is not None:
            extra = ""
            if ctx.script and err.item and parse_decoded_feature_zip_name(err.item):
                extra = f"; once it is deleted the script downloads {err.item} again"
            return f"{summary}{extra}; replace it with: {fix}"
        if err.item and parse_decoded_feature_zip_name(err.item) and not ctx.features_published:
            return f"{summary} (in a decoded-feature tree that is not the published one: " \
                   "write this file again)"
        return summary
    return f"{summary}; {fix}" if fix else summary
