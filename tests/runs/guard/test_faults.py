"""Fault injection's switches: the spec format, and ``EURUS_PRIME_FAULT_RANK`` (one rank of an
SPMD campaign dies, the others do not)."""

import pytest

from eurus_prime.runs.guard import faults


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(faults, "_fired", set())
    monkeypatch.setattr(faults, "current_node", "update_policy")
    monkeypatch.setenv(faults.ENV, "update_policy:raise@middle")
    monkeypatch.delenv(faults.RANK_ENV, raising=False)


def test_a_bad_spec_names_the_variable_and_the_item():
    with pytest.raises(ValueError, match=r"EURUS_PRIME_FAULT=.*'update_policy@middle' is not <node>:<kind>@<where>"):
        faults.parse("update_policy@middle")


def test_a_fault_fires_once_at_its_node_and_place(monkeypatch):
    faults.point("start")  # another place: nothing
    with pytest.raises(faults.InjectedFault, match="update_policy:raise@middle"):
        faults.point("middle")
    faults.point("middle")  # fired already


@pytest.mark.parametrize(("rank", "fires"), [("0", False), ("1", True)])
def test_the_rank_switch_fires_the_fault_on_that_rank_alone(monkeypatch, rank, fires):
    monkeypatch.setenv(faults.RANK_ENV, "1")
    monkeypatch.setenv("RANK", rank)
    if fires:
        with pytest.raises(faults.InjectedFault):
            faults.point("middle")
    else:
        faults.point("middle")
