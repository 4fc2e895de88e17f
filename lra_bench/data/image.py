"""Image (LRA): CIFAR-10 in grayscale, one token per pixel, as in Long Range Arena.

LRA (lra_benchmarks/image/input_pipeline.py, get_cifar10_datasets) loads tfds `cifar10`,
takes `train[:90%]` for training, `train[90%:]` for validation and `test` for testing,
and feeds `tf.image.rgb_to_grayscale(image)` cast to int32: 1024 tokens 0-255 per image,
row-major, 10 classes, no padding.

Sources, tried in this order by `source="auto"`:

* "tfds": tensorflow-datasets `cifar10`, only if installed and already prepared on disk
  (never downloaded). Read in its stored order, its last 10% is exactly LRA's validation.
* "pickle": the official `cifar-10-batches-py/` folder (data_batch_1..5, test_batch) or
  `cifar-10-python.tar.gz`, read in place. The validation set is the last `val_fraction`
  of data_batch_1..5 in file order. (TFDS stores examples in a hashed-key order, so this
  is a different 10% than LRA's; the distribution is the same.)

Grayscale is TF's arithmetic reproduced in float32: pixel/255 (times float32(1/255)),
weights 0.2989/0.5870/0.1140 summed left to right, times 255.5, truncated to uint8.
"""
from __future__ import annotations

import functools
import io
import logging
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Dict, Optional, Tuple

import numpy as np

from lra_bench.data import sources
from lra_bench.data.cache import digest, file_digest, load_or_build, resolve_cache_dir
from lra_bench.data.spec import Split, TaskData, TaskSpec
from lra_bench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

TOKENIZER_VERSION = 1
SIDE = 32
NUM_CLASSES = 10
SOURCES = ("auto", "tfds", "pickle")
FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
DOWNLOAD_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
HOW = (f"download {DOWNLOAD_URL} and set task.data_dir=<folder with it or {FOLDER}/> "
       f"(or paths.data_root)")

# tf.image.rgb_to_grayscale: convert_image_dtype(uint8 -> float32) multiplies by 1/255 in
# float32, the weights are float32, and the way back multiplies by 255.5 and truncates.
_RGB_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)
_TO_FLOAT = np.float32(1.0 / 255)
_TO_UINT8 = np.float32(255.5)

# Only what CIFAR's pickles (and numpy arrays pickled by any numpy) need to unpickle.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("codecs", "encode"),
    ("builtins", "bytearray"),
}


