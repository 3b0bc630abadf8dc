"""SSRF plumbing for HTTP tools: the request goes to the checked address; redirects keep no credentials."""

from __future__ import annotations

import pytest

from gateway.config import HttpToolConfig
from gateway.guardrails.addresses import AddressRefused
from gateway.sources.http import pinned, redirected

pytestmark = pytest.mark.anyio


def config(**changes: object) -> HttpToolConfig:
    return HttpToolConfig.model_validate({"name": "web.get", "url": "http://localhost:8080/", **changes})


async def test_a_named_host_is_connected_by_its_checked_address_with_the_name_kept() -> None:
    request = {"method": "GET", "url": "http://localhost:8080/x?y=1", "params": {}, "headers": {"a": "b"}}
    sent = await pinned(request, config(public_only=True, allow_networks=["127.0.0.0/8", "::1/128"]))
    assert sent["url"] in ("http://127.0.0.1:8080/x?y=1", "http://[::1]:8080/x?y=1")
    assert sent["headers"] == {"a": "b", "host": "localhost:8080"}
    https = {**request, "url": "https://localhost/x"}
    sent = await pinned(https, config(public_only=True, allow_networks=["127.0.0.0/8", "::1/128"]))
    assert sent["extensions"] == {"sni_hostname": "localhost"} and sent["headers"]["host"] == "localhost"


async def test_an_internal_host_is_refused_before_any_connection() -> None:
    request = {"method": "GET", "url": "http://localhost:8080/", "params": {}, "headers": {}}
    with pytest.raises(AddressRefused) as refused:
        await pinned(request, config(public_only=True))
    assert refused.value.rule == "urls.internal_address"


def test_redirects_change_the_method_as_browsers_do_and_drop_credentials_across_origins() -> None:
    post = {
        "method": "POST",
        "url": "https://api.example/a",
        "params": {},
        "headers": {"authorization": "x"},
        "json": {"k": 1},
    }
    same = redirected(post, 307, "https://api.example/b")
    assert same["method"] == "POST" and same["json"] == {"k": 1} and same["headers"] == {"authorization": "x"}
    other = redirected(post, 302, "https://elsewhere.example/b")
    assert other["method"] == "GET" and "json" not in other and other["headers"] == {}
    assert redirected(post, 303, "https://api.example/c")["method"] == "GET"
