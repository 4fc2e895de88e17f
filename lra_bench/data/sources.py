"""Finding a task's files: `task.data_dir` (the task's own folder) or `paths.data_root`.

`paths.data_root` accepts the unpacked LRA release as users have it (the folder holding
`listops-1000/`, `tsv_data/`, `pathfinder32/`, ...) or the folder above it (holding
`lra_release/`), plus the usual downloads placed next to it (`aclImdb/`,
`cifar-10-batches-py/`, their `.tar.gz` archives). Each task names the relative paths
it can use; `candidates` lists where they would be, in the order they are tried, and
`not_found` turns the list into the one-line error a user sees.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from lra_bench.errors import DataError

RELEASE_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
RELEASE_DIRS = ("", "lra_release", "lra_release/lra_release")  # where the release's folders may sit under data_root


def candidates(data_dir: Optional[str], data_root: Optional[str], names: Sequence[str],
               own: Sequence[str] = ("",)) -> list[Path]:
    """Paths to try, in order.

    With `data_dir` set only it is searched: `data_dir/<o>` for each `o` in `own` (paths
    relative to the task's own folder, "" = the folder itself). Otherwise, with
    `data_root` set: `data_root/<r>/<name>` for each release prefix r and each name in
    `names` (paths relative to the root of the release). Neither: no candidates.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        return [root / o if o else root for o in own]
    if data_root is None:
        return []
    root = Path(data_root).expanduser()
    return [(root / r / name) if r else root / name for name in names for r in RELEASE_DIRS]


def first(paths: Iterable[Path], accept: Callable[[Path], bool] = Path.exists) -> Optional[Path]:
    """The first path that `accept`s, or None."""
    return next((p for p in paths if accept(p)), None)


def not_found(task: str, looked: Sequence[Path], how: str) -> DataError:
    """The one-line error for missing data: every path looked for, then how to get the data."""
    where = ", ".join(str(p) for p in looked) if looked else "nowhere (task.data_dir and paths.data_root are unset)"
    return DataError(f"{task} data not found; looked for {where}; {how}")


def tfds_prepared(name: str, data_dir: Optional[str] = None) -> Optional[Path]:
    """The folder of a tensorflow-datasets dataset already prepared on disk, or None.

    Looks for `<data_dir>/<name>/**/dataset_info.json` (data_dir: `$TFDS_DATA_DIR`, else
    `~/tensorflow_datasets`, tfds' own default) without importing tfds: `tfds.builder` on a
    dataset that is not prepared fetches its metadata over the network, so it is only called
    once this says yes.
    """
    root = Path(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser() / name
    info = next(iter(sorted(root.glob("**/dataset_info.json"))), None) if root.is_dir() else None
    return None if info is None else info.parent


def tfds_builder(name: str, data_dir: Optional[str] = None) -> tuple[Any, str]:
    """(tfds' builder of `name`, "") when tensorflow-datasets is installed and `name` is
    prepared on disk, else (None, why not), in a phrase. Never downloads: the builder is only
    made once `tfds_prepared` has found the data, and the versioned folder it names must
    hold its `dataset_info.json`."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        return None, "tensorflow-datasets is not installed"
    except Exception as exc:  # a broken TensorFlow install raises all sorts of things on import
        return None, f"importing tensorflow_datasets failed ({type(exc).__name__}: {' '.join(str(exc).split())})"
    if tfds_prepared(name, data_dir) is None:  # checked first: tfds.builder may go online
        return None, f"tfds {name} is not prepared on disk (it is never downloaded here)"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # a broken install must not stop the fallback to the files
        return None, f"tfds.builder({name!r}) failed ({type(exc).__name__}: {' '.join(str(exc).split())})"
    if not (Path(str(builder.data_dir)) / "dataset_info.json").is_file():
        return None, f"tfds {name} is not prepared in {builder.data_dir} (it is never downloaded here)"
    return builder, ""
