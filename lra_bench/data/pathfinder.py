"""Pathfinder and Path-X (LRA): are the two circles joined by one contour? One token per pixel.

Reads LRA's release layout `pathfinder{32,64,128,256}/<difficulty>/` -- `metadata/<k>.npy`
(text despite the suffix: one sample a line, `<subdir> <filename> <index> <label>`
separated by single spaces) and `imgs/<k>/sample_<n>.png` (8-bit grayscale) -- or, when
neither `data_dir` nor `data_root` is set, generates such a tree into the cache directory.

As LRA (lra_benchmarks/data/pathfinder.py, lra_benchmarks/image/input_pipeline.py
get_pathfinder_base_datasets): the image of a line is `<difficulty>/<subdir>/<filename>`,
its label is the 4th field; the examples are split `[:80%]` / `[80%:90%]` / `[90%:]`
(TFDS boundaries round(p * n / 100)) and only then are empty images filtered out. Here the
lines are taken in numeric order of the metadata files, in file order, and missing or
unreadable images are skipped like empty ones (the count is logged). Tokens are the PNG's
pixels 0-255, row-major, length resolution**2; no padding.
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import struct
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from lra_bench.data import sources
from lra_bench.data.cache import SPLITS, digest, file_digest, load_or_build, resolve_cache_dir, stat_digest
from lra_bench.data.spec import Split, TaskData, TaskSpec
from lra_bench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

LOADER_VERSION = 1
RESOLUTIONS = (32, 64, 128, 256)
RESOLUTION = 32  # the builder's default: LRA's Pathfinder (Path-X: 128)
DIFFICULTIES = ("curv_baseline", "curv_contour_length_9", "curv_contour_length_14")
SPLIT_PERCENTS = (80, 90)  # train = [:80%], val = [80%:90%], test = [90%:]
CHUNK = 2048  # images per decoding task
RELEASE_URL = sources.RELEASE_URL

Chunk = Tuple[str, List[str], int]  # (difficulty dir, image paths relative to it, resolution)


def task_name(resolution: int) -> str:
    """'pathfinder' at 32, 'pathx' at 128 (LRA's Path-X), else 'pathfinder<resolution>'."""
    return {32: "pathfinder", 128: "pathx"}.get(resolution, f"pathfinder{resolution}")


def split_bounds(n: int) -> Dict[str, Tuple[int, int]]:
    """[lo, hi) line ranges of train/val/test for n lines: TFDS's [:80%], [80%:90%], [90%:]."""
    a, b = (int(round(p * n / 100.0)) for p in SPLIT_PERCENTS)
    return {"train": (0, a), "val": (a, b), "test": (b, n)}


def _check_options(resolution: int, difficulty: str, generated: bool, workers: Optional[int]) -> None:
    """One-line ConfigErrors for impossible options, before any file is touched."""
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise ConfigError(f"task.resolution={resolution!r} must be an integer; e.g. task.resolution=32")
    if generated and (resolution < 4 or resolution % 4):
        raise ConfigError(f"task.resolution={resolution} must be a positive multiple of 4 for generated data; "
                          f"LRA uses 32 (Pathfinder) and 128 (Path-X)")
    if not generated and resolution not in RESOLUTIONS:
        raise ConfigError(f"task.resolution={resolution} has no LRA release data; use one of "
                          f"{', '.join(map(str, RESOLUTIONS))}, or unset task.data_dir and paths.data_root to "
                          f"generate a set at any multiple of 4")
    if difficulty not in DIFFICULTIES:
        raise ConfigError(f"task.difficulty={difficulty!r} is not one of {', '.join(DIFFICULTIES)}; "
                          f"LRA uses task.difficulty=curv_contour_length_14")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"task.workers={workers!r} must be >= 1, or null for all CPUs")


def _metadata_order(path: Path) -> Tuple[int, int, str]:
    """Numeric order of `<k>.npy` (LRA writes 0.npy, 1.npy, ...); other names after, by name."""
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.stem)


def metadata_files(root: Path) -> List[Path]:
    """`root/metadata/*.npy` in numeric order; DataError if there is none."""
    files = sorted((p for p in (root / "metadata").glob("*.npy") if p.is_file()), key=_metadata_order)
    if not files:
        raise DataError(f"{root / 'metadata'} holds no <k>.npy files; re-unpack {RELEASE_URL} "
                        f"or point task.data_dir at pathfinder<res>/<difficulty>")
    return files


