"""``parse_params`` reads ``--params`` exactly as ``kedro run --params`` does."""

import math

import click
import pytest
from kedro.framework.cli.project import run
from kedro.framework.cli.utils import _split_params

from eurus_prime.runs.loop import parse_params

SAME_AS_KEDRO = [
    "iteration=2",
    "prime.policy_lr=1e-6",
    "prime.policy_lr=3e-5,prime.filter_mode=fixed_batch,iteration=2",
    "a=1e-3",
    "a=3e-5",
    "a=-3e-5",
    "a=1E-6",
    "a=1e3",
    "a=3.0e-5",
    "a=1.",
    "a=.inf",
    "a=0x10",
    "a=1_000",
    "a=true",
    "a=True",
    "a=false",
    "a=yes",
    "a=off",
    "a=null",
    "a=",
    "a=none",
    "a=inf",  # a string to Kedro (the old YAML+float reading made it float('inf'))
    "a=nan",
    "a='3'",  # quoted: the string '3'
    "a=2024-01-01",  # a string, not a date
    "a=[1]",  # a one-item list: Kedro splits on every comma, so a list has at most one item
    "a=[x]",
    "a=[]",
    "a=b=c",  # the value is everything after the first '='
    "a=b:c",
    "a=12:30",  # YAML 1.1 base 60: 750
    "a={b: 1}",
    "a=x y",
    "a=${b}",  # interpolations are left for the config loader
    " prime.policy_lr = 1e-6 , iteration=3 ,",  # spaces around items and keys, a trailing comma
    "a.b=1,a.c=2",
    "a.b=2,a=1",  # the later item wins
    "a=1,a=2",
    "prime.deepspeed.zero_stage=2,prime.trainer_backend=deepspeed",
]


def _kedro(text: str):
    """What ``kedro run --params=<text>`` hands the session: the whole command line through click, and
    Kedro's callback called directly (they must agree too)."""
    via_cli = run.make_context("run", ["--params", text]).params["params"]
    option = next(p for p in run.params if p.name == "params")
    assert _split_params(click.Context(run), option, text) == via_cli
    return via_cli


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("text", SAME_AS_KEDRO)
def test_parse_params_is_kedro_run_params(text):
    assert _same(parse_params(text), _kedro(text)), (parse_params(text), _kedro(text))


def test_values_are_typed_and_dotted_keys_nest():
    assert parse_params("prime.policy_lr=1e-6,prime.filter_low=0.2,prime.eval_every=0,a.b=true,c=fixed_batch") == {
        "prime": {"policy_lr": 1e-6, "filter_low": 0.2, "eval_every": 0},
        "a": {"b": True},
        "c": "fixed_batch",
    }
    assert type(parse_params("a=3e-5")["a"]) is float and type(parse_params("a=2")["a"]) is int
    assert parse_params(None) == parse_params("") == {}


@pytest.mark.parametrize(
    ("text", "item", "why"),
    [
        ("iteration=2,prime.policy_lr", "prime.policy_lr", "is not key=value"),
        ("=5", "=5", "key cannot be an empty string"),
        ("a=[1,2]", "2]", "is not key=value"),  # the comma splits the list
        ("iteration=2,a=[1", "a=[1", "ParserError"),
        ("a=@x", "a=@x", "ScannerError"),
        ("a=${b", "a=${b", "GrammarParseError"),
    ],
)
def test_a_bad_item_is_named(text, item, why):
    with pytest.raises(ValueError) as err:
        parse_params(text)
    assert f"--params item {item!r}" in str(err.value) and why in str(err.value)
    with pytest.raises(Exception):  # noqa: B017 - Kedro refuses it too
        _kedro(text)