def rgb_to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> uint8 (...) gray by TF's rgb_to_grayscale arithmetic: float32
    throughout, the three products summed left to right, scaled by 255.5, truncated."""
    x = rgb.astype(np.float32) * _TO_FLOAT
    gray = x[..., 0] * _RGB_WEIGHTS[0]
    gray += x[..., 1] * _RGB_WEIGHTS[1]
    gray += x[..., 2] * _RGB_WEIGHTS[2]
    gray *= _TO_UINT8
    return gray.astype(np.uint8)  # C cast: truncation toward zero; values lie in [0, 255.5)


def planes_to_tokens(data: np.ndarray) -> np.ndarray:
    """CIFAR rows (N, 3072) = R, G, B planes of 32x32 row-major -> gray tokens (N, 1024) uint8."""
    rgb = data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return rgb_to_grayscale(rgb).reshape(-1, SIDE * SIDE)


def split_point(n: int, val_fraction: float) -> int:
    """Index where validation starts: TFDS's `train[:p%]` with p = 100 * (1 - val_fraction)
    (boundary = round(p * n / 100), Python rounding)."""
    pct = round(100.0 * (1.0 - val_fraction), 10)
    return int(round(pct * n / 100.0))


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that builds only dicts, lists, bytes, numbers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_ALLOWED:
            if module.startswith("numpy.core.") and hasattr(np, "_core"):  # numpy 2 renamed numpy.core
                module = "numpy._core." + module[len("numpy.core."):]
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_batch(f: BinaryIO, where: str) -> Tuple[np.ndarray, np.ndarray]:
    """(data (N, 3072) uint8, labels (N,) int64) of one CIFAR-10 python batch."""
    try:
        batch = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means the file is not a CIFAR batch
        raise DataError(f"{where} is not a readable CIFAR-10 batch ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'corrupt'}); re-download {DOWNLOAD_URL}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where} lacks the b'data' and b'labels' entries of a CIFAR-10 batch; "
                        f"re-download {DOWNLOAD_URL}")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{where}: b'data' is {shape} {getattr(data, 'dtype', '')}, expected (N, 3072) uint8; "
                        f"re-download {DOWNLOAD_URL}")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{where}: b'labels' is not a list of integers; re-download {DOWNLOAD_URL}") from None
    if len(labels) != len(data):
        raise DataError(f"{where}: {len(labels)} labels for {len(data)} images; re-download {DOWNLOAD_URL}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{where}: labels outside 0-9; re-download {DOWNLOAD_URL}")
    return data, labels


def _open_batches(path: Path, names: Tuple[str, ...]) -> list[Tuple[np.ndarray, np.ndarray]]:
    """Read batches `names`, in that order, from a cifar-10-batches-py folder or from the
    tar.gz in place (one streaming pass; nothing is extracted to disk)."""
    if path.is_dir():
        out = []
        for name in names:
            try:
                with open(path / name, "rb") as f:
                    out.append(read_batch(f, str(path / name)))
            except OSError as exc:
                raise DataError(f"{path / name} cannot be read ({exc.strerror or exc}); check its permissions "
                                f"or re-download {DOWNLOAD_URL}") from None
        return out
    raw: Dict[str, Tuple[str, bytes]] = {}
    try:
        with tarfile.open(path, "r|*") as tar:
            for m in tar:
                name = Path(m.name).name
                if m.isfile() and Path(m.name).parent.name == FOLDER and name in names:
                    raw[name] = (m.name, tar.extractfile(m).read())
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable tar.gz ({type(exc).__name__}: {exc}); "
                        f"re-download {DOWNLOAD_URL}") from None
    missing = [n for n in names if n not in raw]
    if missing:
        raise DataError(f"{path} has no {', '.join(f'{FOLDER}/{n}' for n in missing)}; re-download {DOWNLOAD_URL}")
    return [read_batch(io.BytesIO(raw[n][1]), f"{path}:{raw[n][0]}") for n in names]


def _is_folder(p: Path) -> bool:
    return p.is_dir() and (p / TRAIN_FILES[0]).is_file()


def _is_archive(p: Path) -> bool:
    return p.is_file() and p.name.endswith((".tar.gz", ".tgz", ".tar"))


def locate_pickles(data_dir: Optional[str], data_root: Optional[str]) -> Tuple[Optional[Path], list[Path]]:
    """(the cifar-10-batches-py folder, else the tar.gz, else None; every path looked at)."""
    looked = sources.candidates(data_dir, data_root, names=(FOLDER, ARCHIVE), own=("", FOLDER, ARCHIVE))
    return sources.first(looked, _is_folder) or sources.first(looked, _is_archive), looked


def _tfds_fingerprint(builder: Any) -> Dict[str, str]:
    info = Path(str(builder.data_dir)) / "dataset_info.json"
    return {"kind": "tfds", "path": str(builder.data_dir), "version": str(builder.version), "info": file_digest(info)}


def _read_tfds(builder: Any, val_fraction: float) -> Dict[str, Split]:
    """Splits from a prepared tfds cifar10, in its stored order (LRA's train[:90%] / train[90%:] / test)."""
    import tensorflow_datasets as tfds

    arrays = {}
    for split in ("train", "test"):
        ds = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))
        images = np.asarray(ds["image"])
        if images.dtype != np.uint8 or images.shape[1:] != (SIDE, SIDE, 3):
            raise DataError(f"tfds cifar10 {split} at {builder.data_dir} holds {images.shape} {images.dtype} images, "
                            f"expected (N, 32, 32, 3) uint8; re-prepare it or use task.source=pickle")
        arrays[split] = (rgb_to_grayscale(images).reshape(len(images), -1), np.asarray(ds["label"], dtype=np.int64))
    return _splits(arrays["train"], arrays["test"], val_fraction)


def _read_pickles(path: Path, val_fraction: float) -> Dict[str, Split]:
    """Splits from cifar-10-batches-py/ or cifar-10-python.tar.gz."""
    batches = _open_batches(path, TRAIN_FILES + (TEST_FILE,))
    train = (planes_to_tokens(np.concatenate([d for d, _ in batches[:-1]])),
             np.concatenate([y for _, y in batches[:-1]]))
    test = (planes_to_tokens(batches[-1][0]), batches[-1][1])
    return _splits(train, test, val_fraction)


