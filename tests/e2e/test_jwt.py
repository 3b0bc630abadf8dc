"""JWT identity over HTTP: HS256 with a secret, RS256 from a JWKS file; every way a token can be wrong."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support import make_deployment

pytestmark = pytest.mark.e2e  # tokens travel in HTTP headers: a real server only
SECRET = "test-secret-that-is-long-enough-for-hs256"
ISSUER = "https://idp.acme.example"
AUDIENCE = "portcullis-test"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(key: Any = SECRET, algorithm: str = "HS256", kid: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "frank", "exp": now + 300, "nbf": now - 5, **claims}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


@pytest.fixture(scope="module")
def jwt_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jwt") / "deployment"
    root.mkdir(parents=True)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    (root / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "key-1", "alg": "RS256", "use": "sig"}]}))
    return make_deployment(
        root,
        changes={
            "identity": {
                "jwt": {
                    "issuer": ISSUER,
                    "audience": AUDIENCE,
                    "algorithms": ["RS256"],
                    "jwks_file": "jwks.json",
                    "roles_claim": "groups",
                }
            }
        },
    )


@pytest.fixture(scope="module")
def hs_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_deployment(
        tmp_path_factory.mktemp("jwt-hs") / "deployment",
        changes={
            "identity": {"jwt": {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["HS256"], "secret": SECRET}}
        },
    )


def status(url: str, bearer: str) -> int:
    """The HTTP status of a bare request: 401 when authentication fails, another code past it."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {bearer}"}
    return httpx.post(url, json=request, headers=headers, timeout=10).status_code


async def tools_for(url: str, bearer: str) -> set[str]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=30) as session,
        Client(streamable_http_client(url, http_client=session), mode="legacy") as client,
    ):
        return {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.anyio
async def test_a_valid_rs256_token_from_the_jwks_maps_subject_roles_and_tenant(
    jwt_config: Path, serve_http: Callable[[Path], str]
) -> None:
    url = serve_http(jwt_config)
    bearer = token(RSA_KEY, "RS256", kid="key-1", groups=["finance"], tenant="acme-eu")
    assert await tools_for(url, bearer) >= {"crm.find_customer", "payments.refund"}
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=30) as session,
        Client(streamable_http_client(url, http_client=session), mode="legacy") as client,
    ):
        result = await client.call_tool("crm.get_customer", {"customer_id": "C001", "subject": "erin"})
    assert result.is_error  # identity claimed in arguments is not identity: here it is just a schema error
    db = sqlite3.connect(jwt_config.parent / "audit" / "audit.db")
    (body,) = db.execute("SELECT body FROM audit_log WHERE event = 'tool.call' ORDER BY seq DESC LIMIT 1").fetchone()
    db.close()
    record = json.loads(body)
    assert (record["subject"], record["auth"], record["tenant"]) == ("frank", "jwt", "acme-eu")
    assert "role:finance" in record["roles"]


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("expired", lambda: token(RSA_KEY, "RS256", kid="key-1", exp=int(time.time()) - 120)),
        ("not yet valid", lambda: token(RSA_KEY, "RS256", kid="key-1", nbf=int(time.time()) + 600)),
        ("wrong audience", lambda: token(RSA_KEY, "RS256", kid="key-1", aud="another-service")),
        ("wrong issuer", lambda: token(RSA_KEY, "RS256", kid="key-1", iss="https://evil.example")),
        ("wrong signature", lambda: token(OTHER_KEY, "RS256", kid="key-1")),
        ("unknown key", lambda: token(OTHER_KEY, "RS256", kid="key-2")),
        ("algorithm not allowed", lambda: token(SECRET, "HS256", kid="key-1")),
        ("no subject", lambda: token(RSA_KEY, "RS256", kid="key-1", sub="")),
    ],
)
def test_a_bad_token_gets_401(jwt_config: Path, serve_http: Callable[[Path], str], case: str, make: Any) -> None:
    url = serve_http(jwt_config)
    assert status(url, make()) == 401, case
    assert status(url, token(RSA_KEY, "RS256", kid="key-1")) != 401  # past authentication


def test_hs256_tokens_and_api_keys_work_side_by_side(hs_config: Path, serve_http: Callable[[Path], str]) -> None:
    url = serve_http(hs_config)
    assert status(url, token(SECRET, "HS256", roles=["support"])) != 401
    forged = token("another-secret-that-is-long-enough", "HS256")
    assert status(url, forged) == 401
    assert status(url, "demo-alice") != 401
    assert status(url, "not-a-key") == 401
    assert httpx.post(url, json={}, timeout=5).status_code == 401  # no credentials at all
    time.sleep(0.5)  # the failure is recorded off the request's path
    db = sqlite3.connect(hs_config.parent / "audit" / "audit.db")
    rows = db.execute("SELECT body FROM audit_log WHERE event = 'auth.failed'").fetchall()
    db.close()
    failures = [json.loads(body) for (body,) in rows]
    assert {(f["auth"], f["outcome"]) for f in failures} >= {
        ("jwt", "unauthenticated"),
        ("api_key", "unauthenticated"),
        ("none", "unauthenticated"),
    }
    assert all(forged not in body and "not-a-key" not in body for (body,) in rows)


@pytest.mark.anyio
async def test_roles_from_a_token_decide_what_its_subject_sees(
    hs_config: Path, serve_http: Callable[[Path], str]
) -> None:
    url = serve_http(hs_config)
    support = await tools_for(url, token(SECRET, "HS256", roles=["support"]))
    nobody = await tools_for(url, token(SECRET, "HS256"))
    assert "email.send" in support and "payments.refund" not in support
    assert nobody == set()


def test_es256_tokens_are_checked_against_a_pem_public_key(tmp_path: Path, serve_http: Callable[[Path], str]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    root = tmp_path / "deployment"
    root.mkdir()
    (root / "idp.pem").write_bytes(pem)
    config = make_deployment(
        root,
        changes={
            "identity": {
                "jwt": {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["ES256"], "public_key_file": "idp.pem"}
            }
        },
    )
    url = serve_http(config)
    assert status(url, token(key, "ES256")) != 401
    assert status(url, token(ec.generate_private_key(ec.SECP256R1()), "ES256")) == 401
    assert status(url, token(key, "ES256", aud="someone-else")) == 401
