"""A missing checkpoint says where it should be and which command creates it."""

import pytest
from kedro.io import DatasetError
from kedro.io.core import Version

from eurus_prime.datasets import HFCheckpointDataset


def _policy_in(tmp_path, iteration: int) -> HFCheckpointDataset:
    return HFCheckpointDataset(
        filepath=str(tmp_path / "06_models/policy/iter_0000"),  # versioned, nothing saved
        version=Version(None, None),
        initial=str(tmp_path / "06_models/sft_model"),  # missing too
        iteration=iteration,
    )


def test_missing_sft_model_at_iteration_0_names_its_path_and_the_bootstrap(tmp_path):
    with pytest.raises(DatasetError) as err:
        _policy_in(tmp_path, 0).load()
    message = str(err.value)
    assert message.startswith(f"no checkpoint at {tmp_path / '06_models/sft_model'}; ")
    assert "run `eurus-prime train` (bootstraps the SFT model first, then trains)" in message
    assert "or `kedro run --pipelines=bootstrap`" in message


def test_missing_policy_at_a_later_iteration_names_the_iteration_that_writes_it(tmp_path):
    with pytest.raises(DatasetError) as err:
        _policy_in(tmp_path, 2).load()
    assert str(err.value) == (
        f"no checkpoint at {tmp_path / '06_models/policy/iter_0000'} for iteration 2; iteration 1 "
        f"writes it: run `kedro run --pipelines=prime_iteration --params=iteration=1` (or `eurus-prime train`). "
        "With train.save_every > 1 only every save_every-th iteration writes its checkpoints: "
        "`eurus-prime train` replays the iterations after the last saved one"
    )


def test_missing_versioned_sft_model_names_its_folder_not_kedros_version_lookup(tmp_path):
    sft = HFCheckpointDataset(filepath=str(tmp_path / "06_models/sft_model"), version=Version(None, None))
    with pytest.raises(DatasetError) as err:
        sft.load()
    message = str(err.value)
    assert message.startswith(f"no checkpoint at {tmp_path / '06_models/sft_model'} (no saved version); ")
    assert "`eurus-prime train`" in message and "`kedro run --pipelines=bootstrap`" in message
