from __future__ import annotations

import json

from hearthnet.cli.commands import init as init_cmd
from tests.unit.cli.conftest import invoke


def test_init_non_interactive_writes_config_and_keys(runner, env):
    result = invoke(runner, "init", "--non-interactive", "--name", "kitchen", "--profile", "hearth",
                    "--community-name", "Maple Street")
    assert result.exit_code == 0, result.output
    key = env.data / "hearthnet" / "keys" / "device.ed25519"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    text = env.config_file.read_text()
    assert "kitchen" in text and "community_id" in text
    again = invoke(runner, "init", "--non-interactive", "--json")
    assert again.exit_code == 0
    doc = json.loads(again.stdout)
    assert doc["changed"] is False and doc["display_name"] == "kitchen" and doc["community_name"] == "Maple Street"


def test_init_interactive_accepts_defaults(runner, env):
    result = invoke(runner, "init", "--name", "porch", input="\n\n\n")
    assert result.exit_code == 0, result.output
    assert "Create node 'porch'" in result.stderr  # the confirmation was asked, on stderr
    assert env.config_file.exists()


def test_init_answer_no_aborts_with_2(runner, env):
    result = invoke(runner, "init", "--name", "porch", "--profile", "spark", "--community-name", "X", input="n\n")
    assert result.exit_code == 2
    assert "nothing was changed" in result.stderr
    assert not env.config_file.exists()
    assert not (env.data / "hearthnet" / "keys" / "device.ed25519").exists()


def test_init_ctrl_c_aborts_with_2(runner, env, monkeypatch):
    def interrupted(self, text, default):
        raise KeyboardInterrupt

    monkeypatch.setattr(init_cmd.RichPrompter, "ask", interrupted)
    result = invoke(runner, "init")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert not env.config_file.exists()


def test_init_end_of_input_aborts_with_2(runner, env):
    result = invoke(runner, "init", input="")
    assert result.exit_code == 2


def test_init_json_with_prompts_keeps_stdout_parseable(runner, env):
    result = invoke(runner, "init", "--json", "--name", "porch", input="\n\n\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["display_name"] == "porch"


def test_init_bad_profile_is_usage_error(runner, env):
    assert invoke(runner, "init", "--non-interactive", "--profile", "wizard").exit_code == 2


def test_rich_prompter_shows_text_literally(monkeypatch):
    import builtins
    import io

    from hearthnet.cli.render import Output

    buf = io.StringIO()
    answers = iter(["", "maybe", "y"])
    monkeypatch.setattr(builtins, "input", lambda *a: next(answers))
    prompter = init_cmd.RichPrompter(Output(out=io.StringIO(), err=buf))
    assert prompter.ask("Profile [anchor/hearth]", "hearth") == "hearth"
    assert prompter.confirm("Create [b]it[/b]?", True) is True  # re-asks after "maybe"
    text = buf.getvalue()
    assert "Profile [anchor/hearth]" in text and "Create [b]it[/b]?" in text
