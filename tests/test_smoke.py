from tests.conftest import bearer, login_pair


def test_login_me_refresh_roundtrip(client, user):
    """The seed's IoT flow works: login, call a protected API, refresh."""
    pair = login_pair(client)
    me = client.get("/api/v1/user/me", headers=bearer(pair["access_token"])).get_json()
    assert me["data"]["username"] == "alice"
    refreshed = client.get("/api/v1/user/refresh", headers=bearer(pair["refresh_token"]))
    assert refreshed.get_json()["code"] == 200
    assert refreshed.get_json()["data"]["refresh_token"] != pair["refresh_token"]
