"""A keep-alive JSON server with N records listed by cursor, for bench/sync.py (run as
a separate process): ``GET /records?limit=100&after=<id>``; ``POST /change`` edits one
record (so the next sync has exactly one change). A second argument makes each page
take that many milliseconds, as a provider's do. Prints its port."""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
LATENCY = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0  # seconds per page
RECORDS = [{"id": str(n), "email": f"person{n}@example.com", "firstname": f"First{n}",
            "lastname": f"Last{n}", "updatedAt": "2026-01-01T00:00:00.000Z",
            "properties": {"lifecyclestage": "lead", "company": f"Company {n % 97}"}}
           for n in range(COUNT)]
VERSION = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if LATENCY:
            time.sleep(LATENCY)  # a provider's own time to answer a page
        query = parse_qs(urlsplit(self.path).query)
        limit = int(query.get("limit", ["100"])[0])
        after = query.get("after", [""])[0]
        start = int(after) + 1 if after else 0
        page = RECORDS[start:start + limit]
        body: dict = {"results": page}
        if start + limit < len(RECORDS):
            body["paging"] = {"next": {"after": page[-1]["id"]}}
        self._send(json.dumps(body, separators=(",", ":")).encode())

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        VERSION[0] += 1
        RECORDS[4242] = {**RECORDS[4242], "email": f"changed{VERSION[0]}@example.com",
                         "updatedAt": f"2026-02-01T00:00:{VERSION[0] % 60:02d}.000Z"}
        self._send(b"{}")

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_port, flush=True)
    sys.stdout.close()
    server.serve_forever()
