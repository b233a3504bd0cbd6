"""Resident checkpoints: a load of the version a slot holds is served from memory, and only then."""

import pytest
import torch
from kedro.io import DatasetError
from kedro.io.core import Version

from eurus_prime.datasets import Checkpoint, HFCheckpointDataset
from eurus_prime.datasets.resident import RESIDENT, ResidentModels, fingerprint


@pytest.fixture(autouse=True)
def _empty_slots(monkeypatch):
    monkeypatch.delenv("EURUS_PRIME_RESIDENT", raising=False)
    RESIDENT.clear()
    yield
    RESIDENT.clear()


def _dataset(tmp_path, slot="policy", name="policy/iter_0001", version=None, **kw) -> HFCheckpointDataset:
    return HFCheckpointDataset(
        filepath=str(tmp_path / name), version=version or Version(None, None), resident=slot, **kw
    )


def _saved(tmp_path, tiny_model, tiny_tokenizer, **kw) -> tuple[Checkpoint, HFCheckpointDataset]:
    checkpoint = Checkpoint(model=tiny_model, tokenizer=tiny_tokenizer, version="policy/iter_0000@x")
    out = _dataset(tmp_path, **kw)
    out.save(checkpoint)
    return checkpoint, out


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_saved_object_is_served_to_the_next_load_of_that_version_with_its_label(
    tmp_path, tiny_model, tiny_tokenizer
):
    checkpoint, _ = _saved(tmp_path, tiny_model, tiny_tokenizer)
    fresh = _dataset(tmp_path)  # the next iteration's policy_in: another dataset, same folder
    served = fresh.load()
    assert served is checkpoint
    version = fresh.resolve_load_version()
    assert served.version == f"policy/iter_0001@{version}"  # relabelled: it *is* that version now
    assert RESIDENT.held() == {"policy": str(tmp_path / "policy/iter_0001" / version / "iter_0001")}


def test_a_model_trained_in_place_is_not_served_as_the_version_it_came_from(tmp_path, tiny_model, tiny_tokenizer):
    checkpoint, _ = _saved(tmp_path, tiny_model, tiny_tokenizer)
    on_disk = _weights(checkpoint.model)
    served = _dataset(tmp_path).load()
    opt = torch.optim.AdamW(served.model.parameters(), lr=1e-2)
    served.model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()  # an update stage trains the object it was handed
    again = _dataset(tmp_path).load()  # a retried stage: must get the saved weights back
    assert again is not served
    for k, v in _weights(again.model).items():
        assert torch.equal(v, on_disk[k]), k


def test_another_version_or_slot_or_head_reads_the_disk(tmp_path, tiny_model, tiny_tokenizer):
    checkpoint, out = _saved(tmp_path, tiny_model, tiny_tokenizer)
    version = out.resolve_load_version()
    assert _dataset(tmp_path, version=Version(version, None)).load() is checkpoint  # pinned to it: served
    other = _dataset(tmp_path, slot="reference").load()  # same folder, another slot: never shared
    assert other is not checkpoint
    critic = _dataset(tmp_path, head="value").load()  # same slot and folder, another head
    assert critic is not checkpoint and critic.model.__class__.__name__.endswith("ForTokenClassification")
    # the value load took the slot; the causal LM is read again, as its own new object
    assert _dataset(tmp_path).load() is not checkpoint


def test_switched_off_every_load_reads_the_disk(tmp_path, tiny_model, tiny_tokenizer, monkeypatch):
    monkeypatch.setenv("EURUS_PRIME_RESIDENT", "0")
    checkpoint, _ = _saved(tmp_path, tiny_model, tiny_tokenizer)
    first, second = _dataset(tmp_path).load(), _dataset(tmp_path).load()
    assert first is not checkpoint and second is not first
    assert RESIDENT.held() == {}


def test_a_loaded_checkpoint_is_kept_for_the_next_stage_and_handed_over_in_eval_mode(
    tmp_path, tiny_model, tiny_tokenizer
):
    _saved(tmp_path, tiny_model, tiny_tokenizer)
    RESIDENT.clear()  # a new process: the first load reads the disk
    first = _dataset(tmp_path).load()
    first.model.train()
    second = _dataset(tmp_path).load()
    assert second is first and not second.model.training


def test_an_unknown_slot_is_an_error_naming_the_valid_ones(tmp_path):
    with pytest.raises(
        DatasetError, match=r"resident 'actor' is not one of \['policy', 'prm', 'reference', 'critic'\]"
    ):
        _dataset(tmp_path, slot="actor")


def test_fingerprint_moves_with_in_place_writes_only(tiny_model):
    registry = ResidentModels()
    before = fingerprint(tiny_model)
    tiny_model.eval()
    _ = tiny_model(torch.tensor([[1, 2]]))  # a forward pass writes nothing
    assert fingerprint(tiny_model) == before
    with torch.no_grad():
        next(tiny_model.parameters()).add_(0.0)  # any in-place write counts, even of the same values
    assert fingerprint(tiny_model) != before
    moved = fingerprint(tiny_model)
    first = next(tiny_model.parameters())
    first.data = first.data.clone()  # new storage, same values (DeepSpeed's finish does this)
    assert fingerprint(tiny_model) != moved
    registry.put("policy", ("a",), Checkpoint(model=tiny_model, tokenizer=None))
    assert registry.get("policy", ("b",)) is None and registry.misses == 1
    assert registry.get("policy", ("a",)) is not None and registry.hits == 1
