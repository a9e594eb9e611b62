"""A stand-in for the part of Misskey's HTTP API that fedilab's setup uses,
backed by the same PostgreSQL table ("user") Misskey keeps its users in.

  GET  /healthz                     200
  POST /api/admin/accounts/create   {username, password, setupPassword}:
                                    creates the local user (refused once a
                                    user exists, or with a wrong password)
  POST /api/i                       {i}: the user whose native token is i

Usage: misskey.py PORT SETUP_PASSWORD (PG* variables name the database).
Every create call is appended to $STANDIN_LOG.
"""
import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def sql(query, *args):
    cmd = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
    for i, a in enumerate(args):
        cmd += ["-v", f"a{i}={a}"]
    out = subprocess.run(cmd, input=query, capture_output=True, text=True, check=True)
    return out.stdout.strip()


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body, separators=(",", ":")).encode()  # as Node writes it
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, "OK")
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/admin/accounts/create":
            with open(os.environ["STANDIN_LOG"], "a") as log:
                log.write("create\n")
            if sql('SELECT count(*) FROM "user" WHERE host IS NULL;') != "0":
                return self.reply(403, {"error": "ACCESS_DENIED"})
            if body.get("setupPassword") != sys.argv[2]:
                return self.reply(403, {"error": "INCORRECT_INITIAL_PASSWORD"})
            name = body["username"]
            sql(
                """INSERT INTO "user" (id, username, "usernameLower", token)
                   VALUES (md5(:'a0'), :'a0', lower(:'a0'), substr(md5(random()::text), 1, 16));""",
                name,
            )
            return self.reply(200, {"username": name, "token": "firsttoken"})
        if self.path == "/api/i":
            name = sql(
                """SELECT username FROM "user" WHERE host IS NULL AND token = :'a0';""",
                body.get("i", ""),
            )
            if not name:
                return self.reply(401, {"error": "CREDENTIAL_REQUIRED"})
            return self.reply(200, {"id": "x", "username": name})
        self.reply(404, {"error": "not found"})

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
