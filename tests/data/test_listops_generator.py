"""Tests for the offline LRA ListOps generator (lra_bench.data.listops_generator)."""

from __future__ import annotations

import collections
import dataclasses
import random
import statistics

import numpy as np
import pytest

from lra_bench.data import listops_generator as lg
from lra_bench.data.listops_generator import (ListOpsGenConfig, evaluate, generate_samples, max_tree_length,
                                              tree_depth, tree_length, write_listops_tsv)
from lra_bench.errors import ConfigError

SMALL = ListOpsGenConfig(num_train=300, num_val=50, num_test=50, min_length=20, max_length=120, seed=1)
OPS = ("[MIN", "[MAX", "[MED", "[SM")

# (string, value, length, depth), values worked out by hand.
HAND_CHECKED = [
    ("7", 7, 1, 1),
    ("( ( ( [MAX 2 ) 9 ) ] )", 9, 4, 2),
    ("( ( ( [MIN 4 ) 7 ) ] )", 4, 4, 2),
    ("( ( ( ( [MED 8 ) 1 ) 5 ) ] )", 5, 5, 2),  # odd count: sorted 1 5 8
    ("( ( ( ( ( [MED 1 ) 2 ) 4 ) 9 ) ] )", 3, 6, 2),  # even count: (2 + 4) / 2
    ("( ( ( [MED 1 ) 2 ) ] )", 1, 4, 2),  # even count, 1.5 truncated
    ("( ( ( ( [SM 9 ) 8 ) 7 ) ] )", 4, 5, 2),  # 24 mod 10
    ("( ( ( ( [SM 3 ) ( ( ( [MIN 4 ) 7 ) ] ) ) 5 ) ] )", 2, 8, 3),  # 3 + 4 + 5 = 12 mod 10
    # MAX(MIN(3, MED(9, 2)), SM(5, 5)) = MAX(MIN(3, 5), 0) = 3
    ("( ( ( [MAX ( ( ( [MIN 3 ) ( ( ( [MED 9 ) 2 ) ] ) ) ] ) ) ( ( ( [SM 5 ) 5 ) ] ) ) ] )", 3, 13, 4),
]


@pytest.mark.parametrize("source,value,length,depth", HAND_CHECKED)
def test_hand_checked_strings(source, value, length, depth):
    assert evaluate(source) == value
    assert tree_length(source) == length
    assert tree_depth(source) == depth


@pytest.mark.parametrize("source", [
    "", "12", "3 4", "( 3 )", "[MAX 2 9 ]",
    "( [MAX 2 ) 9 ) ] )",  # too few '(' for two arguments
    "( ( ( ( [MAX 2 ) 9 ) ] )",  # too many '('
    "( ( ( [MAX 2 ) 9 ) ]",  # missing final ')'
    "( ( ( [MAX 2 ) 9 ) ] ) )",  # trailing ')'
    "( ( ( [MAX 2 9 ) ) ] )",  # argument not closed
    "( ( ( [FOO 2 ) 9 ) ] )",
    "( [MAX ] )",  # no arguments
    "( ( ( [MAX 2 ) 9 )",  # operator never closed
])
def test_malformed_strings_raise(source):
    with pytest.raises(ValueError):
        evaluate(source)


# ---------------------------------------------------------------------------
# A plain reference of the original LRA process: recursive, rejection sampling, no early abandon,
# the tree as left-nested tuples and the string as their recursive rendering.

def _ref_tree(rng: random.Random, depth: int, max_depth: int, max_args: int):
    r = rng.random() if depth < max_depth else 1
    if r > 0.25:
        return rng.randint(0, 9), 1
    children, length = [], 2
    for _ in range(rng.randint(2, max_args)):
        child, child_length = _ref_tree(rng, depth + 1, max_depth, max_args)
        children.append(child)
        length += child_length
    tree = (rng.choice(OPS), children[0])
    for child in children[1:]:
        tree = (tree, child)
    return (tree, "]"), length


def _ref_render(tree) -> str:
    if isinstance(tree, tuple):
        return "( " + _ref_render(tree[0]) + " " + _ref_render(tree[1]) + " )"
    return str(tree)


