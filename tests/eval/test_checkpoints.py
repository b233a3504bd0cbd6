"""Checkpoint names (sft, latest, iter:N, prm:latest, folders) resolve to the folders training wrote."""

import pytest

from eurus_prime.eval.checkpoints import resolve


def test_names_resolve_to_the_trained_folders(trained_project):
    p = trained_project
    assert resolve("sft", p).label == "sft"
    assert resolve("latest", p).label == "iter_0002"
    assert resolve("iter:1", p).source == str(p / "data/06_models/policy/iter_0001")
    assert resolve("policy:2", p).label == resolve("iter_2", p).label == "iter_0002"
    assert resolve("iter:0", p).label == "sft"  # the policy before any iteration is the SFT model
    assert resolve("prm:latest", p).label == "prm_iter_0002"
    folder = resolve("data/06_models/sft_model", p)
    assert folder.versioned and folder.source == str(p / "data/06_models/sft_model")
    assert resolve("PRIME-RL/Eurus-2-7B-PRIME", p).source == "PRIME-RL/Eurus-2-7B-PRIME"
    ckpt = resolve("latest", p).load()
    assert ckpt.version.startswith("policy/iter_0002@")


def test_unknown_names_say_what_exists(trained_project, tmp_path):
    with pytest.raises(ValueError, match=r"policy after 7 iteration\(s\).*iterations with a checkpoint: \[1, 2\]"):
        resolve("iter:7", trained_project)
    with pytest.raises(ValueError, match="unknown checkpoint 'nope'.*`sft`, `latest`"):
        resolve("nope", trained_project)
    with pytest.raises(ValueError, match="no saved version of the SFT model.*eurus-prime train"):
        resolve("latest", tmp_path)  # an empty project: latest falls back to sft, which does not exist
    with pytest.raises(ValueError, match="no prm checkpoint"):
        resolve("prm:latest", tmp_path)


def test_load_each_loads_a_folder_named_twice_once(trained_project):
    from eurus_prime.eval.checkpoints import load_each

    sft, latest, reference = load_each([resolve(s, trained_project) for s in ("sft", "latest", "iter:0")])
    assert reference is sft and latest is not sft
    assert sft.version.startswith("06_models/sft_model@") and latest.version.startswith("policy/iter_0002@")
