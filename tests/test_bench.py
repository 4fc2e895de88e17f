"""`python -m lra_bench.bench attention`: rows, ratios, errors as rows, CSV, one-line CLI errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from lra_bench import kernels
from lra_bench.attention.fnet import FNetMixer
from lra_bench.bench import bench_attention
from lra_bench.bench.memory import LiveStorageBytes
from lra_bench.bench.mixers import mixer_names
from lra_bench.bench.report import CSV_COLUMNS, TABLE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(batch=2, hidden=16, heads=2, warmup=0, repeats=1, threads=2)


def bench_cli(*args):
    return subprocess.run([sys.executable, "-m", "lra_bench.bench", "attention", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_rows_times_memory_and_ratios():
    df = bench_attention(["softmax", "fnet"], [16, 32], **TINY)
    assert list(df.columns) == CSV_COLUMNS
    assert sorted(zip(df.attn, df.n)) == sorted((a, n) for a in ("projections", "softmax", "fnet") for n in (16, 32))
    assert (df.status == "ok").all()
    assert (df.fwd_ms > 0).all() and (df.fwdbwd_ms > 0).all() and (df.peak_mib >= 0).all()
    assert (df.memory_method == "tensor_storage").all() and (df.device == "cpu").all()
    for n, at_n in df.groupby("n"):
        by = at_n.set_index("attn")
        assert by.loc["projections", "vs_proj"] == pytest.approx(1.0)
        assert by.loc["projections", "vs_proj_paired"] == 1.0 and (by.vs_proj_paired > 0).all()
        assert (by.growth_paired > 0).all()  # t(n) / t(n/2), timed alternately
        assert by.loc["softmax", "vs_softmax"] == pytest.approx(1.0)
        for name in ("softmax", "fnet"):
            assert by.loc[name, "vs_proj"] == pytest.approx(by.loc[name, "fwdbwd_ms"] / by.loc["projections", "fwdbwd_ms"])
            assert by.loc[name, "vs_softmax"] == pytest.approx(by.loc["softmax", "fwdbwd_ms"] / by.loc[name, "fwdbwd_ms"])


def test_no_softmax_leaves_vs_softmax_blank():
    df = bench_attention(["fnet"], [16], **TINY)
    assert list(df.attn) == ["projections", "fnet"] and df.vs_softmax.isna().all()


def test_a_failing_configuration_is_a_row_not_a_crash(monkeypatch):
    forward = FNetMixer.forward

    def picky(self, x, *args, **kwargs):
        if x.shape[1] in (8, 32):
            raise RuntimeError(f"length {x.shape[1]} is not supported\n(second line)")
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(FNetMixer, "forward", picky)
    df = bench_attention(["fnet"], [16, 32], **TINY).set_index(["attn", "n"])
    good = df.loc[("fnet", 16)]
    assert good.status == "ok" and good.fwdbwd_ms > 0
    assert pd.isna(good.growth_paired)  # n/2 = 8 fails: the row stands, its growth is blank
    bad = df.loc[("fnet", 32)]
    assert bad.status == "error: RuntimeError: length 32 is not supported (second line)"
    assert pd.isna(bad.fwdbwd_ms) and pd.isna(bad.vs_proj) and pd.isna(bad.vs_proj_paired)
    assert pd.isna(bad.growth_paired)
    assert df.loc[("projections", 32), "status"] == "ok" and df.loc[("projections", 32), "growth_paired"] > 0


def test_live_storage_counts_new_storages_once_and_frees_them():
    before = torch.zeros(1024)  # exists before: never counted, nor its views or in-place results
    with LiveStorageBytes() as meter:
        before.view(32, 32).add_(1)
        a = torch.ones(2**18)  # 1 MiB
        a.view(512, 512).mul_(2)  # a view and an in-place op of `a`: still 1 MiB
        b = a * 2  # 2 MiB live
        del a, b
        c = torch.ones(2**17)  # 0.5 MiB once a and b are gone
        assert meter.live == 2**19
    assert meter.peak == 2**21
    del c


def test_cli_prints_table_and_writes_csv(tmp_path, monkeypatch):
    out = tmp_path / "sub" / "a.csv"
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.x86_ibt=0:glibc.malloc.mmap_max=0")  # the malloc part is named
    r = bench_cli("--attn", "softmax", "--lengths", "16", "--hidden", "16", "--heads", "2", "--repeats", "1",
                  "--warmup", "0", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("attention benchmark | cpu") and "memory: tensor_storage" in lines[0]
    assert "| malloc GLIBC_TUNABLES=glibc.malloc.mmap_max=0 |" in lines[0]
    assert lines[1].split() == TABLE_COLUMNS
    assert [line.split()[0] for line in lines[2:4]] == ["projections", "softmax"]
    df = pd.read_csv(out)
    assert list(df.columns) == CSV_COLUMNS and len(df) == 2 and (df.status == "ok").all()
    assert set(df.hidden) == {16} and set(df.heads) == {2} and set(df.threads) == {2}
    assert set(df.malloc) == {"GLIBC_TUNABLES=glibc.malloc.mmap_max=0"}
    assert set(df.kernels) == {kernels.status()} and f"| kernels {kernels.status()} |" in lines[0]
    assert out.with_suffix(".txt").read_text().splitlines() == lines[:4]  # the printed table, beside the CSV
    assert lines[4] == f"wrote {out} and {out.with_suffix('.txt')} (the table above)"


def test_cli_with_stdout_closed_writes_its_files_and_no_traceback(tmp_path):
    """`... | head` that stops reading: the measurements are on disk, and no traceback."""
    out = tmp_path / "a.csv"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is printed
    try:
        r = subprocess.run([sys.executable, "-m", "lra_bench.bench", "attention", "--attn", "fnet", "--lengths", "16",
                            "--hidden", "16", "--heads", "2", "--repeats", "1", "--warmup", "0", "--out", str(out)],
                           cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr
    assert len(pd.read_csv(out)) == 2 and out.with_suffix(".txt").exists()


def test_cli_unknown_name_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "a.csv"
    r = bench_cli("--attn", "softmax,nope", "--lengths", "16", "--out", str(out))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: unknown --attn nope; available: ")
    assert ", ".join(mixer_names()) in r.stderr
    assert r.stdout == "" and not out.exists() and not out.with_suffix(".txt").exists()


@pytest.mark.parametrize("option, name, message", [
    ("--device", "tpu", "--device=tpu is not a device this harness runs on; use cpu, cuda[:N] or auto"),
    ("trainer.device", "cudax", "trainer.device=cudax is not a device this harness runs on; use cpu, cuda[:N] or auto"),
    ("--device", "meta", "--device=meta is not a device this harness runs on; use cpu, cuda[:N] or auto"),
    ("--device", "cuda", "--device=cuda but no CUDA device is available; use --device=cpu or auto"),
])
def test_device_settings_fail_in_one_line_naming_the_option(option, name, message):
    from lra_bench.errors import ConfigError
    from lra_bench.train.distributed import pick_device

    if name == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError) as err:
        pick_device(name, option=option)
    assert str(err.value) == message
    assert pick_device("cpu", option=option) == torch.device("cpu")