def read_metadata(files: Sequence[Path]) -> Tuple[List[str], np.ndarray]:
    """(image paths relative to the difficulty dir, labels) of every metadata line, in order.

    A line is `<subdir> <filename> <index> <label>` split on single spaces; blank lines are
    ignored; a label other than 0/1 or a short line is a DataError naming file and line.
    """
    rels: List[str] = []
    labels: List[int] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not a readable Pathfinder metadata text file ({type(exc).__name__}); "
                            f"re-unpack {RELEASE_URL} or regenerate the set") from None
        for line_no, line in enumerate(text.split("\n"), start=1):
            line = line.rstrip("\r")
            if not line.strip():
                continue
            fields = line.split(" ")
            if len(fields) < 4 or fields[3] not in ("0", "1"):
                raise DataError(f"{path}:{line_no}: {line[:80]!r} is not '<subdir> <filename> <index> <label 0/1>'; "
                                f"re-unpack {RELEASE_URL} or regenerate the set")
            rels.append(f"{fields[0]}/{fields[1]}")
            labels.append(int(fields[3]))
    if not rels:
        raise DataError(f"Pathfinder metadata {', '.join(map(str, files))} lists no samples; "
                        f"re-unpack {RELEASE_URL} or regenerate the set")
    return rels, np.asarray(labels, dtype=np.int64)


def check_image_folders(root: Path, rels: Sequence[str]) -> None:
    """DataError (one line) when not one of the image folders the metadata lists exists,
    before anything is decoded or cached; some missing images only skip those (logged)."""
    folders = sorted({rel.rsplit("/", 1)[0] for rel in rels})
    if folders and not any((root / folder).is_dir() for folder in folders):
        raise DataError(f"pathfinder: none of the {len(folders)} image folders listed in {root / 'metadata'} exists "
                        f"(e.g. {root / folders[0]}); re-unpack {RELEASE_URL} so that imgs/ lies beside metadata/, "
                        f"or point task.data_dir at the folder holding both")


def fingerprint(root: Path, files: Sequence[Path], rels: Sequence[str]) -> str:
    """Hash of the metadata files' contents and every listed image's (path, size, mtime_ns)."""
    metadata = digest([(f.name, file_digest(f)) for f in files])
    return digest([metadata, stat_digest((rel, root / rel) for rel in rels)])


def decode_png(path: Path, resolution: int) -> Optional[np.ndarray]:
    """Pixels (resolution**2,) uint8 of one grayscale PNG, or None if it is missing, empty or
    unreadable; DataError if it is readable but of the wrong size or not grayscale."""
    try:
        if os.path.getsize(path) == 0:
            return None
        with Image.open(path) as im:
            im.load()
            mode, size = im.mode, im.size
            if mode == "1":
                im = im.convert("L")
            pixels = np.asarray(im, dtype=np.uint8) if im.mode == "L" else None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError):
        return None  # PIL's ways of saying the file is truncated or not a PNG
    if size != (resolution, resolution):
        raise DataError(f"{path} is {size[0]}x{size[1]}, expected {resolution}x{resolution}; "
                        f"set task.resolution to match the data or fix task.data_dir")
    if pixels is None:
        raise DataError(f"{path} is a {mode} PNG, expected 8-bit grayscale (mode L); "
                        f"re-unpack {RELEASE_URL} or regenerate the set")
    return pixels.reshape(-1)


def decode_chunk(chunk: Chunk) -> Tuple[np.ndarray, np.ndarray, Optional[str]]:
    """(pixels of the readable images (k, L) uint8, readable mask (n,), first skipped path)."""
    root, rels, resolution = chunk
    ok = np.zeros(len(rels), dtype=bool)
    rows, skipped = [], None
    for i, rel in enumerate(rels):
        pixels = decode_png(Path(root) / rel, resolution)
        if pixels is None:
            skipped = skipped or str(Path(root) / rel)
        else:
            ok[i] = True
            rows.append(pixels)
    out = np.stack(rows) if rows else np.zeros((0, resolution * resolution), dtype=np.uint8)
    return out, ok, skipped


def _decoded(chunks: List[Chunk], workers: int) -> Iterator[Tuple[np.ndarray, np.ndarray, Optional[str]]]:
    """decode_chunk over `chunks`, in order; in a process pool when workers > 1 and it pays."""
    if workers <= 1 or len(chunks) <= 1:
        yield from map(decode_chunk, chunks)
        return
    pool = multiprocessing.get_context().Pool(min(workers, len(chunks)))
    try:
        yield from pool.imap(decode_chunk, chunks)
    finally:
        pool.terminate()
        pool.join()


