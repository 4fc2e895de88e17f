"""`python -m lra_bench.bench steps`: one speed record per (attn, length) from the real config,
out-of-memory and errors as records, one-line user errors, and task_spec() = the builders' spec."""
from __future__ import annotations

import json

import pytest
import torch

from lra_bench.attention.lst import LSTAttention
from lra_bench.bench.__main__ import main
from lra_bench.bench.steps import bench_steps, synthetic_batch
from lra_bench.data import image, listops, pathfinder, retrieval, text
from lra_bench.data.spec import TaskSpec
from lra_bench.errors import ConfigError
from lra_bench.train.record import STATUSES

TINY = dict(batch=2, steps=2, warmup=1, device="cpu", threads=1, overrides=["model=small", "model.num_layers=1"])
FIELDS = {"kind", "task", "attn", "seed", "run_id", "status", "seq_len", "batch_size", "steps", "steps_per_s",
          "examples_per_s", "tokens_per_s", "peak_memory_bytes", "peak_memory_kind", "num_params", "device",
          "hardware", "torch_version", "git_commit", "started_at", "finished_at", "wall_time_s", "config", "error"}


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def load(record: dict) -> dict:
    with open(record["record_path"]) as f:
        return json.load(f)


@pytest.mark.parametrize("task, lengths, per_example", [("text", [128, 64], 1), ("retrieval", [64, 128], 2),
                                                        ("pathfinder", [1024], 1)])
def test_one_ok_record_per_attn_and_length(tmp_path, task, lengths, per_example):
    records = bench_steps(task, ["dct", "softmax"], lengths, out=tmp_path / "speed", **TINY)
    assert [(r["seq_len"], r["attn"]) for r in records] == [(n, a) for n in sorted(lengths) for a in ("softmax", "dct")]
    for r in records:
        saved = load(r)
        assert FIELDS <= set(saved) and saved["status"] == "ok" and saved["error"] is None, saved["error"]
        assert saved["kind"] == "speed" and saved["task"] == task and saved["batch_size"] == 2 and saved["steps"] == 2
        assert saved["steps_per_s"] > 0 and saved["peak_memory_bytes"] > 0 and saved["num_params"] > 0
        assert saved["examples_per_s"] == pytest.approx(2 * saved["steps_per_s"])
        assert saved["tokens_per_s"] == pytest.approx(per_example * saved["seq_len"] * saved["examples_per_s"])
        assert saved["run_id"].startswith(f"speed-{task}-{saved['attn']}-L{saved['seq_len']}-B2-")
        assert saved["config"]["model"]["hidden_dim"] == 64 and saved["config"]["trainer"]["batch_size"] == 2
        assert saved["device"] == "cpu" and saved["peak_memory_kind"].startswith("process_peak_rss")
        assert saved["precision"] == "fp32"  # trainer.precision=auto on CPU
        if task != "pathfinder":
            assert saved["config"]["task"]["max_length"] == saved["seq_len"]
    assert len({r["run_id"] for r in records}) == len(records)
    assert {p.name for p in (tmp_path / "speed" / "records").iterdir()} == {f"{r['run_id']}.json" for r in records}


def test_pathfinder_length_is_fixed_by_the_resolution(tmp_path):
    with pytest.raises(ConfigError, match="fixed length of 1024; use --lengths 1024"):
        bench_steps("pathfinder", ["softmax"], [512, 1024], out=tmp_path / "speed", **TINY)
    assert not (tmp_path / "speed").exists()


def test_synthetic_batches_are_full_length():
    spec = TaskSpec(name="t", vocab_size=3, max_length=500, num_classes=2, pad_id=0)
    x, y = synthetic_batch(spec, 4, torch.device("cpu"), seed=0)
    assert x.shape == (4, 500) and set(x.unique().tolist()) == {1, 2} and set(y.tolist()) <= {0, 1}
    dual = TaskSpec(name="t", vocab_size=256, max_length=8, num_classes=2, pad_id=None, dual_input=True)
    assert synthetic_batch(dual, 3, torch.device("cpu"), seed=0)[0].shape == (3, 2, 8)