def _ref_value(tree) -> int:
    if not isinstance(tree, tuple):
        return tree
    args, node = [], tree[0]  # tree = (chain, "]"), chain = ((op, a0), a1), ...
    while isinstance(node[0], tuple):
        args.append(_ref_value(node[1]))
        node = node[0]
    op, args = node[0], [_ref_value(node[1])] + args[::-1]
    return {"[MIN": min, "[MAX": max, "[SM": lambda a: sum(a) % 10,
            "[MED": lambda a: int(np.median(a))}[op](args)


def _ref_samples(cfg: ListOpsGenConfig, n: int, seed: int) -> list[tuple[str, int, int]]:
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        tree, length = _ref_tree(rng, 1, cfg.max_depth, cfg.max_args)
        if cfg.min_length < length < cfg.max_length and tree not in seen:
            seen.add(tree)
            out.append((_ref_render(tree), _ref_value(tree), length))
    return out


def _arg_counts(source: str) -> list[int]:
    """Argument count of every operator: an operator with k arguments is preceded by k + 1 '('."""
    tokens, counts, run = source.split(), [], 0
    for tok in tokens:
        if tok == "(":
            run += 1
        else:
            if tok in OPS:
                counts.append(run - 1)
            run = 0
    return counts


def test_reference_strings_parse_to_reference_values_and_lengths():
    cfg = ListOpsGenConfig(min_length=10, max_length=60, max_depth=6, max_args=5)
    for source, value, length in _ref_samples(cfg, 300, seed=5):
        assert evaluate(source) == value
        assert tree_length(source) == length


# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_samples():
    return generate_samples(SMALL, workers=1, progress=False)


def test_small_config_invariants(small_samples):
    assert len(small_samples) == SMALL.num_samples
    assert len({s for s, _ in small_samples}) == len(small_samples)
    ops_seen = collections.Counter()
    for source, label in small_samples:
        assert isinstance(label, int) and label == evaluate(source)
        assert SMALL.min_length < tree_length(source) < SMALL.max_length
        assert tree_depth(source) <= SMALL.max_depth
        counts = _arg_counts(source)
        assert counts and all(2 <= k <= SMALL.max_args for k in counts)
        for tok in source.split():
            assert tok in ("(", ")", "]") or tok in OPS or tok in "0123456789"
            if tok in OPS:
                ops_seen[tok] += 1
    assert set(ops_seen) == set(OPS)


def test_deterministic_and_independent_of_workers(small_samples):
    assert generate_samples(SMALL, workers=1, progress=False) == small_samples
    several_chunks = dataclasses.replace(SMALL, num_train=4 * lg.CHUNK_SIZE)  # so that the pool is used
    assert (generate_samples(several_chunks, workers=2, progress=False)
            == generate_samples(several_chunks, workers=1, progress=False))
    other = generate_samples(dataclasses.replace(SMALL, seed=2), workers=1, progress=False)
    assert other != small_samples


def test_cell_tables_are_exactly_the_original_probabilities():
    for max_args in (2, 5, 10, 13):
        op_cells, total, _, arity, op_code, _, digit, _ = lg._cell_tables(max_args)
        assert 4 * op_cells == total  # P(operator) = 1/4
        pairs = collections.Counter(zip(op_code[:op_cells], arity[:op_cells]))
        assert set(pairs) == {(op, k) for op in range(4) for k in range(2, max_args + 1)}
        assert len(set(pairs.values())) == 1  # operator and arity uniform and independent
        for cells in (digit[op_cells:], digit):  # value nodes, and nodes at max_depth
            assert sorted(collections.Counter(cells)) == list(range(10))
            assert len(set(collections.Counter(cells).values())) == 1


