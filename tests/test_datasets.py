import pandas as pd
import pytest
from kedro.io import DatasetError

from eurus_prime.datasets import PromptSourceDataset

from .test_contract import good_rows


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".json"])
def test_prompt_source_reads_local_files_and_names_them(tmp_path, suffix):
    frame = pd.DataFrame(good_rows())
    path = tmp_path / f"prompts{suffix}"
    {".parquet": lambda: frame.to_parquet(path),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     ".json": lambda: frame.to_json(path, orient="records")}[suffix]()
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
