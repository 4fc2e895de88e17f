"""Every LRA task end to end through the real configs: tiny data in each task's real format
(or generated), a few training steps, a complete run record -- softmax and LST attention."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lra_bench.train.run import run
from tests.data.test_image import write_cifar
from tests.data.test_pathfinder import write_tree as write_pathfinder_tree
from tests.data.test_retrieval import write_tsv_dir
from tests.data.test_text import write_tree as write_aclimdb

# A seconds-long run of any task: a tiny model, a few steps, no W&B.
TINY_RUN = ["model.hidden_dim=16", "model.num_heads=2", "model.num_layers=1", "model.mlp_dim=32",
            "model.attention_dropout=0.0",  # SDPA with dropout on CPU materialises L x L: 8 GiB at Path-X length
            "trainer.batch_size=4", "trainer.eval_batch_size=8", "trainer.max_steps=4", "trainer.warmup_steps=1",
            "trainer.eval_every=2", "trainer.checkpoint_every=2", "trainer.progress=false", "trainer.lr=0.001",
            "trainer.schedule=cosine", "logger=none"]


def text_data(tmp: Path) -> list[str]:
    write_aclimdb(tmp / "imdb")
    return [f"task.data_dir={tmp / 'imdb'}", "task.max_length=64"]


def retrieval_data(tmp: Path) -> list[str]:
    write_tsv_dir(tmp / "release" / "lra_release" / "tsv_data")  # found through paths.data_root
    return [f"paths.data_root={tmp / 'release'}", "task.max_length=48", "trainer.batch_size=2"]  # 3 train pairs


def image_data(tmp: Path) -> list[str]:
    write_cifar(tmp / "cifar")
    return [f"task.data_dir={tmp / 'cifar'}"]


def pathfinder_data(tmp: Path) -> list[str]:
    root, _ = write_pathfinder_tree(tmp / "lra_release")
    return [f"task.data_dir={root}"]


def generated(num_samples: int, *extra: str):
    return lambda tmp: [f"task.generate.num_samples={num_samples}", "task.workers=1", *extra]


# Path-X is 16384 tokens: softmax costs ~15 GFLOP per image and step, so one image per step.
PATHX_RUN = ("trainer.batch_size=1", "trainer.eval_batch_size=2")


TASKS = {
    "text": (text_data, 64, 1),
    "retrieval": (retrieval_data, 48, 2),
    "image": (image_data, 1024, 1),
    "pathfinder": (pathfinder_data, 1024, 1),
    "pathx": (generated(10, *PATHX_RUN), 128 * 128, 1),
}


@pytest.mark.parametrize("attn", ["softmax", "dct"])
@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_trains_and_writes_a_record(compose_cfg, tmp_path, task, attn):
    make_data, length, docs = TASKS[task]
    cfg = compose_cfg(f"task={task}", f"attn={attn}", *TINY_RUN, *make_data(tmp_path), tiny=False)
    record = run(cfg)
    on_disk = json.loads(Path(record["record_path"]).read_text())
    assert on_disk["status"] == "ok" and on_disk["task"] == task and on_disk["attn"] == attn
    assert on_disk["steps"] == 4 and [h["step"] for h in on_disk["history"]] == [2, 4]
    assert 0.0 <= on_disk["test_accuracy"] <= 1.0 and on_disk["peak_memory_bytes"] > 0
    assert on_disk["tokens_per_s"] == pytest.approx(on_disk["examples_per_s"] * length * docs, rel=1e-6)
    assert on_disk["data"]["token_cache"]


def test_pathfinder_generates_its_data_when_none_is_given(compose_cfg, tmp_path):
    cfg = compose_cfg("task=pathfinder", "attn=hadamard", *TINY_RUN, *generated(40)(tmp_path), tiny=False)
    record = run(cfg)
    assert record["status"] == "ok" and record["data"]["source"]["generated"]
    assert record["majority_test_accuracy"] == pytest.approx(0.5, abs=0.26)  # balanced classes, 4 test images


def test_a_batch_larger_than_the_training_split_fails_in_one_line_before_training(compose_cfg, tmp_path):
    from lra_bench.errors import ConfigError

    cfg = compose_cfg("task=retrieval", *TINY_RUN, *retrieval_data(tmp_path), "trainer.batch_size=8", tiny=False)
    with pytest.raises(ConfigError, match=r"trainer.batch_size=8 exceeds the 3 training examples of retrieval; "
                                          r"set trainer.batch_size<=3"):
        run(cfg)
    assert not (tmp_path / "out" / "records").exists()


def test_an_empty_split_fails_in_one_line(compose_cfg, tmp_path):
    from lra_bench.errors import DataError

    cfg = compose_cfg("task=image", *TINY_RUN, *image_data(tmp_path), "task.val_fraction=0.001", tiny=False)
    with pytest.raises(DataError, match="the val split"):
        run(cfg)
