"""User mistakes: each one stops the run with a one-line `error: ...` (exit 2) that names the
problem and the fix, before any expensive work, and writes nothing -- no run record, no
checkpoint, no cache entry, no W&B folder, no change to the user's data.

One table. Rows marked CLI run `python -m lra_bench` in a subprocess (the stderr contract end
to end); the others run in-process through the same steps as `lra_bench.__main__.main`
(`check_overrides`, `check_syntax`, `check_composition`, then `run`), which is much faster.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from lra_bench.cli import check_composition, check_overrides, check_syntax
from lra_bench.errors import LRABenchError
from tests.cli_helpers import cli
from tests.conftest import TINY
from tests.data.test_listops import ROWS as LISTOPS_ROWS, write_lra_dir
from tests.data.test_pathfinder import write_tree as write_pathfinder
from tests.data.test_retrieval import ROWS as RETRIEVAL_ROWS, write_tsv_dir

# A seconds-long run: TINY with W&B left on (offline), so "no W&B folder" means something.
LISTOPS = [a for a in TINY if a != "logger=none"]
SMALL = [a for a in LISTOPS if not a.startswith("task.")]  # the model/trainer part, for any task
CLI, RUN = "cli", "run"


# ---------------------------------------------------------------- data folders in the real formats

def listops_dir(train_text: str):
    """LRA's three ListOps TSVs, basic_train.tsv replaced by `train_text`."""
    def make(tmp: Path) -> list[str]:
        root = write_lra_dir(tmp / "data" / "listops-1000", LISTOPS_ROWS)
        (root / "basic_train.tsv").write_text(train_text)
        return [*LISTOPS, f"task.data_dir={root}"]
    return make


def retrieval_dir(bad_row: tuple):
    """LRA's three AAN TSVs, `bad_row` appended to the training file."""
    def make(tmp: Path) -> list[str]:
        rows = dict(RETRIEVAL_ROWS, train=RETRIEVAL_ROWS["train"] + [bad_row])
        root = write_tsv_dir(tmp / "data" / "tsv_data", rows)
        return ["task=retrieval", f"task.data_dir={root}", "task.max_length=48", *SMALL]
    return make


def pathfinder_dir(drop_image_folders: bool):
    """LRA's pathfinder32/<difficulty>/ whose metadata lists only images that do not exist."""
    def make(tmp: Path) -> list[str]:
        missing = tuple(f"imgs/{k}/sample_{n}.png" for k in (2, 10) for n in range(10))
        root, _ = write_pathfinder(tmp / "data", empty=(), missing=missing)
        if drop_image_folders:
            shutil.rmtree(root / "imgs")
        return ["task=pathfinder", f"task.data_dir={root}", "task.workers=1", *SMALL]
    return make


def listops(*args: str):
    return lambda tmp: [*LISTOPS, *args]


def plain(*args: str):
    return lambda tmp: list(args)


def records_under_a_file(tmp: Path) -> list[str]:
    (tmp / "a_file").write_text("not a folder")
    return [*LISTOPS, f"paths.records={tmp / 'a_file' / 'records'}"]


def resume_from_other_config(tmp: Path) -> list[str]:
    """A checkpoint folder whose run.json says it was written with another config."""
    other = tmp / "other_run"
    other.mkdir()
    (other / "last.pt").write_bytes(b"a checkpoint")
    (other / "run.json").write_text(json.dumps({"run_id": "x", "identity": {"trainer": {"lr": 0.5}}}))
    return [*LISTOPS, f"trainer.resume_from={other}"]


HEADER = "Source\tTarget\r\n"
ROW = "( ( ( [MAX 2 ) 9 ) ] )"

