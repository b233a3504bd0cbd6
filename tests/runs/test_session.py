"""One Kedro session for a campaign (``runs/session.py``): inside ``campaign_session`` every context
and run goes through Kedro's ``KedroServiceSession``; outside it each opens a ``KedroSession``."""

from __future__ import annotations

import pytest
from kedro.framework.session import KedroSession

from eurus_prime.runs import session as session_lib
from tests.pipelines.helpers import make_project


@pytest.fixture()
def project(tmp_path):
    return make_project(tmp_path)


def test_a_campaign_session_serves_every_context_and_run_with_its_own_parameters(project, monkeypatch):
    created = []
    original = KedroSession.create.__func__

    def counting(cls, *args, **kwargs):
        created.append(kwargs.get("runtime_params"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(KedroSession, "create", classmethod(counting))
    monkeypatch.chdir(project)
    with session_lib.open_context(project, None, {"iteration": 3}) as context:
        assert context.params["iteration"] == 3
    assert len(created) == 1  # outside a campaign: a session per context
    runs = []
    with session_lib.campaign_session(project, None) as service:
        monkeypatch.setattr(service, "run", lambda **kwargs: runs.append(kwargs))
        for iteration in (4, 5):
            with session_lib.open_context(project, None, {"iteration": iteration}) as context:
                assert context.params["iteration"] == iteration  # each context has its own runtime params
        session_lib.run_in_session(project, None, "prime_iteration", {"iteration": 5}, node_names=["update_prm"])
    assert len(created) == 1  # nothing more: the campaign's session served them
    assert runs == [
        {
            "pipeline_names": ["prime_iteration"],
            "from_nodes": None,
            "node_names": ["update_prm"],
            "runtime_params": {"iteration": 5},
        }
    ]
    assert session_lib._SERVICE == {}  # closed with the block
    with session_lib.open_context(project, None) as context:
        pass
    assert len(created) == 2
