from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from hearthnet.errors import HearthNetError
from hearthnet.gateway.http import capability_headers, dumps


def test_capability_headers_default_the_version() -> None:
    req = make_mocked_request("POST", "/bus/v1/call", headers={"X-HearthNet-Capability": " llm.chat "})
    assert capability_headers(req) == ("llm.chat", "1.0")
    req = make_mocked_request("POST", "/bus/v1/call", headers={"X-HearthNet-Capability": "llm.chat",
                                                               "X-HearthNet-Capability-Version": "1.2"})
    assert capability_headers(req) == ("llm.chat", "1.2")


def test_a_call_without_capability_is_bad_request() -> None:
    with pytest.raises(HearthNetError) as err:
        capability_headers(make_mocked_request("POST", "/bus/v1/call"))
    assert err.value.code == "bad_request"


def test_dumps_is_compact_and_keeps_utf8() -> None:
    assert dumps({"name": "Café", "n": [1, 2]}) == '{"name":"Café","n":[1,2]}'
