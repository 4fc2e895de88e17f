"""Reading run records: what counts as one, broken files, duplicates, config fingerprints."""
from __future__ import annotations

import json
import logging

import pytest

from lra_bench.report import records
from tests.report import make_record, write_records


def test_reads_records_and_skips_other_json(tmp_path, caplog):
    write_records(tmp_path / "runs", [make_record(), make_record("text", kind=None), make_record(kind="speed")])
    wandb = tmp_path / "runs" / "wandb" / "run-1" / "files"
    wandb.mkdir(parents=True)
    (wandb / "wandb-summary.json").write_text(json.dumps({"status": "ok", "test_accuracy": 0.9}))
    (wandb / "wandb-metadata.json").write_text(json.dumps({"program": "x", "host": "y"}))
    (tmp_path / "runs" / "list.json").write_text("[1, 2]")
    with caplog.at_level(logging.WARNING):
        recs = records.load([tmp_path / "runs"])
    assert sorted(r["kind"] for r in recs) == ["speed", "train", "train"]  # no kind -> train
    assert caplog.records == []  # other JSON is passed over in silence


def test_corrupt_json_is_one_warning_naming_the_file(tmp_path, caplog):
    write_records(tmp_path, [make_record()])
    (tmp_path / "broken.json").write_text('{"run_id": "x", "status": ')
    with caplog.at_level(logging.WARNING):
        recs = records.load([tmp_path])
    assert len(recs) == 1
    [warning] = caplog.records
    assert "broken.json" in warning.getMessage() and "\n" not in warning.getMessage()


def test_unknown_status_is_skipped_with_a_warning(tmp_path, caplog):
    write_records(tmp_path, [make_record(status="running")])
    with caplog.at_level(logging.WARNING):
        assert records.load([tmp_path]) == []
    assert "running" in caplog.text


def test_duplicate_run_ids_keep_the_latest_finished(tmp_path):
    failed = make_record(status="failed", finished_at="2026-01-01T10:30:00+00:00")
    earlier = make_record(acc=0.7, finished_at="2026-01-01T12:00:00+02:00")  # 10:00 UTC, before `failed`
    resumed = make_record(acc=0.8, finished_at="2026-01-02T00:00:00+00:00")
    assert failed["run_id"] == earlier["run_id"] == resumed["run_id"]
    write_records(tmp_path / "a", [failed, earlier])
    assert [r["status"] for r in records.load([tmp_path / "a"])] == ["failed"]
    write_records(tmp_path / "b", [resumed, failed, earlier])
    assert [r["test_accuracy"] for r in records.load([tmp_path / "b"])] == [0.8]


def test_record_files_and_folders_mix_and_a_missing_path_is_an_error(tmp_path):
    [path] = write_records(tmp_path / "a", [make_record()])
    write_records(tmp_path / "b", [make_record("text")])
    assert len(records.load([path, tmp_path / "b"])) == 2
    with pytest.raises(records.ReportError, match="no such file"):
        records.load([tmp_path / "missing"])


def test_identity_fingerprint_ignores_seed_paths_and_devices():
    a = make_record(seed=0, config={"trainer": {"device": "cuda"}})
    b = make_record(seed=1, config={"trainer": {"device": "cpu", "progress": True}})
    c = make_record(seed=0, config={"trainer": {"lr": 0.01}})
    df = records.frame([a, b, c])
    assert df.loc[0, "fp_identity"] == df.loc[1, "fp_identity"] != df.loc[2, "fp_identity"]
    assert df.loc[0, "fp_arch"] == df.loc[2, "fp_arch"]  # lr does not change the architecture


def test_lengths_and_batches_come_from_the_record_or_its_config():
    rec = make_record("pathfinder", config={"task": {"max_length": None, "resolution": 32}})
    del rec["seq_len"], rec["batch_size"]
    df = records.frame([rec, make_record("text", seq_len=2000, batch_size=8)])
    assert df["length"].tolist() == [1024, 2000] and df["batch"].tolist() == [32, 8]


def test_label_configs_gives_other_configs_rows_of_their_own():
    recs = [make_record(seed=s) for s in range(3)] + [make_record(config={"model": {"hidden_dim": 64}})]
    df = records.frame(recs)
    configs = {r["run_id"]: r["config"] for r in recs}
    names, warnings = records.label_configs(df, ["task", "attn"], "fp_identity", configs, records.identity_view)
    assert names.tolist() == ["softmax"] * 3 + ["softmax (model.hidden_dim=64)"]
    [warning] = warnings
    assert "listops/softmax: 2 configs" in warning and "3 runs" in warning


def test_label_configs_names_at_most_two_keys():
    recs = [make_record(), make_record(), make_record(config={"model": {"hidden_dim": 1, "num_layers": 9},
                                                              "trainer": {"lr": 1.0}})]
    recs[1]["run_id"] += "-b"
    df = records.frame(recs)
    names, _ = records.label_configs(df, ["task", "attn"], "fp_identity", {r["run_id"]: r["config"] for r in recs},
                                     records.identity_view)
    assert names.iloc[2] == "softmax (model.hidden_dim=1, model.num_layers=9, +1 more)"


def test_provenance_lines():
    recs = [make_record(), make_record("text", status="oom", hardware="A100", torch_version="2.4.0",
                                       git_commit="abcdef0123456789-dirty", device="cuda:1")]
    lines = records.provenance(records.frame(recs), "training runs", memory=True)
    assert lines[0] == "Provenance: training runs: 2 (1 ok, 1 oom)"
    assert "hardware: NVIDIA H200 (1); A100 (1)" in lines
    assert "torch: 2.13.0 (1); 2.4.0 (1)" in lines
    assert "git commits: 275c1fc92c (1); abcdef0123-dirty (1)" in lines
    assert "devices: cuda (1); cuda:1 (1)" in lines
    assert "peak memory measured as: cuda_max_allocated" in lines
    # the commits that trained a run count, not the one that re-entered it and wrote its record
    recs.append(make_record("image", git_commit="ffff", trained_at_commits=["aaaa", "bbbb"]))
    lines = records.provenance(records.frame(recs), "training runs")
    assert "git commits: 275c1fc92c (1); abcdef0123-dirty (1); aaaa (1); bbbb (1)" in lines
    lines = records.provenance(records.frame([make_record(trained_at_commits=[None, "cccc"])]), "training runs")
    assert "git commits: unknown (1); cccc (1)" in lines  # resumed from a checkpoint that kept no commit
