from __future__ import annotations

import re
import sys

from tests.unit.cli.conftest import invoke, json_result


def test_version_one_line(runner):
    result = invoke(runner, "version")
    assert result.exit_code == 0
    line = result.stdout
    assert line.count("\n") == 1
    v = sys.version_info
    assert re.fullmatch(
        rf"hearthnet 0\.1\.0 \(contract 1\.0\) Python {v.major}\.{v.minor}\.{v.micro} \S+-\S+\n", line
    ), line


def test_version_json_keys(runner):
    result = invoke(runner, "version", "--json")
    assert result.exit_code == 0
    doc = json_result(result.stdout)
    assert set(doc) == {"version", "contract_version", "python", "platform"}
    assert doc["version"] == "0.1.0" and doc["contract_version"] == "1.0"


def test_version_needs_no_config(runner, env):
    env.config_file.parent.mkdir(parents=True)
    env.config_file.write_text("this is [ not toml")
    assert invoke(runner, "version").exit_code == 0