@pytest.mark.parametrize("error, status", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
    (RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"), "oom"),
    (ValueError("length 128 is not supported"), "failed"),
])
def test_out_of_memory_and_errors_are_records_and_the_run_goes_on(tmp_path, monkeypatch, error, status):
    forward = LSTAttention.forward

    def picky(self, x, *args, **kwargs):
        if x.shape[1] < 100:  # length 64 (+1 for the CLS token), measured first; not 128
            raise error
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(LSTAttention, "forward", picky)
    bad, good = [load(r) for r in bench_steps("text", ["dct"], [64, 128], out=tmp_path, **TINY)]
    assert (bad["seq_len"], good["seq_len"]) == (64, 128)
    assert bad["status"] == status and bad["status"] in STATUSES and str(error) in bad["error"]
    assert bad["steps_per_s"] is None and bad["peak_memory_bytes"] is None and bad["num_params"] > 0
    assert good["status"] == "ok" and good["steps_per_s"] > 0


def cli(capsys, *args):
    try:
        code = main(["steps", *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_a_table_and_the_records_folder(tmp_path, capsys):
    code, out, err = cli(capsys, "--attn", "fnet,softmax", "--lengths", "32", "--batch", "2", "--steps", "1",
                         "--warmup", "0", "--threads", "1", "--device", "cpu", "--out", str(tmp_path), "model=small")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("speed benchmark | task text | cpu") and (
        "size cpu (batch, model given): batch 2, model emb 64, 4 heads, 2 layers" in lines[0])
    assert lines[1].split()[:3] == ["attn", "length", "steps/s"]
    assert [line.split()[:2] for line in lines[2:4]] == [["softmax", "32"], ["fnet", "32"]]
    assert lines[2].split()[3] == "1.00x" and lines[3].split()[-1] == "ok"
    assert lines[4] == f"records: {tmp_path / 'records'} (2 written)"


@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "unknown --task nope; available: "),
    (["--attn", "softmax,nope"], "unknown --attn nope; available: "),
    (["--lengths", "1k"], "--lengths 1k: expected comma-separated integers"),
    (["--lengths", "0"], "--lengths must be positive"),
    (["--task", "pathfinder"], "--lengths 1000,2000,3000,4000: task pathfinder has a fixed length of 1024"),
    (["--batch", "x"], "argument --batch: invalid int value"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["model=nope"], "model=nope is not a config in conf/model/"),
    (["trainer.lr=abc"], "trainer.lr=abc"),
    (["trainer.lrr=1"], "unknown key trainer.lrr"),
    (["trainer.batch_size=4"], "trainer.batch_size is set by --batch"),
    (["--device", "cpu", "model.num_heads=3"], "model.hidden_dim=64 is not divisible by model.num_heads=3"),  # small
    (["--size", "lra", "model.num_heads=3"], "model.hidden_dim=256 is not divisible by model.num_heads=3"),
    (["--size", "gpu"], "argument --size: invalid choice: 'gpu'"),
    (["--device", "tpu"], "--device=tpu is not a device this harness runs on; use cpu, cuda[:N] or auto"),
    (["--device", "cudax"], "--device=cudax is not a device this harness runs on; use cpu, cuda[:N] or auto"),
])
def test_cli_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    code, out, err = cli(capsys, "--out", str(tmp_path / "speed"), *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "speed").exists()


def test_cli_exit_code_1_when_a_configuration_failed(tmp_path, capsys, monkeypatch):
    def broken(self, x, *args, **kwargs):
        raise ValueError("broken\nsecond line")

    monkeypatch.setattr(LSTAttention, "forward", broken)
    code, out, _ = cli(capsys, "--attn", "dct", "--lengths", "16", "--batch", "2", "--steps", "1", "--device", "cpu",
                       "--out", str(tmp_path), "model=small")
    assert code == 1 and "failed (ValueError: broken second line)" in out


# ---------------------------------------------------------------- task_spec() == the builder's spec