@pytest.mark.parametrize("cfg", [
    ListOpsGenConfig(num_train=5000, num_val=0, num_test=0, min_length=10, max_length=60, max_depth=6,
                     max_args=5, seed=3),
    ListOpsGenConfig(num_train=3000, num_val=0, num_test=0, min_length=20, max_length=120, max_depth=5,
                     max_args=10, seed=4),
])
def test_distribution_matches_reference(cfg):
    ours = generate_samples(cfg, workers=1, progress=False)
    ref = _ref_samples(cfg, cfg.num_samples, seed=11)
    n = cfg.num_samples

    def stats(samples):
        lengths = sorted(tree_length(s) for s, *_ in samples)
        ops = collections.Counter(t for s, *_ in samples for t in s.split() if t in OPS)
        args = [k for s, *_ in samples for k in _arg_counts(s)]
        labels = collections.Counter(y for _, y, *_ in samples)
        return lengths, ops, args, labels

    (l1, o1, a1, y1), (l2, o2, a2, y2) = stats(ours), stats(ref)
    assert abs(statistics.mean(l1) - statistics.mean(l2)) < 0.05 * statistics.mean(l2)
    assert abs(statistics.mean(a1) - statistics.mean(a2)) < 0.05 * statistics.mean(a2)
    # Two-sample Kolmogorov-Smirnov distance of the length distributions (critical value ~0.04 at 0.1%).
    grid = range(cfg.min_length + 1, cfg.max_length)
    cdf = lambda xs: np.searchsorted(np.array(xs), np.array(grid), side="right") / len(xs)  # noqa: E731
    assert np.max(np.abs(cdf(l1) - cdf(l2))) < 0.06
    for op in OPS:
        assert abs(o1[op] / sum(o1.values()) - 0.25) < 0.02
        assert abs(o2[op] / sum(o2.values()) - 0.25) < 0.02
    for label in range(10):
        assert abs(y1[label] - y2[label]) / n < 0.03


def test_write_listops_tsv(tmp_path):
    cfg = dataclasses.replace(SMALL, num_train=120, num_val=30, num_test=20)
    paths = write_listops_tsv(cfg, tmp_path / "listops", workers=1, progress=False)
    assert set(paths) == {"train", "val", "test"}
    assert sorted(p.name for p in (tmp_path / "listops").iterdir()) == [
        "basic_test.tsv", "basic_train.tsv", "basic_val.tsv"]  # no leftover temporary files
    sources = {}
    for split, expected in (("train", 120), ("val", 30), ("test", 20)):
        raw = paths[split].read_bytes().decode("utf-8")
        assert "\r" not in raw
        lines = raw.split("\n")
        assert lines[0] == "Source\tTarget" and lines[-1] == ""
        rows = [line.split("\t") for line in lines[1:-1]]
        assert len(rows) == expected
        for source, target in rows:
            assert evaluate(source) == int(target)
        sources[split] = {source for source, _ in rows}
    assert not sources["train"] & sources["val"]
    assert not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]
    assert [s for s, _ in generate_samples(cfg, workers=1, progress=False)][:120] == [
        line.split("\t")[0] for line in paths["train"].read_text().splitlines()[1:]]


@pytest.mark.parametrize("changes", [
    {"num_train": -1}, {"num_val": -1}, {"num_test": -5}, {"num_train": 0},
    {"min_length": -1}, {"seed": -1}, {"num_train": 1.5}, {"max_length": "2000"},
    {"min_length": 10, "max_length": 11}, {"min_length": 10, "max_length": 10}, {"min_length": 10, "max_length": 5},
    {"max_args": 1}, {"max_depth": 0},
    {"max_depth": 2, "max_args": 10, "min_length": 12},  # longest tree: 2 + 10 = 12, not > 12
    {"max_depth": 3, "max_args": 2, "min_length": 10},  # longest tree: 2 + 2 * (2 + 2) = 10
    {"max_depth": 1, "min_length": 1},  # only single values (length 1)
    {"min_length": 1, "max_length": 4},  # only lengths 2 and 3, which no tree has
])
def test_validate_rejects_impossible_configs(changes):
    cfg = dataclasses.replace(ListOpsGenConfig(), **changes)
    with pytest.raises(ConfigError):
        cfg.validate()
    with pytest.raises(ConfigError):
        generate_samples(cfg, workers=1, progress=False)


def test_validate_accepts_boundary_configs():
    ListOpsGenConfig().validate()
    ListOpsGenConfig(max_depth=2, max_args=10, min_length=11, max_length=13).validate()
    ListOpsGenConfig(max_depth=1, min_length=0, max_length=2, num_train=10, num_val=0, num_test=0).validate()
    assert [max_tree_length(d, 10) for d in (1, 2, 3)] == [1, 12, 122]


def test_too_few_distinct_trees_is_a_config_error():
    # Lengths strictly between 0 and 2: only the ten single digits exist.
    cfg = ListOpsGenConfig(num_train=11, num_val=0, num_test=0, min_length=0, max_length=2)
    with pytest.raises(ConfigError, match="distinct"):
        generate_samples(cfg, workers=1, progress=False)
    ten = generate_samples(dataclasses.replace(cfg, num_train=10), workers=1, progress=False)
    assert sorted(ten) == [(str(d), d) for d in range(10)]
