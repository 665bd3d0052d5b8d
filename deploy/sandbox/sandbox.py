#!/usr/bin/python3
"""sandbox.py: one process standing in for the outside world, so motcua runs offline.

The suite talks to external systems (SMTP relay, SMS gateway, and later the bank
gateway, the postal carrier, the national portal) through configured endpoints.
This process answers all of them on loopback: an SMTP sink on its own port, and one
HTTP server whose path prefixes are shared out among the stand-ins by the STANDINS
table below. Everything received is kept in memory, shown on GET /, listed by the
stand-ins' inspection endpoints, and, when MOTCUA_SANDBOX_DIR is set, appended to
<dir>/<stand-in>.jsonl (one JSON object a line) so that tests can read it even after
the sandbox restarts; a restarted sandbox loads those files back.

Design:
- Threads: the asyncio loop runs in the main thread (the SMTP sink and the signal
  handlers live there); the HTTP server runs in its own thread and serves each
  request on a thread of its own, so a stand-in told to be slow blocks nobody else.
  A Journal (list + lock + JSONL file) is the only state shared between them.
- A stand-in is a class in its own module in this directory, built with one
  argument, the Context, and never imports this file. It provides:
      name                  short name, also its journal file name ("smtp")
      title                 heading of its section on GET /
      handle(req)           answer an HTTP request under its prefixes (any thread);
                            returns (status, body) or (status, body, headers); a dict
                            or list body is sent as JSON, str/bytes as they are
      html()                an HTML fragment for GET / (values escaped)
      async start(), stop() optional: open and close listeners of its own
      describe()            optional: dict of key=values for the "ready" log line
  A request (Request below) has method, path, query, headers, body and json().
- Shutdown: SIGTERM or SIGINT stops the listeners, ends SMTP sessions with 421 and
  exits 0.

Run with Debian's /usr/bin/python3 (3.11, standard library only).
"""

import argparse
import asyncio
import html
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import agency_systems  # noqa: E402
import bank_gateway  # noqa: E402
import carrier  # noqa: E402
import chat_webhook  # noqa: E402
import national_portal  # noqa: E402
import peer_province  # noqa: E402
import sms_gateway  # noqa: E402
import smtp_sink  # noqa: E402

# ---------------------------------------------------------------------------
# The stand-ins and the HTTP path prefixes each one answers (a prefix matches
# itself and anything below it: "/sms" matches /sms/send and /sms/messages).
# To add one (bank gateway, postal carrier, national portal): write
# deploy/sandbox/<name>.py with a class following the protocol above, import it
# and add a row here.
# ---------------------------------------------------------------------------
STANDINS = (
    # module       class         HTTP path prefixes
    (smtp_sink, "SmtpSink", ("/smtp",)),
    (sms_gateway, "SmsGateway", ("/sms", "/control/sms")),
    (chat_webhook, "ChatWebhook", ("/chat", "/control/chat")),
    (bank_gateway, "BankGateway", ("/vnpay",)),
    (carrier, "Carrier", ("/carrier", "/control/carrier")),
    (agency_systems, "AgencySystems", ("/agency", "/control/agency")),
    (national_portal, "NationalPortal", ("/portal", "/control/portal")),
    (peer_province, "PeerProvince", ("/peer", "/control/peer")),
)

# Configuration: environment variable, command-line flag, default, help.
CONFIG = (
    ("MOTCUA_SANDBOX_HOST", "--host", "127.0.0.1", "address the HTTP and SMTP listeners bind"),
    ("MOTCUA_SANDBOX_PORT", "--port", "8090", "HTTP port (0 picks a free one)"),
    ("MOTCUA_SANDBOX_SMTP_PORT", "--smtp-port", "2525", "SMTP port (0 picks a free one)"),
    ("MOTCUA_SANDBOX_SMS_TOKEN", "--sms-token", "sandbox-sms-token",
     "bearer token the SMS gateway accepts"),
    ("MOTCUA_SANDBOX_DIR", "--dir", "", "directory for <stand-in>.jsonl journals (empty: memory only)"),
    ("MOTCUA_LOG_LEVEL", "--log-level", "info", "debug|info|warn|error"),
    ("MOTCUA_LOG_FORMAT", "--log-format", "kv", "kv|json"),
)

