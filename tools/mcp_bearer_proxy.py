"""A loopback reverse proxy that adds `Authorization: Bearer <token>` to every request.

The MCP conformance suite's server mode cannot send a bearer token, and every robotwtf MCP
request needs one. tools/conformance.sh starts robotwtf with this proxy's URL as its public URL
(so Origin and resource checks see the proxy as the public front, like a TLS reverse proxy) and
points the suite at the proxy. Host, Origin and every other header pass through unchanged.

Usage: ROBOTWTF_PROXY_TOKEN=... python3 mcp_bearer_proxy.py LISTEN_PORT UPSTREAM_PORT
The token comes from the environment so it never shows in a process list.
"""

from __future__ import annotations

import http.client
import http.server
import os
import sys

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


def make_handler(upstream_port: int, token: str):
    class Forward(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP | {"authorization", "content-length"}:
                    upstream.putheader(name, value)
            upstream.putheader("Authorization", f"Bearer {token}")
            upstream.putheader("Content-Length", str(len(body or b"")))
            upstream.endheaders(body)
            response = upstream.getresponse()
            payload = response.read()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            upstream.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = forward

        def log_message(self, format: str, *args) -> None:
            pass

    return Forward


def main() -> None:
    listen_port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
    token = os.environ["ROBOTWTF_PROXY_TOKEN"]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", listen_port), make_handler(upstream_port, token))
    server.serve_forever()


if __name__ == "__main__":
    main()
