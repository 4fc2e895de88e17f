"""A check every task's token cache must pass, shared by the task tests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from lra_bench.data.spec import TaskData


def assert_corrupt_cache_is_rebuilt(build: Callable[[], TaskData], split: str) -> None:
    """Build, truncate `split`'s cached inputs, build again: the same entry, rebuilt, same tokens."""
    data = build()
    expected = np.array(getattr(data, split).inputs)
    entry = Path(data.info["token_cache"])
    del data  # drop the memmaps before overwriting their file
    (entry / f"{split}_inputs.npy").write_bytes(b"\x93NUMPY truncated")
    rebuilt = build()
    assert rebuilt.info["token_cache"] == str(entry)
    assert np.array_equal(np.asarray(getattr(rebuilt, split).inputs), expected)
    assert json.loads((entry / "meta.json").read_text())["shapes"][split] == list(expected.shape)
