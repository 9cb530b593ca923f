"""GET /v1/whoami: the cheapest authenticated call (no data read), which the provider's
/readyz uses to prove its token is settlement's provider token."""

from __future__ import annotations

from typing import Any


async def test_whoami_names_the_role_of_each_token(api: Any) -> None:
    provider = await api.client.get("/v1/whoami", headers=api.provider_auth)
    admin = await api.client.get("/v1/whoami", headers=api.admin_auth)
    assert (provider.status_code, provider.json()) == (200, {"role": "provider"})
    assert (admin.status_code, admin.json()) == (200, {"role": "admin"})


async def test_whoami_refuses_a_missing_or_wrong_token(api: Any) -> None:
    missing = await api.client.get("/v1/whoami")
    wrong = await api.client.get("/v1/whoami", headers={"Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "UNAUTHORIZED"
