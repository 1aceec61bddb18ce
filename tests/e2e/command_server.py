"""The e2e guests' command channel: a tiny HTTP server inside the test's network namespace.

The test guest's agent polls `GET /cmd?ip=<its address>` every second; the answer is the
file `<dir>/<address>` (a line `ID <id>` and a shell script), or nothing. Tests write that
file and read the output back from the guest's serial console through vdc's console API.

    python command_server.py --dir DIR --port 8086
"""

from __future__ import annotations

import argparse
import ipaddress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8086)
    args = parser.parse_args()
    folder: Path = args.dir

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            body = b""
            try:
                address = str(ipaddress.IPv4Address(query.get("ip", [""])[0]))
                command = folder / address
                if command.exists():
                    body = command.read_bytes()
            except ValueError:
                pass
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass  # one poll per guest per second: too chatty to log

    ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
