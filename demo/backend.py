#!/usr/bin/env python3
"""Demo tracking backend: an open pixel and a click redirect, as the email platform's plain-HTTP backend would."""
import base64
import http.server
import json
import sys

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        fwd = {k: v for k, v in self.headers.items() if k.lower().startswith("x-forwarded")}
        sys.stderr.write("event=request path=%s forwarded=%s\n" % (self.path, json.dumps(fwd)))

    def do_GET(self):
        if self.path.startswith("/o/"):
            self.send_response(200)
            self.send_header("Content-Type", "image/gif")
            self.send_header("Content-Length", str(len(PIXEL)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(PIXEL)
        elif self.path.startswith("/c/"):
            target = "https://landing.example/" + self.path[3:]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
