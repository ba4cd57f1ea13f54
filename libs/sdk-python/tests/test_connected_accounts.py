"""connected_accounts.create / get / list / list_all / rotate / delete / set_r2_access_key /
remove_r2_access_key, and tenant isolation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from warden_sdk import ConnectedAccount, ConnectedAccountsPage, WardenApiError, WardenClient

from .conftest import Settings


def test_create_get_rotate_delete(
    client: WardenClient, cloudflare_token: Callable[[], str], unique: str, settings: Settings
) -> None:
    identifier = f"{unique}-alice"
    created = client.connected_accounts.create(
        identifier=identifier, authorization={"type": "api_token", "api_token": cloudflare_token()}
    )
    assert isinstance(created, ConnectedAccount)
    assert created.id.startswith("ca_")
    assert (created.identifier, created.connection_name, created.status) == (identifier, "cloudflare", "ACTIVE")
    assert (created.authorization_type, created.token_kind) == ("api_token", "user")
    assert created.cloudflare.user_id == settings.cloudflare["user_id"]
    assert created.cloudflare.account_ids == [settings.cloudflare["account_id"]]
    assert [(a.id, a.name) for a in created.cloudflare.accounts] == [(settings.cloudflare["account_id"], "Acme")]

    fetched = client.connected_accounts.get(created.id)
    assert (fetched.id, fetched.identifier, fetched.cloudflare.token_id) == (
        created.id,
        identifier,
        created.cloudflare.token_id,
    )

    rotated = client.connected_accounts.rotate(
        created.id, authorization={"type": "api_token", "api_token": cloudflare_token()}
    )
    assert rotated.id == created.id and rotated.status == "ACTIVE"
    assert rotated.cloudflare.token_id != created.cloudflare.token_id

    assert client.connected_accounts.delete(created.id) is None
    assert client.connected_accounts.get(created.id).status == "REVOKED"
    assert len(client.tools.list_scoped_tools(identifier)) == 0


def test_vaults_a_global_api_key(client: WardenClient, unique: str, settings: Settings) -> None:
    account = client.connected_accounts.create(
        identifier=f"{unique}-global",
        authorization={
            "type": "global_api_key",
            "email": settings.cloudflare["email"],
            "api_key": settings.cloudflare["global_api_key"],
        },
    )
    assert account.authorization_type == "global_api_key"
    assert account.cloudflare.user_id == settings.cloudflare["user_id"]
    assert settings.cloudflare["global_api_key"] not in repr(account)


def test_lists_page_by_page_and_filters(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str
) -> None:
    mine = {f"{unique}-a", f"{unique}-b", f"{unique}-c"}
    accounts = {connect(identifier).id: identifier for identifier in sorted(mine)}
    revoked = next(iter(accounts))
    client.connected_accounts.delete(revoked)

    only_b = client.connected_accounts.list(identifier=f"{unique}-b")
    assert isinstance(only_b, ConnectedAccountsPage)
    assert [a.identifier for a in only_b] == [f"{unique}-b"]
    assert only_b.connected_accounts == list(only_b) and only_b.next_page_token is None

    # The tenant is shared with other tests: their accounts may be listed too.
    first = client.connected_accounts.list(page_size=1)
    assert len(first) == 1 and first.next_page_token
    pages = list(client.connected_accounts.list_all(page_size=1).pages())
    assert all(len(page) == 1 for page in pages)
    assert pages[-1].next_page_token is None
    listed = {a.id: a.status for page in pages for a in page}
    assert {i: listed[i] for i in accounts} == {i: "REVOKED" if i == revoked else "ACTIVE" for i in accounts}

    active = {a.id for a in client.connected_accounts.list_all(status="ACTIVE", page_size=2)}
    assert set(accounts) - active == {revoked}
    assert {a.id for a in client.connected_accounts.list_all(status="REVOKED")} >= {revoked}
    only_c = client.connected_accounts.list_all(identifier=f"{unique}-c", connection_name="cloudflare")
    assert [a.id for a in only_c] == [i for i, identifier in accounts.items() if identifier == f"{unique}-c"]


def test_another_tenants_account_is_not_found(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str, settings: Settings
) -> None:
    account = connect(f"{unique}-private")
    stranger = WardenClient(settings.url, settings.other_api_key)
    with pytest.raises(WardenApiError) as caught:
        stranger.connected_accounts.get(account.id)
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    with pytest.raises(WardenApiError) as deleting:
        stranger.connected_accounts.delete(account.id)
    assert deleting.value.status == 404
    assert len(stranger.connected_accounts.list(identifier=f"{unique}-private")) == 0
    assert client.connected_accounts.get(account.id).status == "ACTIVE"


def test_sets_and_removes_an_r2_access_key(
    client: WardenClient, cloudflare_token: Callable[[], str], unique: str
) -> None:
    account = client.connected_accounts.create(
        identifier=f"{unique}-r2", authorization={"type": "api_token", "api_token": cloudflare_token()}
    )
    assert account.r2_access_key is None
    secret = "s" * 64
    keyed = client.connected_accounts.set_r2_access_key(account.id, access_key_id="k" * 32, secret_access_key=secret)
    assert keyed.r2_access_key is not None and keyed.r2_access_key.access_key_id == "k" * 32
    assert secret not in repr(keyed)
    with pytest.raises(WardenApiError) as refused:
        client.connected_accounts.set_r2_access_key(account.id, access_key_id="short", secret_access_key=secret)
    assert (refused.value.status, refused.value.field) == (400, "access_key_id")
    assert client.connected_accounts.remove_r2_access_key(account.id).r2_access_key is None
