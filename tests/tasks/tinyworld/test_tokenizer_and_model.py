import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eurus_prime.datasets import Checkpoint, HFCheckpointDataset
from eurus_prime.tasks.prompting import build_messages, render_prompt, system_prompt
from eurus_prime.tasks.tinyworld.tokenizer import chat_text

TEXT = "Mia has  7 coins.\n\n  She sells 5 -> [ASSESS]\n```python\ndef f(x):\n    return x * 3\n```"


def _save(tmp_path, model, tok):
    HFCheckpointDataset(filepath=str(tmp_path / "ckpt")).save(Checkpoint(model, tok))
    return tmp_path / "ckpt"


def test_round_trip_through_autotokenizer_beside_qwen2_config(tmp_path, tiny_model, tiny_tokenizer):
    folder = _save(tmp_path, tiny_model, tiny_tokenizer)
    loaded = AutoTokenizer.from_pretrained(folder)
    ids = loaded(TEXT, add_special_tokens=False)["input_ids"]
    assert loaded.decode(ids) == TEXT  # spaces, newlines and indentation survive
    assert ids == tiny_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert loaded.eos_token == "<|im_end|>" and loaded.pad_token == "<|endoftext|>"
    assert loaded.eos_token_id != loaded.pad_token_id


def test_digits_are_single_tokens(tiny_tokenizer):
    ids = tiny_tokenizer("4096", add_special_tokens=False)["input_ids"]
    assert [tiny_tokenizer.decode([i]) for i in ids] == ["4", "0", "9", "6"]


def test_chat_template_renders_qwen_style_turns(tiny_tokenizer):
    msgs = build_messages("What is 2 + 3?", "math", system_prompt("tiny"))
    rendered = render_prompt(tiny_tokenizer, msgs)
    assert rendered == chat_text(msgs)
    assert rendered.startswith("<|im_start|>system\n")
    assert rendered.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_checkpoint_round_trip_gives_identical_logits(tmp_path, tiny_model, tiny_tokenizer):
    folder = _save(tmp_path, tiny_model, tiny_tokenizer)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    assert loaded.config.model_type == "qwen2"
    x = torch.tensor([[1, 5, 7, 9]])
    tiny_model.eval()
    torch.testing.assert_close(loaded(x).logits, tiny_model(x).logits)
    ckpt = HFCheckpointDataset(filepath=str(folder)).load()
    torch.testing.assert_close(ckpt.model(x).logits, tiny_model(x).logits)


def test_versioned_checkpoint_dataset_keeps_every_version(tmp_path, tiny_model, tiny_tokenizer):
    from kedro.io import Version

    ds = HFCheckpointDataset(filepath=str(tmp_path / "m"), version=Version(None, "2026-01-01T00.00.00.000Z"))
    ds.save(Checkpoint(tiny_model, tiny_tokenizer))
    ds2 = HFCheckpointDataset(filepath=str(tmp_path / "m"), version=Version(None, "2026-01-02T00.00.00.000Z"))
    ds2.save(Checkpoint(tiny_model, tiny_tokenizer))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "2026-01-01T00.00.00.000Z",
        "2026-01-02T00.00.00.000Z",
    ]
    latest = HFCheckpointDataset(filepath=str(tmp_path / "m"), version=Version(None, None))
    assert latest.exists()
    assert latest.load().model.config.model_type == "qwen2"


def test_missing_checkpoint_says_how_to_make_it(tmp_path):
    import pytest
    from kedro.io import DatasetError

    with pytest.raises(DatasetError, match="pipelines=bootstrap"):
        HFCheckpointDataset(filepath=str(tmp_path / "nothing")).load()


def test_failed_save_leaves_no_partial_folder(tmp_path, tiny_tokenizer):
    import pytest

    class Exploding:
        def save_pretrained(self, path):
            (path / "config.json").parent.mkdir(parents=True, exist_ok=True)
            (path / "config.json").write_text("{}")
            raise OSError("disk full")

    with pytest.raises(Exception, match="disk full"):
        HFCheckpointDataset(filepath=str(tmp_path / "m")).save(Checkpoint(Exploding(), tiny_tokenizer))
    assert list(tmp_path.iterdir()) == []
