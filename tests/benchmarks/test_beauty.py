"""benchmarks/beauty.py: its leave-one-out split and its seeds, on tiny S3-Rec-format files."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from seqrec.train.batches import TrainBatches

N_ITEMS = 30
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def beauty() -> ModuleType:
    path = ROOT / "benchmarks" / "beauty.py"
    spec = importlib.util.spec_from_file_location("seqrec_bench_beauty", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_s3rec(path: Path, sequences: list[list[int]]) -> Path:
    """``user item item ...`` per line, as S3-Rec's Beauty.txt."""
    path.write_text("".join(f"{u + 1} {' '.join(map(str, s))}\n" for u, s in enumerate(sequences)))
    return path


def ring(users: int) -> list[list[int]]:
    """Users walking a ring of items from different starts: the next item is learnable."""
    return [[1 + (u + t) % N_ITEMS for t in range(5 + u % 5)] for u in range(users)]


def test_split_never_shows_a_planted_target_before_its_turn(
    beauty: ModuleType, tmp_path: Path
) -> None:
    # Item 99 is only ever a user's last item (the test target), item 98 only the one before
    # (the validation target): 99 may reach no training or validation input, 98 no training.
    sequences = [s + [98, 99] for s in ring(12)]
    assert beauty.read_sequences(write_s3rec(tmp_path / "planted.txt", sequences)) == sequences
    split = beauty.leave_one_out(sequences)
    assert split.train == [s[:-2] for s in sequences]
    assert split.valid.histories == [s[:-2] for s in sequences]
    assert split.valid.targets == [98] * 12
    (test,) = split.tests.values()
    assert test.histories == [s[:-1] for s in sequences]  # the validation item is history here
    assert test.targets == [99] * 12
    # What the models are actually fed: every training and validation batch.
    trained = set()
    for batch in TrainBatches(split.train, batch_size=4, width=51, seed=0):
        trained |= set(batch["item_idx"].ravel().tolist())
    validated = set()
    for batch in split.valid:
        validated |= set(batch["item_idx"].ravel().tolist()) | set(batch["seen"].ravel().tolist())
    assert not {98, 99} & trained
    assert 99 not in validated


def test_cold_items_never_reach_training(beauty: ModuleType) -> None:
    sequences = [[1, 2, 3, 4], [5, 3, 2, 1], [2, 4, 5, 3], [4, 1, 5, 2]]
    cold = torch.zeros(6, dtype=torch.bool).numpy()
    cold[3] = True
    split = beauty.leave_one_out(sequences, cold)
    assert split.train == [[1, 2], [5], [2, 4], [4, 1]]
    assert split.valid.targets == [2, 5, 5]  # the row whose validation target is cold is dropped
    assert split.tests["cold_"].targets == [3]
    assert split.tests[""].targets == [4, 1, 3, 2]


def test_one_seed_gives_one_result_and_seeds_give_mean_and_std(
    beauty: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_s3rec(tmp_path / "ring.txt", ring(40))
    argv = [
        "--data",
        str(data),
        "--models",
        "sasrec,sasrec-nomask,markov",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--seeds",
        "2",
        "--set",
        "hidden_size=16",
        "--set",
        "max_len=8",
    ]
    first = beauty.main(argv)
    printed = capsys.readouterr().out.strip().splitlines()
    torch.manual_seed(12345)  # whatever the global generators hold before, the same figures
    second = beauty.main(argv)

    def figures(results: dict) -> dict:
        return {
            name: [
                {k: v for k, v in run.items() if k not in beauty.RUN_FIELDS}
                for run in m.get("per_seed", [m])
            ]
            for name, m in results.items()
        }

    assert figures(first) == figures(second)
    sasrec = first["sasrec"]
    assert sasrec["seeds"] == [0, 1]
    runs = sasrec["per_seed"]
    assert runs[0]["ndcg@10"] != runs[1]["ndcg@10"]  # the seed matters
    for key in ("ndcg@10", "recall@10", "mrr", "valid_ndcg@10"):
        assert sasrec[key] == statistics.fmean(r[key] for r in runs)
        assert sasrec[f"{key}_std"] == statistics.stdev(r[key] for r in runs)
    # -nomask tests the same weights (same validation and epochs) without removing the
    # history; on the ring the target is never in the history, so ranks can only get worse.
    nomask = first["sasrec-nomask"]
    for masked, unmasked in zip(runs, nomask["per_seed"], strict=True):
        assert unmasked["valid_ndcg@10"] == masked["valid_ndcg@10"]
        assert unmasked["best_epoch"] == masked["best_epoch"]
        assert unmasked["mrr"] <= masked["mrr"]
    # Baselines are deterministic: one run, no spread.
    assert first["markov"]["seeds"] == []
    assert not any(key.endswith("_std") for key in first["markov"])
    # The last line is strict JSON (no NaN), and the table shows mean±std.
    assert json.loads(printed[-1], parse_constant=pytest.fail) == first
    row = next(line for line in printed if line.startswith("sasrec "))
    assert f"{sasrec['ndcg@10']:.4f}±{sasrec['ndcg@10_std']:.4f}" in row
