"""Shared pytest fixtures for the robotwtf_atproto tests: a fake PDS/AS/PLC and a fake DNS
server on loopback, and the client objects robotwtf would build from its configuration.

Test modules import the fixtures they use by name (`from atproto_fixtures import net`)."""

from __future__ import annotations

import dataclasses

import pytest
from joserfc.jwk import ECKey

import robotwtf_atproto as atp
from fakedns import FakeDNS
from fakepds import FakePDS

LOCAL_PUBLIC_URL = "http://127.0.0.1:8080"
HTTPS_PUBLIC_URL = "https://wiki.example.org"


@dataclasses.dataclass
class Net:
    """One fake network: a PDS (also the AS and the PLC directory) and a DNS server."""

    pds: FakePDS
    dns: FakeDNS
    fetcher: atp.Fetcher
    resolver: object

    @property
    def plc_url(self) -> str:
        return self.pds.plc_url

    def account(self, handle: str, pds: FakePDS | None = None, **kwargs) -> str:
        """Create an account on `pds` (default: the main fake) and publish its DNS TXT record."""
        did = (pds or self.pds).add_account(handle, **kwargs)
        self.dns.txt(f"_atproto.{handle}", f"did={did}")
        return did

    def start(self, text: str, client: atp.OAuthClient):
        return atp.start_login(text, client, self.fetcher, self.resolver, self.plc_url)

    def finish(self, pending: dict, params: dict, client: atp.OAuthClient) -> atp.Identity:
        return atp.finish_login(pending, params, client, self.fetcher, self.resolver, self.plc_url)

    def login(self, text: str, client: atp.OAuthClient, as_user: str) -> atp.Identity:
        authorize_url, pending = self.start(text, client)
        return self.finish(pending, self.pds.sign_in(authorize_url, as_user), client)


@pytest.fixture
def net():
    with FakeDNS() as dns_server, FakePDS() as pds:
        fetcher = atp.Fetcher(insecure_dev_network=True, deadline=5)
        yield Net(pds, dns_server, fetcher, atp.dns_resolver(dns_server.address, timeout=1))


@pytest.fixture
def local_client() -> atp.OAuthClient:
    return atp.make_client(LOCAL_PUBLIC_URL)


@pytest.fixture
def confidential_client(net) -> atp.OAuthClient:
    key = ECKey.generate_key("P-256", private=True)
    client = atp.make_client(HTTPS_PUBLIC_URL, key.as_dict(private=True), kid="test-key-1")
    public_jwk = {**key.as_dict(private=False), "kid": "test-key-1"}
    net.pds.register_client(client.client_id, public_jwk, [client.redirect_uri])
    return client


@pytest.fixture(params=["localhost", "confidential"])
def client(request, local_client) -> atp.OAuthClient:
    """Both client modes robotwtf runs in."""
    if request.param == "localhost":
        return local_client
    return request.getfixturevalue("confidential_client")