MAX_BODY = 1 << 20  # largest HTTP request body accepted


# ---------------------------------------------------------------------------
# Logging: the same line shape as common/log.c, personal data masked.
# ---------------------------------------------------------------------------
LEVELS = ("debug", "info", "warn", "error")
_DIGITS = re.compile(r"\+?\d{9,}")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@")


def mask(text):
    """Mask runs of 9+ digits (phone and ID numbers: keep the first and last two)
    and the local part of e-mail addresses (keep its first character)."""

    def digits(m):
        s = m.group(0)
        plus = "+" if s.startswith("+") else ""
        d = s[len(plus):]
        return plus + d[:2] + "*" * (len(d) - 4) + d[-2:]

    return _EMAIL.sub(r"\1***@", _DIGITS.sub(digits, text))


def utc_now():
    """ISO 8601 UTC time with milliseconds: 2026-06-09T07:30:00.123Z."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (int(now * 1000) % 1000)


class Logger:
    """One line per event on stderr, written with a single write under a lock."""

    def __init__(self, level="info", fmt="kv"):
        self.min = LEVELS.index(level) if level in LEVELS else 1
        self.json = fmt == "json"
        self.lock = threading.Lock()

    def __call__(self, level, msg, **fields):
        if LEVELS.index(level) < self.min:
            return
        items = [("ts", utc_now()), ("service", "sandbox"), ("level", level)]
        if fields.get("dossier"):
            items.append(("dossier", fields.pop("dossier")))
        fields.pop("dossier", None)
        items.append(("msg", msg))
        items += [(k, v) for k, v in fields.items() if v is not None]
        if self.json:
            line = json.dumps({k: mask(str(v)) for k, v in items}, ensure_ascii=False, separators=(",", ":"))
        else:
            parts = []
            for k, v in items:
                v = mask(str(v))
                if k == "msg" or v == "" or re.search(r'[\s"=\\]', v):
                    v = json.dumps(v, ensure_ascii=False)
                parts.append("%s=%s" % (k, v))
            line = " ".join(parts)
        data = (line + "\n").encode("utf-8", "replace")
        with self.lock:
            try:
                os.write(2, data)
            except OSError:
                pass


# ---------------------------------------------------------------------------
# Journal: what a stand-in received, in memory and in <dir>/<name>.jsonl.
# ---------------------------------------------------------------------------
class Journal:
    """A thread-safe list of records mirrored to a JSON-lines file.

    Each record gets an id "<name>-<n>" and a received_at time. On start-up the
    file, if any, is loaded back (a torn last line from a crash is skipped) and the
    numbering continues after the highest id seen. clear() empties both the list
    and the file; ids keep growing so that an id is never reused by one process."""

    def __init__(self, name, directory, log):
        self.name = name
        self.lock = threading.Lock()
        self.records = []
        self.next_id = 1
        self.path = os.path.join(directory, name + ".jsonl") if directory else None
        if self.path and os.path.exists(self.path):
            with open(self.path, "r", encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        log("warn", "journal line skipped", journal=self.path)
                        continue
                    self.records.append(rec)
                    m = re.fullmatch(re.escape(name) + r"-(\d+)", str(rec.get("id", "")))
                    if m:
                        self.next_id = max(self.next_id, int(m.group(1)) + 1)
            log("info", "journal loaded", journal=self.path, records=len(self.records))

    def append(self, record):
        """Number, time-stamp and store record; returns it (with its id)."""
        with self.lock:
            rec = {"id": "%s-%d" % (self.name, self.next_id), "received_at": utc_now()}
            rec.update(record)
            self.next_id += 1
            self.records.append(rec)
            if self.path:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            return rec

    def list(self):
        with self.lock:
            return list(self.records)

    def clear(self):
        with self.lock:
            n = len(self.records)
            self.records = []
            if self.path:
                open(self.path, "w").close()
            return n


class Context:
    """What a stand-in gets: configuration, the logger and its journal."""

    def __init__(self, config, log):
        self.config = config
        self.log = log

    def journal(self, name):
        return Journal(name, self.config["MOTCUA_SANDBOX_DIR"], self.log)


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------
class Request:
    def __init__(self, method, path, query, headers, body, client):
        self.method = method
        self.path = path
        self.query = query  # dict: name -> list of values
        self.headers = headers  # case-insensitive .get()
        self.body = body
        self.client = client

    def json(self):
        """The body as JSON; raises ValueError when it is not valid UTF-8 JSON."""
        return json.loads(self.body.decode("utf-8"))


def error_body(code, message, field=None):
    err = {"code": code, "message": message}
    if field:
        err["field"] = field
    return {"error": err}


class Router:
    """Maps a path to the stand-in owning the longest matching prefix."""

    def __init__(self):
        self.prefixes = []  # (prefix, stand-in), longest first

    def add(self, prefix, standin):
        prefix = prefix.rstrip("/")
        if any(p == prefix for p, _ in self.prefixes):
            raise ValueError("HTTP prefix %s registered twice" % prefix)
        self.prefixes.append((prefix, standin))
        self.prefixes.sort(key=lambda pair: -len(pair[0]))

    def find(self, path):
        for prefix, standin in self.prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                return standin
        return None


INDEX_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;width:100%}
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2} pre{white-space:pre-wrap;margin:0;font-size:.9em}
.muted{color:#777}
"""


