"""A small authoritative-looking DNS server on loopback UDP, for tests.

It answers TXT (`_atproto.<handle>`), A and AAAA questions from a table the test fills, says
NXDOMAIN for names it does not know, and can stay silent for chosen names (to exercise the
resolver's timeout). robotwtf talks to it through its configurable resolver setting
(`ROBOTWTF_DNS_RESOLVER=127.0.0.1:<port>`), never by patching.

    with FakeDNS() as dns_server:
        dns_server.txt("_atproto.alice.example.com", "did=did:plc:...")
        resolver = robotwtf_atproto.dns_resolver(dns_server.address)
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset


class FakeDNS:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.records: dict[tuple[str, str], list] = {}
        self.silent: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.05)
        self.host, self.port = self._sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fakedns", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def txt(self, name: str, *strings: str) -> None:
        """One TXT record made of the given character-strings (several strings = one split value)."""
        self.records.setdefault((name.lower().rstrip("."), "TXT"), []).append([s.encode() for s in strings])

    def a(self, name: str, address: str) -> None:
        self.records.setdefault((name.lower().rstrip("."), "A"), []).append(address)

    def aaaa(self, name: str, address: str) -> None:
        self.records.setdefault((name.lower().rstrip("."), "AAAA"), []).append(address)

    def start(self) -> "FakeDNS":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def __enter__(self) -> "FakeDNS":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self._answer(wire)
            if reply is not None:
                self._sock.sendto(reply, peer)

    def _answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        values = self.records.get((name, rdtype), [])
        if values:
            rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, question.rdtype)
            for value in values:
                if rdtype == "TXT":
                    rrset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, value), 60)
                else:
                    rrset.add(dns.rdata.from_text(dns.rdataclass.IN, question.rdtype, value), 60)
            response.answer.append(rrset)
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