# (id, how, args(tmp_path), fragment of the one line after "error: ": the problem and the fix)
CASES = [
    ("unknown-task", CLI, plain("task=imagenet"),
     "task=imagenet is not a config in conf/task/; available: image, listops, pathfinder, pathx, retrieval, text"),
    ("unknown-attn", RUN, plain("attn=performer"),
     "attn=performer is not a config in conf/attn/; available: dct, dct_attention"),
    ("typo-top-level-key", RUN, plain("sed=3"),
     "unknown key sed; top-level keys are: task, attn, model, trainer, logger, paths, seed; did you mean seed?"),
    ("typo-model-key", RUN, plain("model.hiden_dim=64"),
     "unknown key model.hiden_dim; model accepts: hidden_dim,"),
    ("typo-trainer-key", RUN, plain("trainer.batchsize=8"), "did you mean trainer.batch_size?"),
    ("typo-task-key", RUN, plain("task.max_lenght=100"),
     "unknown key task.max_lenght for task=listops; task lists: _target_, data_dir, generate, max_length, name, "
     "workers; did you mean task.max_length?"),
    ("type-int", CLI, listops("trainer.batch_size=abc"),
     "trainer.batch_size=abc is not an integer; set e.g. trainer.batch_size=32"),
    ("type-float", RUN, listops("model.dropout=high"),
     "model.dropout=high is not a number; set e.g. model.dropout=0.1"),
    ("type-bool-attn", RUN, listops("attn=dct", "attn.learnable_scale=maybe"),
     "attn.learnable_scale='maybe' must be bool; e.g. attn.learnable_scale=true"),
    ("sweep-without-m", RUN, listops("seed=0,1"),
     "seed=0,1 gives several values without -m; add -m (--multirun) to run one job per value"),
    ("heads-not-dividing", CLI, listops("model.hidden_dim=30", "model.num_heads=4"),
     "model.hidden_dim=30 is not divisible by model.num_heads=4; choose num_heads dividing hidden_dim "
     "(e.g. model.num_heads=3)"),
    ("unparsable-override", RUN, listops("trainer.betas=[0.9"),
     "cannot parse trainer.betas=[0.9 (no viable alternative at input '[0.9'); fix its brackets or quotes"),
    ("dct-type-7", RUN, listops("attn=dct_attention", "attn.dct_type=7"),
     "dct_type=7 is not an orthonormal DCT type; use 1, 2, 3 or 4"),
    ("fixed-length-task", RUN, plain("task=pathfinder", "task.max_length=2048"),
     "pathfinder has a fixed length of 1024 (task.resolution squared, one token per pixel): remove task.max_length"),
    ("fixed-length-task-added-key", RUN, plain("task=image", "+task.max_length=2048"),
     "image has a fixed length of 1024 (32x32 pixels); max_length=2048 is not possible: remove task.max_length"),
    ("generated-longer-than-max-length", RUN, listops("task.generate.max_length=100"),
     "task.generate.max_length=100 generates expressions of up to 99 tokens, more than task.max_length=48, so "
     "they would be cut; set task.max_length>=99 or task.generate.max_length<=49"),
    ("listops-empty-tsv", CLI, listops_dir(""), "basic_train.tsv is empty; regenerate it (leave task.data_dir unset)"),
    ("listops-header-only", RUN, listops_dir(HEADER), "basic_train.tsv has a header but no samples; regenerate it"),
    ("listops-truncated-row", RUN, listops_dir(f"{HEADER}{ROW}\t9\r\n( ( [MIN 7\r\n"),
     "basic_train.tsv:3: 1 columns, header has 2; the file is truncated or corrupt, regenerate or re-download it"),
    ("listops-wrong-header", RUN, listops_dir(f"Input\tLabel\r\n{ROW}\t9\r\n"),
     "lacks Source and Target columns; make the first line 'Source<tab>Target'"),
    ("listops-extra-column", RUN, listops_dir(f"{HEADER}{ROW}\t9\textra\r\n"),
     "basic_train.tsv:2: 3 columns, header has 2; the file is truncated or corrupt"),
    ("listops-label-out-of-range", RUN, listops_dir(f"{HEADER}{ROW}\t12\r\n"),
     "basic_train.tsv:2: Target 12 is outside 0-9; fix or regenerate the file"),
    ("retrieval-wrong-columns", RUN, retrieval_dir(("1.0", "A", "B", "text only")),
     "new_aan_pairs.train.tsv:4: 4 tab-separated columns, expected 5 (label id1 id2 text1 text2); the file is "
     "truncated or corrupt, re-download"),
    ("retrieval-label-not-0-1", RUN, retrieval_dir(("2", "A", "B", "x", "y")),
     "new_aan_pairs.train.tsv:4: label '2' is not 0 or 1; the file is corrupt or not an AAN pairs file, re-download"),
    ("pathfinder-no-image-folders", CLI, pathfinder_dir(drop_image_folders=True),
     "pathfinder: none of the 2 image folders listed in"),
    ("pathfinder-all-images-missing", RUN, pathfinder_dir(drop_image_folders=False),
     "pathfinder: none of the 20 images listed in"),
    ("negative-lr", RUN, listops("trainer.lr=-1"), "trainer.lr=-1.0 must be > 0; e.g. trainer.lr=0.001"),
    ("zero-batch", RUN, listops("trainer.batch_size=0"),
     "trainer.batch_size=0 must be > 0; pass e.g. trainer.batch_size="),
    ("dropout-above-1", RUN, listops("model.dropout=1.5"),
     "model.dropout=1.5 must be in [0, 1); e.g. model.dropout=0.1"),
    ("logger-mode", RUN, listops("logger.mode=sometimes"),
     "logger.mode='sometimes' is not one of offline, online, disabled; set logger.mode=<one of those>"),
    ("cuda-without-gpu", CLI, listops("trainer.device=cuda"),
     "trainer.device=cuda but no CUDA device is available; use trainer.device=cpu or auto"),
    ("fp16-on-cpu", RUN, listops("trainer.precision=fp16", "trainer.device=cpu"),
     "trainer.precision=fp16 needs a CUDA device (CPU autocast has no loss scaling); use trainer.precision=bf16 or "
     "fp32 on CPU"),
    ("batch-above-training-split", RUN, listops("task.generate.num_train=8"),
     "trainer.batch_size=16 exceeds the 8 training examples the task generates; set trainer.batch_size<=8, or "
     "raise task.generate.num_train"),
    ("empty-generated-split", RUN, listops("task.generate.num_val=0"),
     "task.generate.num_val=0 leaves the val split empty; set task.generate.num_val>=1"),
    ("empty-generated-pathfinder-split", RUN,
     plain("task=pathfinder", "task.generate.num_samples=6", *SMALL, "trainer.batch_size=4"),
     "task.generate.num_samples=6 leaves the val split(s) empty (split 80/10/10); set task.generate.num_samples>=8"),
    ("data-dir-missing", RUN, lambda tmp: [*LISTOPS, f"task.data_dir={tmp / 'nowhere'}"],
     "ListOps data not found; looked for"),
    ("output-folder-under-a-file", CLI, records_under_a_file,
     "a_file/records cannot be created: "),
    ("output-folder-not-writable", RUN, listops("paths.checkpoints=/proc/lra_bench_checkpoints"),
     "paths.checkpoints=/proc/lra_bench_checkpoints is not writable ("),
    ("resume-from-another-config", RUN, resume_from_other_config,
     "more); add trainer.force_resume=true to resume from it anyway"),  # the differences, then the fix
    ("resume-from-nowhere", RUN, lambda tmp: [*LISTOPS, f"trainer.resume_from={tmp / 'nowhere'}"],
     "nowhere does not exist; give a run's folder under paths.checkpoints"),
    ("interpolation-typo", RUN, listops("paths.records=${paths.rooot}/records"),
     "paths.records: Interpolation key 'paths.rooot' not found; fix that ${...} reference"),
]


