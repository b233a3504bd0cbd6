import pandas as pd
import pytest
from kedro.io import DatasetError

from eurus_prime.datasets import PromptSourceDataset
from tests.tasks.test_contract import good_rows


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".json"])
def test_prompt_source_reads_local_files_and_names_them(tmp_path, suffix):
    frame = pd.DataFrame(good_rows())
    path = tmp_path / f"prompts{suffix}"
    {
        ".parquet": lambda: frame.to_parquet(path),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        ".json": lambda: frame.to_json(path, orient="records"),
    }[suffix]()
    loaded = PromptSourceDataset(filepath=str(path), hub_id="PRIME-RL/Eurus-2-RL-Data").load()
    assert len(loaded) == 3 and loaded.attrs["source"] == str(path)
    assert loaded["prompt"][0][1]["content"] == "1+1?"


def test_prompt_source_rejects_unknown_file_type(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("a,b\n")
    with pytest.raises(DatasetError, match=r"prompts.csv: unsupported prompt file type '.csv'"):
        PromptSourceDataset(filepath=str(path)).load()


def test_prompt_source_without_file_or_hub_says_so(tmp_path):
    with pytest.raises(DatasetError, match="does not exist and no hub_id"):
        PromptSourceDataset(filepath=str(tmp_path / "missing.parquet")).load()
    with pytest.raises(DatasetError, match="needs a filepath or a hub_id"):
        PromptSourceDataset()
    with pytest.raises(DatasetError, match="read-only"):
        PromptSourceDataset(filepath="x.parquet").save(pd.DataFrame())


def test_atomic_file_dataset_round_trips_text_and_bytes_and_refuses_the_wrong_kind(tmp_path):
    from kedro.io.core import DatasetError, Version

    from eurus_prime.datasets import AtomicFileDataset

    md = AtomicFileDataset(str(tmp_path / "report.md"), version=Version(None, "v1"))
    md.save("# hello\n")
    assert AtomicFileDataset(str(tmp_path / "report.md"), version=Version(None, None)).load() == "# hello\n"
    assert (tmp_path / "report.md" / "v1" / "report.md").exists()
    png = AtomicFileDataset(str(tmp_path / "chart.png"))
    png.save(b"\x89PNG\r\n")
    assert png.load() == b"\x89PNG\r\n" and png.exists()
    with pytest.raises(DatasetError, match="expected bytes content, got str"):
        png.save("text")
    assert not list(tmp_path.rglob(".*tmp-*"))  # no temporary file left behind


def test_hub_id_is_the_fallback_when_there_is_no_local_copy(tmp_path):
    """``hub_id`` (not ``filepath``: Kedro makes a relative filepath absolute) is loaded when the
    versioned local folder has no version yet; a local version wins once there is one."""
    from kedro.io.core import Version

    from eurus_prime.datasets.checkpoint import HFCheckpointDataset

    ds = HFCheckpointDataset(str(tmp_path / "sft_model"), version=Version(None, None), hub_id="PRIME-RL/Eurus-2-7B-SFT")
    assert ds._source() == "PRIME-RL/Eurus-2-7B-SFT" and ds._version_label() == "PRIME-RL/Eurus-2-7B-SFT"
    (tmp_path / "sft_model" / "2026-01-01T00.00.00.000Z" / "sft_model").mkdir(parents=True)
    ds = HFCheckpointDataset(str(tmp_path / "sft_model"), version=Version(None, None), hub_id="PRIME-RL/Eurus-2-7B-SFT")
    assert ds._source().endswith("2026-01-01T00.00.00.000Z/sft_model")
    policy = HFCheckpointDataset(
        str(tmp_path / "policy/iter_0000"),
        version=Version(None, None),
        initial=str(tmp_path / "none"),
        iteration=0,
        hub_id="PRIME-RL/Eurus-2-7B-SFT",
    )
    assert policy._fallback()._source() == "PRIME-RL/Eurus-2-7B-SFT"
    with pytest.raises(Exception, match="is not a Hugging Face hub id"):
        HFCheckpointDataset(str(tmp_path / "x"), hub_id="not a hub id")
