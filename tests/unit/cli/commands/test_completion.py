from __future__ import annotations

import pytest

from tests.unit.cli.conftest import invoke


@pytest.mark.parametrize("shell,marker", [
    ("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files --command hearthnet"),
])
def test_completion_prints_script(runner, shell, marker):
    result = invoke(runner, "completion", shell)
    assert result.exit_code == 0, result.output
    assert "_HEARTHNET_COMPLETE" in result.stdout
    assert marker in result.stdout


def test_completion_unknown_shell_is_usage_error(runner):
    assert invoke(runner, "completion", "tcsh").exit_code == 2


def test_completion_protocol_lists_commands(runner, monkeypatch):
    """The script's callback: the env var makes `hearthnet` answer with candidates."""
    from hearthnet.cli import main

    monkeypatch.setenv("_HEARTHNET_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "hearthnet st")
    monkeypatch.setenv("COMP_CWORD", "1")
    result = runner.invoke(main, [], prog_name="hearthnet", complete_var="_HEARTHNET_COMPLETE")
    assert "plain,status" in result.stdout


def test_completion_of_doctor_check_names(runner, monkeypatch):
    from hearthnet.cli import main

    monkeypatch.setenv("_HEARTHNET_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "hearthnet doctor --check keys_")
    monkeypatch.setenv("COMP_CWORD", "3")
    result = runner.invoke(main, [], prog_name="hearthnet", complete_var="_HEARTHNET_COMPLETE")
    assert "plain,keys_present" in result.stdout and "plain,keys_loadable" in result.stdout