def _snapshot(folder: Path) -> dict:
    """Every file under `folder`: (size, mtime, content hash)."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def _in_process(compose_cfg, tmp_path: Path, args: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of `python -m lra_bench *args`, as main() computes them, without a subprocess."""
    from lra_bench.train.run import run

    paths = [f"paths.root={tmp_path / 'out'}", f"paths.cache={tmp_path / 'cache'}"]
    problem = check_overrides(args) or check_syntax(args) or check_composition(args + paths)
    if problem:
        return 2, f"error: {problem}\n"
    try:
        run(compose_cfg(*args, tiny=False))
    except LRABenchError as exc:
        return 2, f"error: {exc}\n"
    return 0, ""


@pytest.mark.parametrize("how,make_args,fragment", [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_user_mistake_fails_in_one_line_and_writes_nothing(tmp_path, compose_cfg, how, make_args, fragment):
    if "trainer.device=cuda" in fragment and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    args = make_args(tmp_path)
    data = tmp_path / "data"
    before = _snapshot(data)
    if how == CLI:
        res = cli(tmp_path, *args, timeout=120)
        code, stderr = res.returncode, res.stderr
    else:
        code, stderr = _in_process(compose_cfg, tmp_path, args)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert fragment in lines[0], lines[0]
    assert not (tmp_path / "out").exists(), sorted((tmp_path / "out").rglob("*"))  # Hydra's folder included
    assert not (tmp_path / "wandb").exists()
    assert not (tmp_path / "cache").exists(), sorted((tmp_path / "cache").rglob("*"))
    assert _snapshot(data) == before


def test_some_images_missing_is_only_a_warning(tmp_path, caplog):
    """A few unreadable Pathfinder images are skipped and counted (as LRA); only all missing is an error."""
    from lra_bench.data.pathfinder import build_pathfinder

    root, _ = write_pathfinder(tmp_path / "data", empty=(), missing=("imgs/10/sample_1.png", "imgs/2/sample_4.png"))
    data = build_pathfinder(data_dir=str(root), workers=1, cache_dir=str(tmp_path / "cache"))
    assert len(data.train) + len(data.val) + len(data.test) == 18
    assert "skipped 2 of 20 images" in caplog.text


def test_a_failed_build_leaves_an_existing_cache_as_it_was(tmp_path):
    """Malformed data next to a cache that already holds entries: those stay, nothing is added."""
    from lra_bench.data.listops import build_listops
    from lra_bench.errors import DataError

    cache = tmp_path / "cache"
    build_listops(data_dir=str(write_lra_dir(tmp_path / "good", LISTOPS_ROWS)), max_length=16, cache_dir=str(cache))
    before = _snapshot(cache)
    bad = write_lra_dir(tmp_path / "bad", LISTOPS_ROWS)
    (bad / "basic_val.tsv").write_text(f"{HEADER}{ROW}\t12\r\n")
    with pytest.raises(DataError, match="Target 12 is outside 0-9"):
        build_listops(data_dir=str(bad), max_length=16, cache_dir=str(cache))
    assert _snapshot(cache) == before
