"""`hearthnet init` joining instead of founding: `--join`, and the interactive answer that
is an invite instead of a community name (hearthnet.node_init + onboarding.join)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hearthnet.config import load_config
from hearthnet.identity import keys
from hearthnet.node_init import InitOptions, init_node
from hearthnet.onboarding.errors import OnboardingError
from hearthnet.onboarding.invite import encode_invite
from tests.unit.onboarding.inviter_server import running_inviter
from tests.unit.onboarding.test_join import blob_for, written


class Scripted:
    def __init__(self, answers: list[str], confirm: bool = True) -> None:
        self.answers, self.confirm_answer = list(answers), confirm
        self.asked: list[str] = []
        self.confirmed: list[str] = []

    def ask(self, text: str, default: str) -> str:
        self.asked.append(text)
        return self.answers.pop(0) if self.answers else default

    def confirm(self, text: str, default: bool) -> bool:
        self.confirmed.append(text)
        return self.confirm_answer


@pytest.fixture
def alice(tmp_path: Path) -> Any:
    with running_inviter(tmp_path, keys.generate()) as inviter:
        yield inviter


def opts(**over: Any) -> InitOptions:
    base: dict[str, Any] = dict(name="porch", profile="spark", interactive=False, config_path=None)
    base.update(over)
    return InitOptions(**base)


def test_init_join_non_interactive(alice):
    kp = keys.load_or_generate(load_config().identity.keys_dir)  # made earlier by `hearthnet id`
    text = encode_invite(blob_for(alice, kp.node_id_full))
    result = init_node(opts(join=text), prompt=Scripted([]))
    assert result.changed and result.joined and result.community_id == alice.community_id
    assert (result.display_name, result.profile, result.community_name) == ("porch", "spark", "Maple Street")
    assert result.to_dict()["joined"] is True
    cfg = load_config()
    assert (cfg.node.display_name, cfg.node.profile, cfg.community.community_id) == ("porch", "spark",
                                                                                     alice.community_id)
    assert alice.log.view.level_of(kp.node_id_full) == "member"
    # init again: already initialised, nothing changes (with or without the invite)
    assert not init_node(opts(), prompt=Scripted([])).changed
    assert not init_node(opts(join=text), prompt=Scripted([])).changed


def test_interactive_init_takes_an_invite_where_the_community_name_is_asked(alice):
    kp = keys.load_or_generate(load_config().identity.keys_dir)
    text = encode_invite(blob_for(alice, kp.node_id_full, level="trusted"))
    prompt = Scripted(["Bob's Pi", "spark", text])
    result = init_node(opts(name=None, profile=None, interactive=True), prompt=prompt)
    assert result.joined and result.display_name == "Bob's Pi"
    assert "paste an invite" in prompt.asked[2]
    assert len(prompt.confirmed) == 1 and "Join community 'Maple Street'" in prompt.confirmed[0]
    assert "as          trusted" in prompt.confirmed[0]
    assert alice.log.view.level_of(kp.node_id_full) == "trusted"


def test_declining_the_join_preview_leaves_nothing(alice, tmp_path):
    kp = keys.load_or_generate(load_config().identity.keys_dir)
    text = encode_invite(blob_for(alice, kp.node_id_full))
    with pytest.raises(Exception) as err:
        init_node(opts(interactive=True), prompt=Scripted([text], confirm=False))
    assert getattr(err.value, "code", None) == "user_abort"
    assert written(tmp_path) == []


def test_init_join_on_a_device_without_a_key_explains_hearthnet_id(alice, tmp_path):
    text = encode_invite(blob_for(alice, keys.generate().node_id_full))
    with pytest.raises(OnboardingError) as err:
        init_node(opts(join=text), prompt=Scripted([]))
    assert err.value.code == "invitee_mismatch" and "hearthnet id" in err.value.details["hint"]
    assert [p for p in tmp_path.rglob("*") if p.is_file() and "inviter-" not in str(p)] == []  # no key either


def test_init_join_into_another_community_is_refused(alice):
    init_node(opts(), prompt=Scripted([]))  # founds its own
    kp = keys.load(load_config().identity.keys_dir)
    with pytest.raises(OnboardingError) as err:
        init_node(opts(join=encode_invite(blob_for(alice, kp.node_id_full))), prompt=Scripted([]))
    assert err.value.code == "other_community"