def _splits(train: Tuple[np.ndarray, np.ndarray], test: Tuple[np.ndarray, np.ndarray],
            val_fraction: float) -> Dict[str, Split]:
    cut = split_point(len(train[1]), val_fraction)
    return {"train": Split(train[0][:cut], train[1][:cut]), "val": Split(train[0][cut:], train[1][cut:]),
            "test": Split(*test)}


def _resolve_source(source: str, data_dir: Optional[str], data_root: Optional[str]) -> Tuple[str, Any]:
    """("tfds", builder) or ("pickle", folder or archive path), or a one-line DataError."""
    if source == "tfds" or (source == "auto" and data_dir is None):  # auto: a folder the user names wins
        builder, why = sources.tfds_builder("cifar10", data_dir if source == "tfds" else None)
        if builder is not None:
            return "tfds", builder
        if source == "tfds":
            raise DataError(f"task.source=tfds but {why}; prepare it yourself "
                            f"(tfds.builder('cifar10').download_and_prepare()) or use task.source=pickle")
        log.debug("image: not using tfds: %s", why)
    path, looked = locate_pickles(data_dir, data_root)
    if path is None:
        raise sources.not_found("image", looked, HOW)
    if path.is_dir():
        missing = [n for n in TRAIN_FILES + (TEST_FILE,) if not (path / n).is_file()]
        if missing:
            raise DataError(f"{path} lacks {', '.join(missing)}; re-download {DOWNLOAD_URL} and unpack it whole")
    return "pickle", path


def task_spec(max_length: Optional[int] = None, **options: Any) -> TaskSpec:
    """The TaskSpec `build_image(**options)` gives, without reading data. The length is
    fixed (one token per pixel of a 32x32 image): a `max_length` other than 1024 is a ConfigError."""
    if max_length is not None and max_length != SIDE * SIDE:
        raise ConfigError(f"image has a fixed length of {SIDE * SIDE} ({SIDE}x{SIDE} pixels); "
                          f"max_length={max_length} is not possible: remove task.max_length")
    return TaskSpec(name="image", vocab_size=256, max_length=SIDE * SIDE, num_classes=NUM_CLASSES, pad_id=None)


def build_image(data_dir: Optional[str] = None, val_fraction: float = 0.1, source: str = "auto",
                cache_dir: Optional[str] = None, data_root: Optional[str] = None) -> TaskData:
    """LRA Image TaskData: gray CIFAR-10, inputs (N, 1024) uint8 tokens 0-255, labels 0-9.

    Splits: train = the first 1 - `val_fraction` of the training set, val = the rest (LRA:
    0.1), test = the test batch. `source`: "auto", "tfds" or "pickle" (see the module doc).
    """
    if source not in SOURCES:
        raise ConfigError(f"task.source={source!r} is not one of {', '.join(SOURCES)}; e.g. task.source=auto")
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"task.val_fraction={val_fraction} must be in (0, 1); LRA uses task.val_fraction=0.1")
    kind, found = _resolve_source(source, data_dir, data_root)
    if kind == "tfds":
        fingerprint = _tfds_fingerprint(found)
        build = functools.partial(_read_tfds, found, val_fraction)
    else:
        files = [found / n for n in TRAIN_FILES + (TEST_FILE,)] if found.is_dir() else [found]
        fingerprint = {"kind": "pickle", "path": str(found.resolve()), "files": {f.name: file_digest(f) for f in files}}
        build = functools.partial(_read_pickles, found, val_fraction)
    log.info("image: CIFAR-10 from %s", fingerprint["path"])
    cache = resolve_cache_dir(cache_dir)
    key = {"task": "image", "tokenizer": TOKENIZER_VERSION, "val_fraction": val_fraction,
           "source": {k: v for k, v in fingerprint.items() if k != "path"}}
    entry = cache / "image" / "tokens" / digest(key)
    splits = load_or_build(entry, build, key)
    spec = task_spec()
    return TaskData(splits["train"], splits["val"], splits["test"], spec,
                    info={"source": fingerprint, "token_cache": str(entry)})
