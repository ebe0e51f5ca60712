#!/usr/bin/env python3
# An HTTPS proxy in front of Pebble that answers the first N newOrder requests with
# 429 rateLimited + Retry-After (Pebble 2.4 has no rate limits), forwarding everything else.
# With STATUS 500 they get a serverInternal problem without Retry-After instead (a CA in trouble).
#   ratelimit_proxy.py LISTEN_PORT PEBBLE_BASE CERT KEY CAFILE N RETRY_AFTER [STATUS]
import http.server, ssl, sys, threading, urllib.request, urllib.error

port, upstream, cert, key, cafile, n, retry = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7]
status = int(sys.argv[8]) if len(sys.argv) > 8 else 429
mine = 'https://127.0.0.1:%s' % port
ctx = ssl.create_default_context(cafile=cafile)
left = [n]
lock = threading.Lock()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a):
        pass
    def relay(self, method):
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0)) if method == 'POST' else None
        if method == 'POST' and self.path.endswith('/order-plz'):
            with lock:
                limited = left[0] > 0
                left[0] -= 1 if limited else 0
            if limited:
                # the nonce in the request is spent; hand out a fresh one as a real CA does
                nonce = urllib.request.urlopen(urllib.request.Request(upstream + '/nonce-plz', method='HEAD'), context=ctx).headers['Replay-Nonce']
                if status == 429:
                    out = b'{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders","status":429}'
                else:
                    out = b'{"type":"urn:ietf:params:acme:error:serverInternal","detail":"the CA is having trouble","status":500}'
                self.send_response(status)
                self.send_header('Content-Type', 'application/problem+json')
                if status == 429:
                    self.send_header('Retry-After', retry)
                self.send_header('Replay-Nonce', nonce)
                self.send_header('Content-Length', str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                return
        req = urllib.request.Request(upstream + self.path, data=body, method=method)
        # Pebble checks the JWS "url" against the Host it was asked for: keep ours
        req.add_header('Host', '127.0.0.1:%s' % port)
        for h in ('Content-Type', 'Accept'):
            if self.headers.get(h):
                req.add_header(h, self.headers[h])
        try:
            r = urllib.request.urlopen(req, context=ctx)
        except urllib.error.HTTPError as e:
            r = e
        out = r.read().replace(upstream.encode(), mine.encode())
        self.send_response(r.status if hasattr(r, 'status') else r.code)
        for h, v in r.headers.items():
            if h.lower() in ('content-length', 'connection', 'transfer-encoding', 'date', 'server'):
                continue
            self.send_header(h, v.replace(upstream, mine))
        self.send_header('Content-Length', str(len(out)))
        self.end_headers()
        if method != 'HEAD':
            self.wfile.write(out)
    def do_GET(self): self.relay('GET')
    def do_POST(self): self.relay('POST')
    def do_HEAD(self): self.relay('HEAD')

srv = http.server.ThreadingHTTPServer(('127.0.0.1', int(port)), H)
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
sctx.load_cert_chain(cert, key)
srv.socket = sctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