class Sandbox:
    """Owns the listeners and the stand-ins; main() runs it until a signal."""

    def __init__(self, config, log):
        self.config = config
        self.log = log
        self.ctx = Context(config, log)
        self.router = Router()
        self.standins = []
        for module, cls_name, prefixes in STANDINS:
            standin = getattr(module, cls_name)(self.ctx)
            self.standins.append(standin)
            for p in prefixes:
                self.router.add(p, standin)
        self.httpd = None
        self.http_thread = None

    # ---- routes of the sandbox itself ----
    def handle(self, req):
        if req.path == "/healthz":
            if req.method not in ("GET", "HEAD"):
                return 405, error_body("method_not_allowed", "use GET"), {"Allow": "GET, HEAD"}
            return 200, {"status": "ok"}
        if req.path in ("/", "/index.html"):
            if req.method not in ("GET", "HEAD"):
                return 405, error_body("method_not_allowed", "use GET"), {"Allow": "GET, HEAD"}
            return 200, self.index_html(), {"Content-Type": "text/html; charset=utf-8"}
        standin = self.router.find(req.path)
        if standin is None:
            return 404, error_body("not_found", "no stand-in answers %s" % req.path)
        return standin.handle(req)

    def index_html(self):
        parts = ["<!DOCTYPE html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\">",
                 "<title>motcua sandbox</title><style>%s</style></head><body>" % INDEX_STYLE,
                 "<h1>motcua sandbox</h1>",
                 "<p class=\"muted\">Stand-ins for the outside world, newest first. "
                 "Reload to refresh.</p>"]
        for s in self.standins:
            parts.append("<section><h2>%s</h2>%s</section>" % (html.escape(s.title), s.html()))
        parts.append("</body></html>\n")
        return "".join(parts)

    # ---- lifecycle ----
    async def start(self):
        for s in self.standins:
            if hasattr(s, "start"):
                await s.start()
        host = self.config["MOTCUA_SANDBOX_HOST"]
        port = int(self.config["MOTCUA_SANDBOX_PORT"])
        self.httpd = ThreadingHTTPServer((host, port), make_handler(self))
        self.httpd.daemon_threads = True
        self.http_thread = threading.Thread(target=self.httpd.serve_forever, name="http",
                                            kwargs={"poll_interval": 0.2}, daemon=True)
        self.http_thread.start()
        fields = {"host": host, "http_port": self.httpd.server_address[1]}
        for s in self.standins:
            if hasattr(s, "describe"):
                fields.update(s.describe())
        fields["dir"] = self.config["MOTCUA_SANDBOX_DIR"] or "-"
        self.log("info", "ready", **fields)

    async def stop(self):
        if self.httpd:
            await asyncio.get_running_loop().run_in_executor(None, self.httpd.shutdown)
            self.httpd.server_close()
        for s in reversed(self.standins):
            if hasattr(s, "stop"):
                await s.stop()


