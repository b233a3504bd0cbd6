"""Checkpoint hand-over between iterations, iteration bookkeeping and the train command's params."""

import pytest
import torch
from kedro.io import DatasetError
from kedro.io.core import Version

from eurus_prime.datasets import Checkpoint, HFCheckpointDataset
from eurus_prime.datasets.versions import latest_version
from eurus_prime.runs import manifests
from eurus_prime.runs.layout import iter_dir, next_iter_dir
from eurus_prime.runs.loop import parse_params
from eurus_prime.runs.progress import completed_iterations


def _save(folder, model, tok, stamp, optimizer_state=None):
    HFCheckpointDataset(str(folder), version=Version(None, stamp)).save(
        Checkpoint(model, tok, optimizer_state=optimizer_state)
    )


def test_policy_in_starts_from_the_sft_model_at_iteration_0_only(tmp_path, tiny_model, tiny_tokenizer):
    sft = tmp_path / "sft_model"
    _save(sft, tiny_model, tiny_tokenizer, "2026-01-01T00.00.00.000Z")
    latest = Version(None, None)
    first = HFCheckpointDataset(str(tmp_path / "policy/iter_0000"), version=latest, initial=str(sft), iteration=0)
    assert first.exists()
    ckpt = first.load()
    assert ckpt.version.endswith("sft_model@2026-01-01T00.00.00.000Z")
    assert ckpt.optimizer_state is None
    later = HFCheckpointDataset(str(tmp_path / "policy/iter_0005"), version=latest, initial=str(sft), iteration=5)
    assert not later.exists()
    with pytest.raises(DatasetError, match="iteration 4 writes it"):
        later.load()


def test_optimizer_state_travels_with_the_checkpoint(tmp_path, tiny_model, tiny_tokenizer):
    opt = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    tiny_model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()
    _save(tmp_path / "policy/iter_0001", tiny_model, tiny_tokenizer, "2026-01-02T00.00.00.000Z", opt.state_dict())
    ckpt = HFCheckpointDataset(str(tmp_path / "policy/iter_0001"), version=Version(None, None)).load()
    assert ckpt.version == "policy/iter_0001@2026-01-02T00.00.00.000Z"
    restored = torch.optim.AdamW(ckpt.model.parameters(), lr=1e-3)
    restored.load_state_dict(ckpt.optimizer_state)
    for a, b in zip(opt.state_dict()["state"].values(), restored.state_dict()["state"].values()):
        torch.testing.assert_close(a["exp_avg"], b["exp_avg"])


def test_iteration_bookkeeping(tmp_path):
    assert iter_dir(3) == "iter_0003" and next_iter_dir("3") == "iter_0004"
    with pytest.raises(ValueError):
        iter_dir(-1)
    root = tmp_path / "data/09_manifests"
    assert completed_iterations(root) == 0
    for i in (0, 1, 3, 4):  # iteration 2 is missing: 3 does not count
        rel = f"data/08_reporting/{iter_dir(i)}/eval_report.parquet/2026-01-01T00.00.00.000Z/eval_report.parquet"
        leaf = tmp_path / rel
        leaf.parent.mkdir(parents=True)
        leaf.write_bytes(b"x")
        if i != 1:
            manifests.write(
                iter_dir(i), "evaluate_policy", {"save_version": "v1", "outputs": {"eval_report": {"path": rel}}}, root
            )
    assert completed_iterations(root) == 1  # iteration 1's table exists but it has no manifest
    manifests.write(
        iter_dir(1),
        "evaluate_policy",
        {
            "save_version": "v1",
            "outputs": {
                "eval_report": {
                    "path": "data/08_reporting/iter_0001/"
                    "eval_report.parquet/2026-01-01T00.00.00.000Z/eval_report.parquet"
                }
            },
        },
        root,
    )
    assert completed_iterations(root) == 2
    assert latest_version(tmp_path / "data/08_reporting/iter_0001/eval_report.parquet").name == "eval_report.parquet"
    assert latest_version(tmp_path / "nothing") is None


def test_parse_params_nests_dotted_keys_and_parses_values():
    assert parse_params("prime.policy_lr=3e-5,prime.filter_mode=fixed_batch,iteration=2") == {
        "prime": {"policy_lr": 3e-5, "filter_mode": "fixed_batch"},
        "iteration": 2,
    }
    assert parse_params(None) == {}
    with pytest.raises(ValueError, match="not key=value"):
        parse_params("prime.policy_lr")