def test_task_spec_equals_the_builders(tmp_path):
    from tests.data.test_image import write_cifar
    from tests.data.test_listops import write_lra_dir
    from tests.data.test_pathfinder import write_tree as write_pathfinder
    from tests.data.test_retrieval import write_tsv_dir
    from tests.data.test_text import write_tree as write_imdb

    cache = str(tmp_path / "cache")
    built = {
        "listops": (listops, dict(max_length=10),
                    listops.build_listops(data_dir=str(write_lra_dir(tmp_path / "l")), max_length=10, cache_dir=cache)),
        "text": (text, dict(max_length=12, source="aclimdb"),
                 text.build_text(data_dir=str(write_imdb(tmp_path / "t")), max_length=12, source="aclimdb",
                                 cache_dir=cache)),
        "retrieval": (retrieval, dict(max_length=14), retrieval.build_retrieval(
            data_dir=str(write_tsv_dir(tmp_path / "r")), max_length=14, cache_dir=cache)),
        "image": (image, dict(source="pickle"),
                  write_cifar(tmp_path / "i") and image.build_image(data_dir=str(tmp_path / "i"), source="pickle",
                                                                    cache_dir=cache)),
    }
    for resolution in (32, 64):
        root, _ = write_pathfinder(tmp_path / f"p{resolution}", resolution=resolution)
        built[f"pathfinder{resolution}"] = (pathfinder, dict(resolution=resolution), pathfinder.build_pathfinder(
            resolution=resolution, data_dir=str(root), workers=1, cache_dir=cache))
    for name, (module, options, data) in built.items():
        assert module.task_spec(**options) == data.spec, name
    assert built["pathfinder64"][2].spec.max_length == 4096 and built["retrieval"][2].spec.dual_input
    # defaults: the builders' own
    assert (listops.task_spec().max_length, text.task_spec().max_length, retrieval.task_spec().max_length) == (
        2000, 1000, 4000)
    assert pathfinder.task_spec(resolution=128).name == "pathx" and pathfinder.task_spec().max_length == 1024
    with pytest.raises(ConfigError, match="fixed length of 1024"):
        pathfinder.task_spec(max_length=512)
    with pytest.raises(ConfigError, match="fixed length of 1024"):
        image.task_spec(max_length=2048)


def test_speed_mode_times_at_the_precision_asked_for(tmp_path):
    (record,) = bench_steps("text", ["dct"], [64], out=tmp_path / "speed",
                            **{**TINY, "overrides": [*TINY["overrides"], "trainer.precision=bf16"]})
    assert load(record)["status"] == "ok" and load(record)["precision"] == "bf16"


@pytest.mark.parametrize("size, device, batch, overrides, expected", [
    ("auto", "cpu", None, [], ("cpu", 4, 64, 2)),  # a CPU runs at a size that fits it: model=small
    ("cpu", "cpu", None, [], ("cpu", 4, 64, 2)),
    ("lra", "cpu", None, [], ("lra", 32, 256, 4)),  # LRA's Table 2 setting (text's LRA model), asked for
    ("auto", "cpu", 8, [], ("cpu", 8, 64, 2)),  # --batch wins over the size's batch
    ("auto", "cpu", None, ["model.hidden_dim=32"], ("cpu", 4, 32, 2)),  # model values apply on top of small
    ("lra", "cpu", None, ["model=small", "model.num_layers=1"], ("lra", 32, 64, 1)),  # a chosen model wins
])
def test_size_sets_the_batch_and_model_unless_given(tmp_path, size, device, batch, overrides, expected):
    from lra_bench.bench.steps import plan

    (p,) = plan("text", ["dct"], [64], batch, steps=1, warmup=0, device=device, out=tmp_path, overrides=overrides,
                size=size)
    assert (p.size, p.cfg.trainer.batch_size, p.cfg.model.hidden_dim, p.cfg.model.num_layers) == expected


def test_auto_size_on_cuda_is_lras():
    from lra_bench.bench.steps import sized

    assert sized("auto", torch.device("cuda"), None, []) == ("lra", 32, [], "")
    assert sized("auto", torch.device("cpu"), None, ["x=1"]) == ("cpu", 4, ["model=small", "x=1"], "")
    assert sized("cpu", torch.device("cpu"), 8, ["experiment=e"]) == ("cpu", 8, ["experiment=e"], "batch, experiment")
    assert sized("cpu", torch.device("cpu"), None, ["+model=m"]) == ("cpu", 4, ["+model=m"], "model")
    with pytest.raises(ConfigError, match="--size huge: expected auto, lra or cpu"):
        sized("huge", torch.device("cpu"), None, [])