def make_handler(sandbox):
    log = sandbox.log

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: libcurl reuses connections
        server_version = "motcua-sandbox/1"
        sys_version = ""

        def log_message(self, fmt, *args):  # http.server's own lines go through log
            log("debug", "http server", detail=fmt % args)

        def read_body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks, total = [], 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    total += size
                    if total > MAX_BODY:
                        raise OverflowError
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError("negative Content-Length")
            if length > MAX_BODY:
                raise OverflowError
            return self.rfile.read(length) if length else b""

        def dispatch(self):
            started = time.monotonic()
            url = urllib.parse.urlsplit(self.path)
            path = url.path or "/"
            try:
                body = self.read_body()
            except OverflowError:
                self.close_connection = True
                reply = (413, error_body("too_large", "body larger than %d bytes" % MAX_BODY))
            except ValueError:
                self.close_connection = True
                reply = (400, error_body("bad_request", "unreadable body framing"))
            else:
                req = Request(self.command, path, urllib.parse.parse_qs(url.query),
                              self.headers, body, self.client_address[0])
                try:
                    reply = sandbox.handle(req)
                except Exception as e:  # a stand-in bug must not kill the server
                    log("error", "handler failed", path=path, error=repr(e))
                    reply = (500, error_body("internal", "sandbox error: %r" % e))
            self.reply(*reply)
            level = "debug" if path in ("/healthz",) else "info"
            log(level, "http", method=self.command, path=path, status=reply[0],
                ms="%.1f" % ((time.monotonic() - started) * 1000))

        def reply(self, status, body, headers=None):
            headers = dict(headers or {})
            if isinstance(body, (dict, list)):
                data = (json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
                headers.setdefault("Content-Type", "application/json; charset=utf-8")
            elif isinstance(body, str):
                data = body.encode("utf-8")
                headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            else:
                data = body or b""
                headers.setdefault("Content-Type", "application/octet-stream")
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = dispatch

    return Handler


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------
def parse_args(argv):
    epilog = ["environment (a flag overrides its variable):"]
    for env, flag, dflt, help_ in CONFIG:
        epilog.append("  %-26s %-13s default %-20s %s" % (env, flag, repr(dflt), help_))
    epilog += ["", "HTTP endpoints:",
               "  GET    /                      HTML page of everything received",
               "  GET    /healthz               {\"status\":\"ok\"}"]
    for module, cls_name, prefixes in STANDINS:
        for line in getattr(getattr(module, cls_name), "ENDPOINTS", ()):
            epilog.append("  " + line)
    p = argparse.ArgumentParser(
        prog="sandbox.py",
        description="Stand-ins for motcua's outside world (SMTP relay, SMS gateway) on one "
                    "process. Stops cleanly on SIGTERM/SIGINT.",
        epilog="\n".join(epilog), formatter_class=argparse.RawDescriptionHelpFormatter)
    for env, flag, dflt, help_ in CONFIG:
        p.add_argument(flag, dest=env, default=os.environ.get(env, dflt), help=help_,
                       metavar=flag.strip("-").upper().replace("-", "_"))
    config = vars(p.parse_args(argv))
    for key in ("MOTCUA_SANDBOX_PORT", "MOTCUA_SANDBOX_SMTP_PORT"):
        if not re.fullmatch(r"\d{1,5}", config[key]) or int(config[key]) > 65535:
            p.error("%s: %r is not a port (0..65535)" % (key, config[key]))
    if config["MOTCUA_LOG_LEVEL"] not in LEVELS:
        p.error("MOTCUA_LOG_LEVEL: %r is not one of %s" % (config["MOTCUA_LOG_LEVEL"], "|".join(LEVELS)))
    if config["MOTCUA_LOG_FORMAT"] not in ("kv", "json"):
        p.error("MOTCUA_LOG_FORMAT: %r is not kv|json" % config["MOTCUA_LOG_FORMAT"])
    return config


async def run(config):
    log = Logger(config["MOTCUA_LOG_LEVEL"], config["MOTCUA_LOG_FORMAT"])
    if config["MOTCUA_SANDBOX_DIR"]:
        os.makedirs(config["MOTCUA_SANDBOX_DIR"], exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: (log("info", "stopping", signal=s.name), stop.set()))
    sandbox = Sandbox(config, log)
    try:
        await sandbox.start()
    except OSError as e:
        log("error", "cannot listen", error=str(e))
        await sandbox.stop()
        return 1
    await stop.wait()
    await sandbox.stop()
    log("info", "stopped")
    return 0


def main(argv=None):
    config = parse_args(sys.argv[1:] if argv is None else argv)
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())
