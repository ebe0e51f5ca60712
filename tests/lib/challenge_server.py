#!/usr/bin/env python3
# Stand-in for the terminator's port-80 challenge path, used by the issuer tests until
# bin/terminator serves /.well-known/acme-challenge/ from the database: answers
# GET /.well-known/acme-challenge/TOKEN with the key authorization from the challenges table.
#   challenge_server.py PORT   (connection from PG* / TRACKTLS_DB via one long-lived psql)
import os, re, subprocess, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = re.compile(r'^/\.well-known/acme-challenge/([A-Za-z0-9_-]{1,200})$')
db = os.environ.get('TRACKTLS_DB', '')
psql = subprocess.Popen(['psql', '-qAtX', '-v', 'ON_ERROR_STOP=0', '-d', db] if db else ['psql', '-qAtX'],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
lock = threading.Lock()

def lookup(token):
    with lock:
        psql.stdin.write("SELECT COALESCE((SELECT key_authorization FROM challenges WHERE token = '%s'"
                         " AND expires_at > now()), '-');\n" % token)
        psql.stdin.flush()
        line = psql.stdout.readline().strip()
    return None if line in ('-', '') else line

class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a):
        pass
    def do_GET(self):
        m = TOKEN.match(self.path)
        ka = lookup(m.group(1)) if m else None
        body = (ka or 'not found').encode()
        self.send_response(200 if ka else 404)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

Server(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
