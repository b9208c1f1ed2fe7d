"""Login networks (issue 14 item 8): IPv6 forms that embed an IPv4 address count as that
IPv4 address, in the per-network budget and as an account's known network. The throttle
tests run on fakeredis, a real Redis and a real Redis Cluster."""

from __future__ import annotations

import pytest

from authsvc.networks import login_network
from tests.conftest import PASSWORD, USERNAME

pytestmark = pytest.mark.cluster

LOGIN = "/api/v1/user/login"
WRONG = "not the password"
# 198.51.100.7 written every way an IPv6 address can carry it.
ATTACKER_FORMS = (
    "198.51.100.7",
    "::ffff:198.51.100.7",  # IPv4-mapped (a dual-stack socket)
    "64:ff9b::c633:6407",  # NAT64 / SIIT well-known prefix
    "2002:c633:6407:1::1",  # 6to4: the site's IPv4 address after 2002:
    "2001:0:c000:201::39cc:9bf8",  # Teredo (server 192.0.2.1): NOT of the client's IPv4
)


@pytest.mark.parametrize("prefix", [48, 64, 128])
@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("64:ff9b::192.0.2.7", "192.0.2.7"),
        ("64:ff9b::c000:208", "192.0.2.8"),
        ("2002:c000:207::1", "192.0.2.7"),
        ("2002:c000:207:ffff:1:2:3:4", "192.0.2.7"),
        # RFC 4380's example: server 65.54.227.120, client 192.0.2.45 behind its NAT.
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd3", "192.0.2.44"),
    ],
)
def test_each_ipv6_form_that_embeds_ipv4_is_grouped_as_that_ipv4_address(ip, network, prefix):
    """IPv4-mapped, NAT64, 6to4 and Teredo (de-obfuscated) give the IPv4 address itself,
    whatever the IPv6 prefix setting, spelled as a plain IPv4 login would be."""
    assert login_network(ip, prefix) == network


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("2001:db8:1:2::7", "2001:db8:1:2::/64"),  # inside 2001::/16, not Teredo
        ("2001:1::1", "2001:1::/64"),  # the /32 after Teredo's
        ("2003::1", "2003::/64"),  # the /16 after 6to4's
        ("64:ff9b:0:0:0:1::1", "64:ff9b::/64"),  # NAT64 /64, outside the /96
        ("64:ff9b:1::c000:207", "64:ff9b:1::/64"),  # RFC 8215 local use: operator-defined
    ],
)
def test_native_ipv6_next_to_those_prefixes_stays_grouped_per_prefix(ip, network):
    """Only the exact prefixes of the four forms are taken apart."""
    assert login_network(ip, 64) == network


def test_all_forms_of_one_ipv4_address_are_one_network():
    """The attacker's forms of 198.51.100.7 are all the same key."""
    assert {login_network(ip, 64) for ip in ATTACKER_FORMS} == {"198.51.100.7"}


def login_from(client, ip: str, username: str = USERNAME, password: str = PASSWORD):
    """POST /login from ``ip`` (REMOTE_ADDR)."""
    return client.post(
        LOGIN,
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def error_of(response) -> tuple[int, str]:
    """The status and ``data.error`` of an answer."""
    return response.status_code, response.get_json()["data"]["error"]


def test_two_ipv4_clients_behind_nat64_have_budgets_of_their_own(make_app, user):
    """Client 192.0.2.1 behind the translator exhausts its per-network budget; client
    192.0.2.2 behind the same translator (same /64) still logs in."""
    client = make_app(LOGIN_MAX_FAILURES_PER_IP="2").test_client()
    for username in ("bob", "carol"):
        failed = login_from(client, "64:ff9b::192.0.2.1", username, WRONG)
        assert error_of(failed) == (401, "invalid_credentials")
    assert error_of(login_from(client, "64:ff9b::192.0.2.1")) == (429, "too_many_attempts")
    assert login_from(client, "64:ff9b::192.0.2.2").status_code == 200


def test_one_ipv4_client_cannot_escape_its_budget_by_changing_forms(make_app, user):
    """Failures from 198.51.100.7 written as IPv4, mapped, NAT64, 6to4 and Teredo all
    count in one per-network budget: the next attempt, in any form, is throttled."""
    limit = len(ATTACKER_FORMS)
    client = make_app(LOGIN_MAX_FAILURES_PER_IP=str(limit)).test_client()
    for n, ip in enumerate(ATTACKER_FORMS):
        failed = login_from(client, ip, f"victim{n}", WRONG)
        assert error_of(failed) == (401, "invalid_credentials"), ip
    for ip in ATTACKER_FORMS:
        assert error_of(login_from(client, ip)) == (429, "too_many_attempts"), ip


def test_a_client_behind_nat64_does_not_share_the_owners_known_network(make_app, user):
    """Alice logged in through the translator as 203.0.113.5: that IPv4 address is her
    known network. A guesser behind the same translator burns only the shared budget,
    and Alice, through the translator or over plain IPv4, still logs in."""
    client = make_app(LOGIN_MAX_FAILURES_PER_ACCOUNT="2").test_client()
    assert login_from(client, "64:ff9b::203.0.113.5").status_code == 200
    for _ in range(2):
        guess = login_from(client, "64:ff9b::198.51.100.9", USERNAME, WRONG)
        assert error_of(guess) == (401, "invalid_credentials")
    guess = login_from(client, "64:ff9b::198.51.100.9", USERNAME, WRONG)
    assert error_of(guess) == (429, "too_many_attempts")

    assert login_from(client, "64:ff9b::203.0.113.5").status_code == 200
    assert login_from(client, "203.0.113.5").status_code == 200
