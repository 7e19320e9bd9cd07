"""Offline, internet-only models leave the catalogue and routing (the primary becomes the
first local model) and the descriptors are announced again; back online they return."""
from __future__ import annotations

from typing import Any

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.services.llm.backends.base import BackendModel, LlmBackend
from hearthnet.services.llm.service import LlmService


class Fake(LlmBackend):
    def __init__(self, name: str, models: list[BackendModel]) -> None:
        self.name, self._models = name, models

    @property
    def models(self) -> list[BackendModel]:
        return self._models

    def chat(self, **kw: Any) -> Any:
        raise NotImplementedError

    def complete(self, **kw: Any) -> Any:
        raise NotImplementedError


def service() -> tuple[LlmService, list[int]]:
    cloud = Fake("openai", [BackendModel("gpt-cloud", quant="api", requires_internet=True)])
    local = Fake("llama_cpp", [BackendModel("tiny-local")])
    svc = LlmService(backends=[cloud, local])
    announced: list[int] = []
    svc.announce_changes = lambda: announced.append(1)
    return svc, announced


def models(svc: LlmService) -> list[str]:
    (chat, _) = svc.capabilities()
    return [m["name"] for m in chat.params["models"]]


def test_offline_drops_internet_models_and_restores_them() -> None:
    svc, announced = service()
    assert svc._route({})[0] == "gpt-cloud" and models(svc) == ["gpt-cloud", "tiny-local"]
    svc.set_mode("degraded")
    assert announced == [] and models(svc) == ["gpt-cloud", "tiny-local"]  # degraded changes nothing
    svc.set_mode("offline")
    assert announced == [1]
    assert models(svc) == ["tiny-local"] and svc.capabilities()[0].params["model"] == "tiny-local"
    assert svc._route({})[0] == "tiny-local"  # the local model is preferred
    with pytest.raises(HearthNetError) as exc:
        svc._route({"params": {"model": "gpt-cloud"}})
    assert exc.value.code == "not_implemented"
    assert "withdrawn" in svc.health()["note"] and svc.health()["offline_withdrawn"] is True
    svc.set_mode("offline")
    assert announced == [1]  # no change, no announcement
    svc.set_mode("online")
    assert announced == [1, 1] and models(svc) == ["gpt-cloud", "tiny-local"]
    svc.set_mode("offline")
    svc.set_mode(None)  # the detector went away: the online behaviour
    assert models(svc) == ["gpt-cloud", "tiny-local"]


def test_only_internet_models_offline_means_no_descriptor() -> None:
    svc = LlmService(backends=[Fake("openai", [BackendModel("gpt-cloud", requires_internet=True)])])
    svc.set_mode("offline")
    assert svc.capabilities() == []
    assert "none offered" in svc.health()["note"]