def read_images(root: Path, rels: List[str], labels: np.ndarray, resolution: int,
                workers: Optional[int] = None) -> Dict[str, Split]:
    """Decode every listed image into train/val/test Splits (LRA's 80/10/10 over all lines,
    then unreadable images dropped). Decoded rows go straight into per-split arrays."""
    n, length = len(rels), resolution * resolution
    bounds = split_bounds(n)
    inputs = {s: np.empty((hi - lo, length), dtype=np.uint8) for s, (lo, hi) in bounds.items()}
    kept: Dict[str, List[np.ndarray]] = {s: [] for s in SPLITS}  # kept line indices per split
    filled = dict.fromkeys(SPLITS, 0)
    chunks = [(str(root), rels[i:i + CHUNK], resolution) for i in range(0, n, CHUNK)]
    workers = (os.cpu_count() or 1) if workers is None else workers
    example, report_every = None, max(1, len(chunks) // 10)
    for c, (pixels, ok, skipped) in enumerate(_decoded(chunks, workers)):
        example = example or skipped
        index = np.flatnonzero(ok) + c * CHUNK
        for s, (lo, hi) in bounds.items():
            sel = (index >= lo) & (index < hi)
            k = int(sel.sum())
            inputs[s][filled[s]:filled[s] + k] = pixels[sel]
            kept[s].append(index[sel])
            filled[s] += k
        if len(chunks) > 1 and ((c + 1) % report_every == 0 or c + 1 == len(chunks)):
            log.info("pathfinder: decoded %d/%d images", min((c + 1) * CHUNK, n), n)
    skipped_total = n - sum(filled.values())
    if skipped_total == n:
        raise DataError(f"pathfinder: none of the {n} images listed in {root / 'metadata'} is readable (missing, "
                        f"empty or not a PNG; e.g. {example}); re-unpack {RELEASE_URL} (imgs/ beside metadata/) "
                        f"or leave task.data_dir and paths.data_root unset to generate a set")
    if skipped_total:
        log.warning("pathfinder: skipped %d of %d images that are missing, empty or unreadable (e.g. %s)",
                    skipped_total, n, example)
    empty = [s for s in SPLITS if filled[s] == 0]
    if empty:
        raise DataError(f"pathfinder: no readable image in the {'/'.join(empty)} split(s) of {root} "
                        f"({n} metadata lines, {skipped_total} images skipped); re-unpack {RELEASE_URL} "
                        f"or regenerate the set with more samples")
    return {s: Split(inputs[s][:filled[s]], labels[np.concatenate(kept[s])]) for s in SPLITS}


def _generated_root(resolution: int, difficulty: str, generate: Dict[str, Any], workers: Optional[int],
                    cache: Path) -> Path:
    """The difficulty dir of a generated set for these options, generating it once under a lock."""
    try:
        from lra_bench.data import pathfinder_generator as pg
    except ImportError as exc:
        raise DataError(f"pathfinder: cannot generate data ({exc}); set task.data_dir to LRA's "
                        f"pathfinder{resolution}/{difficulty} from {RELEASE_URL}") from None
    fields = dict(generate)
    for key, value, via in (("resolution", resolution, "task.resolution"),
                            ("contour_length", pg.DIFFICULTY_LENGTHS[difficulty], "task.difficulty")):
        if key in fields and fields[key] != value:
            raise ConfigError(f"task.generate.{key}={fields[key]} conflicts with {via}; remove task.generate.{key} "
                              f"(it follows {via})")
        fields[key] = value
    try:
        gen = pg.PathfinderGenConfig(**fields)
    except TypeError as exc:
        accepted = ", ".join(f.name for f in dataclasses.fields(pg.PathfinderGenConfig)
                             if f.name not in ("resolution", "contour_length"))
        raise ConfigError(f"task.generate: {exc}; accepted keys: {accepted}") from None
    gen.validate()
    empty = [split for split, (lo, hi) in split_bounds(gen.num_samples).items() if hi == lo]
    if empty:
        raise ConfigError(f"task.generate.num_samples={gen.num_samples} leaves the {'/'.join(empty)} split(s) empty "
                          f"(split 80/10/10); set task.generate.num_samples>=8 (LRA's release: 200000)")
    out = cache / "pathfinder" / "generated" / digest(
        {"version": pg.GENERATOR_VERSION, "difficulty": difficulty, **dataclasses.asdict(gen)})
    root = out / f"pathfinder{resolution}" / difficulty
    if (root / "metadata").is_dir():
        log.info("pathfinder: using generated set in %s", root)
        return root
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (root / "metadata").is_dir():
            log.info("pathfinder: generating %d %dx%d %s samples into %s", gen.num_samples, resolution,
                     resolution, difficulty, out)
            bar = sys.stderr.isatty()  # a progress bar on a terminal, none in logs
            root = Path(pg.write_pathfinder(gen, out, difficulty, workers=workers, progress=bar))
    return root


def _locate(resolution: int, difficulty: str, data_dir: Optional[str], data_root: Optional[str],
            generate: Dict[str, Any], workers: Optional[int], cache: Path) -> Tuple[Path, bool]:
    """(the difficulty dir holding metadata/, whether it was generated)."""
    if data_dir is None and data_root is None:
        return _generated_root(resolution, difficulty, generate, workers, cache), True
    rel = f"pathfinder{resolution}/{difficulty}"
    looked = sources.candidates(data_dir, data_root, names=(rel,), own=("", difficulty, rel))
    found = sources.first(looked, lambda p: (p / "metadata").is_dir())
    if found is None:
        raise sources.not_found(task_name(resolution), looked,
                                how=f"unpack {RELEASE_URL} and set task.data_dir=<lra_release>/{rel} "
                                    f"(or paths.data_root), or leave both unset to generate a set")
    return found, False


def task_spec(max_length: Optional[int] = None, resolution: int = RESOLUTION, **options: Any) -> TaskSpec:
    """The TaskSpec `build_pathfinder(resolution=..., **options)` gives, without reading data.
    The length is fixed by the resolution (one token per pixel): a `max_length` other than
    resolution**2 is a ConfigError."""
    if max_length is not None and max_length != resolution * resolution:
        raise ConfigError(f"{task_name(resolution)} has a fixed length of {resolution * resolution} "
                          f"(task.resolution={resolution}, squared); max_length={max_length} is not possible: "
                          f"remove task.max_length, or change task.resolution for another length")
    return TaskSpec(name=task_name(resolution), vocab_size=256, max_length=resolution * resolution,
                    num_classes=2, pad_id=None)


def planned_sizes(resolution: int = RESOLUTION, data_dir: Optional[str] = None, data_root: Optional[str] = None,
                  generate: Optional[Dict[str, Any]] = None,
                  **options: Any) -> Optional[Tuple[Dict[str, int], Dict[str, str]]]:
    """({split: examples}, {split: the key that sets it}) of the set `build_pathfinder` would
    generate, or None when it reads files (their sizes are known only once read) or the
    options are odd (the builder reports those)."""
    if data_dir is not None or data_root is not None:
        return None
    try:
        from lra_bench.data.pathfinder_generator import PathfinderGenConfig
    except ImportError:  # the builder reports it
        return None
    num_samples = dict(generate or {}).get("num_samples", PathfinderGenConfig.num_samples)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        return None
    sizes = {split: hi - lo for split, (lo, hi) in split_bounds(num_samples).items()}
    return sizes, dict.fromkeys(sizes, "task.generate.num_samples (split 80/10/10)")


def build_pathfinder(resolution: int = RESOLUTION, difficulty: str = "curv_contour_length_14",
                     data_dir: Optional[str] = None, generate: Optional[Dict[str, Any]] = None,
                     workers: Optional[int] = None, cache_dir: Optional[str] = None,
                     data_root: Optional[str] = None) -> TaskData:
    """Pathfinder TaskData: inputs (N, resolution**2) uint8 pixels 0-255, labels 0/1.

    Data: LRA's `pathfinder<resolution>/<difficulty>/` found via `data_dir` or `data_root`,
    else a set generated into the cache from `generate` (PathfinderGenConfig fields but
    resolution and contour_length, which follow `resolution` and `difficulty`). `workers`:
    processes for generating and decoding (None: all CPUs).
    """
    generated = data_dir is None and data_root is None
    _check_options(resolution, difficulty, generated, workers)
    cache = resolve_cache_dir(cache_dir)
    root, generated = _locate(resolution, difficulty, data_dir, data_root, dict(generate or {}), workers, cache)
    files = metadata_files(root)
    rels, labels = read_metadata(files)
    check_image_folders(root, rels)
    key = {"task": "pathfinder", "loader": LOADER_VERSION, "resolution": resolution, "difficulty": difficulty,
           "source": fingerprint(root, files, rels)}
    entry = cache / "pathfinder" / "tokens" / digest(key)
    splits = load_or_build(entry, lambda: read_images(root, rels, labels, resolution, workers), key)
    spec = task_spec(resolution=resolution)
    info = {"source": {"path": str(root.resolve()), "generated": generated, "metadata_files": len(files),
                       "samples": len(rels)}, "token_cache": str(entry)}
    return TaskData(splits["train"], splits["val"], splits["test"], spec, info=info)
