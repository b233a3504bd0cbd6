"""The Mermaid picture of prime_iteration and the README block it keeps current."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from kedro.pipeline import node, pipeline

from eurus_prime.cli import main as cli
from eurus_prime.pipeline_registry import register_pipelines
from eurus_prime.reports.diagram import markers, mermaid, readme_block
from tests import ROOT


def _identity(*args):
    return args[0] if len(args) == 1 else args


def _ids(side: str) -> list[str]:
    """The ids of ``d_a[("a")] & d_b``: each shape dropped."""
    return [re.match(r"\w+", part.strip()).group() for part in side.split(" & ")]


def _edges(text: str) -> set[tuple[str, str]]:
    """Every (source id, target id) of the flowchart's ``a & b --> c`` lines."""
    edges = set()
    for line in text.splitlines():
        if " --> " in line:
            left, right = line.split(" --> ")
            edges |= {(a, b) for a in _ids(left) for b in _ids(right)}
    return edges


def test_prime_iteration_shows_every_node_and_dataset_edge():
    registered = register_pipelines()["prime_iteration"]
    text = mermaid(registered)
    assert text.startswith("flowchart TD\n")
    edges = _edges(text)
    expected = set()
    for n in registered.nodes:
        assert f'n_{n.name}("{n.name}")' in text
        expected |= {(f"d_{name}", f"n_{n.name}") for name in n.inputs if not name.startswith("params:")}
        expected |= {(f"n_{n.name}", f"d_{name}") for name in n.outputs if not name.endswith("_metrics")}
    assert edges == expected
    for name in registered.datasets():
        if not name.startswith("params:") and not name.endswith("_metrics"):
            assert text.count(f'd_{name}[("{name}")]') == 1  # its shape, once
    assert "params:" not in text and "_metrics" not in text
    assert mermaid(register_pipelines()["prime_iteration"]) == text  # deterministic


@pytest.mark.filterwarnings("ignore:One or more dataset names contain")
def test_ids_are_sanitised_and_never_clash():
    tiny = pipeline(
        [
            node(_identity, ["in.table", "params:x"], "end", name="end"),
            node(_identity, "end", "out-table", name="ns.second"),
            node(_identity, "params:x", None, name="alone"),
        ]
    )
    text = mermaid(tiny)
    assert 'd_in_table[("in.table")]' in text and 'n_ns_second("ns.second")' in text
    assert _edges(text) == {
        ("d_in_table", "n_end"),
        ("n_end", "d_end"),
        ("d_end", "n_ns_second"),
        ("n_ns_second", "d_out_table"),
    }
    assert '    n_alone("alone")' in text.splitlines()
    assert mermaid(tiny, direction="LR").startswith("flowchart LR\n")


def main(args: list[str]):
    """``eurus-prime diagram ARGS``: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli, ["diagram", *args])
    return result.exit_code, result.stdout, result.stderr


def _readme(tmp_path: Path, block: str) -> Path:
    path = tmp_path / "README.md"
    path.write_text(f"# Title\n\nBefore.\n\n{block}\n\nAfter.\n")
    return path


def test_check_fails_on_a_stale_block_and_passes_after_write(tmp_path):
    begin, end = markers("prime_iteration")
    stale = readme_block().replace("n_update_policy --> d_policy_out", "n_update_policy --> d_nowhere")
    path = _readme(tmp_path, stale)
    code, _, err = main(["--check", str(path)])
    assert code == 1 and "out of date" in err
    assert main(["--write", str(path)])[0] == 0
    assert main(["--check", str(path)])[0] == 0
    text = path.read_text()
    assert text == f"# Title\n\nBefore.\n\n{readme_block()}\n\nAfter.\n"
    assert text.count(begin) == 1 and text.count(end) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # written atomically, no leftovers


def test_missing_markers_are_named(tmp_path):
    path = _readme(tmp_path, "no diagram here")
    code, _, err = main(["--check", str(path)])
    assert code == 1 and markers("prime_iteration")[0] in err
    assert main(["--write", str(path)])[0] == 1
    assert "no diagram here" in path.read_text()


def test_readme_diagram_is_current():
    assert main(["--check", str(ROOT / "README.md")])[0] == 0, (
        "README.md's prime_iteration diagram is missing or stale: run `eurus-prime diagram --write README.md`"
    )
