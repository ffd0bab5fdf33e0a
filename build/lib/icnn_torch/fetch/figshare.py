"""The file list of figshare article 7033577: the one shipped with the package (names, ids,
md5s; :func:`icnn_torch.store.published.published_files`) with the sizes that
``--refresh-list`` reads from the figshare API and caches in the data folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Dict

import requests

from .._util import PathLike, atomic_output
from ..errors import DownloadError
from ..store import published
from ..store.layout import DEFAULT_DATA_DIR
from ..store.published import ARTICLE_ID, FigshareFile
from .http import USER_AGENT, remote_url

__all__ = ["MANIFEST_FILENAME", "manifest_path", "article_files", "refresh_file_list"]

MANIFEST_FILENAME = f"figshare_article_{ARTICLE_ID}_files.json"


def manifest_path(data_dir: PathLike = DEFAULT_DATA_DIR) -> Path:
    """Where ``--refresh-list`` caches the sizes of the article's files."""
    return Path(data_dir, MANIFEST_FILENAME)


def article_files(data_dir: PathLike = DEFAULT_DATA_DIR) -> Dict[str, FigshareFile]:
    """The shipped file list (:func:`icnn_torch.store.published.published_files`) with the sizes cached
    by :func:`refresh_file_list` where id and md5 agree; no network."""
    files = published.published_files()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        for entry in json.loads(manifest_path(data_dir).read_text(encoding="utf-8")):
            known = files.get(entry["name"])
            if known and (known.id, known.md5) == (entry["id"], entry["md5"]):
                files[known.name] = dataclasses.replace(known, size=int(entry["size"]))
    return files


def refresh_file_list(data_dir: PathLike = DEFAULT_DATA_DIR,
                      timeout: float = 60.0) -> Dict[str, FigshareFile]:
    """Read the file list from the figshare API, check it against the shipped one (names,
    ids, md5) and cache its sizes (:func:`manifest_path`, normal file permissions).

    Raises
    ------
    DownloadError
        The API cannot be read, or its list differs from the shipped one (the differences
        are named; nothing is cached).
    """
    url = f"{remote_url('figshare_api').rstrip('/')}/articles/{ARTICLE_ID}/files"
    entries: list = []
    for page in range(1, 21):  # the article has 251 files
        try:
            response = requests.get(url, params={"page_size": 1000, "page": page},
                                    timeout=timeout, headers={"User-Agent": USER_AGENT})
            response.raise_for_status()
            batch = [{"name": str(e["name"]), "id": int(e["id"]), "size": int(e["size"]),
                      "md5": str(e.get("computed_md5") or e.get("supplied_md5")).lower()}
                     for e in response.json()]
        except (requests.RequestException, ValueError, KeyError, TypeError) as err:
            raise DownloadError(f"could not read the figshare file list from {url}: {err}") \
                from err
        entries += batch
        if len(batch) < 1000:
            break
    shipped, remote = published.published_files(), {e["name"]: e for e in entries}
    differences = [f"{n} is not in the shipped list" for n in remote if n not in shipped] + [
        f"{n}: id {remote[n]['id']}, md5 {remote[n]['md5']}; shipped {f.id}, {f.md5}"
        if n in remote else f"{n} is not in the article" for n, f in shipped.items()
        if n not in remote or (remote[n]["id"], remote[n]["md5"]) != (f.id, f.md5)]
    if differences:
        raise DownloadError(f"the figshare file list ({url}) differs from the one shipped with "
                            f"icnn-torch in {len(differences)} place(s): "
                            f"{'; '.join(differences[:5])}; nothing was cached")
    with atomic_output(manifest_path(data_dir)) as tmp:
        tmp.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return article_files(data_dir)
