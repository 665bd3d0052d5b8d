"""Black-box test harness: a private PostgreSQL, real service processes, real HTTP.

Tests start the binaries built by `make SAN=1` (MOTCUA_BUILD, default build/san) against
a PostgreSQL cluster made by mk/pg.sh in a temporary directory, on free loopback ports,
and kill them with real signals. Nothing here is a mock.
"""
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("MOTCUA_BUILD", os.path.join(ROOT, "build", "san"))
BIN = os.path.join(BUILD, "bin")
SERVICES = ["intake", "routing", "interconnect", "payment", "postal", "notify"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A PostgreSQL cluster of our own (mk/pg.sh), one database per test."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="motcua-pg-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.url = self._pg("start", self.dir, str(self.port)).strip()

    def _pg(self, *args):
        return subprocess.run(["bash", os.path.join(ROOT, "mk", "pg.sh"), *args], check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True).stdout

    def database(self, name=None):
        name = name or "t_" + uuid.uuid4().hex[:12]
        self.sql("CREATE DATABASE " + name)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def sql(self, statement, url=None):
        out = subprocess.run(["psql", "-X", "-qtA", "-v", "ON_ERROR_STOP=1", url or self.url,
                              "-c", statement], check=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True).stdout
        return out.strip()

    def restart(self):
        self._pg("restart", self.dir)

    def crash(self):
        """Immediate shutdown: no checkpoint, as after a power cut; then start again."""
        self._pg("kill", self.dir)
        self._pg("start", self.dir, str(self.port))

    def stop(self):
        self._pg("destroy", self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


class Service:
    """One service process (a motcua-* binary or bus-peer) with its own ports."""

    def __init__(self, name, env, binary=None, args=(), log_dir=None):
        self.name = name
        self.env = env
        self.binary = binary or os.path.join(BIN, "motcua-" + name)
        self.args = list(args)
        self.http_port = int(env["MOTCUA_%s_HTTP_PORT" % name.upper()])
        self.log_path = os.path.join(log_dir or tempfile.gettempdir(),
                                     "%s-%s.log" % (name, uuid.uuid4().hex[:6]))
        self.proc = None
        self.restarts = 0

    def start(self, wait=True):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([self.binary, *self.args], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.http_port, path)

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s; log:\n%s" % (self.name, self.proc.returncode,
                                                                  self.log()))
            try:
                status, _ = http("GET", self.url("/readyz"), timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("%s not ready after %ss; log:\n%s" % (self.name, timeout, self.log()))

    def kill(self):
        """SIGKILL: no chance to finish anything."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout=20):
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def restart_after_kill(self):
        self.kill()
        self.restarts += 1
        self.start()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""


def start_services(svc, names, env, log_dir=None):
    """Put a Service for each of names into svc (name -> Service), start them all, then
    wait until each is ready. svc is filled first, so that after a failure what was
    started is there for stop_services."""
    for n in names:
        svc[n] = Service(n, env, log_dir=log_dir)
    for n in names:
        svc[n].start(wait=False)
    for n in names:
        svc[n].wait_ready()
    return svc


def suite_env(database_url, names=SERVICES):
    """Environment for a set of services on free ports, all pointing at each other."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTCUA_")}
    env.update({
        "MOTCUA_DATABASE_URL": database_url,
        "MOTCUA_HTTP_HOST": "127.0.0.1",
        "MOTCUA_LOG_LEVEL": "info",
        "MOTCUA_BUS_LEASE_MS": "500",
        "MOTCUA_DATA_DIR": os.path.join(ROOT, "deploy", "data"),
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    })
    for name in SERVICES:
        up = name.upper()
        bus = free_port()
        env["MOTCUA_%s_HTTP_PORT" % up] = str(free_port())
        env["MOTCUA_%s_BUS" % up] = "tcp://127.0.0.1:%d" % bus
        env["MOTCUA_%s_BUS_BIND" % up] = "tcp://127.0.0.1:%d" % bus
    return env


def http(method, url, body=None, headers=None, timeout=10):
    """(status, parsed JSON or text) of one HTTP request."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(predicate, timeout=60, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def create_api_key(database_url, name, scopes, agency=None):
    """A new API key made by `motcuactl keys create --json` on database_url: the parsed
    answer {id, name, agency, scopes, key, created_at}."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTCUA_")}
    env["MOTCUA_DATABASE_URL"] = database_url
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    args = [os.path.join(BIN, "motcuactl"), "keys", "create", "--name", name, "--scopes", scopes,
            "--json"]
    if agency:
        args += ["--agency", agency]
    p = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    if p.returncode != 0:
        raise RuntimeError("motcuactl keys create failed (%d): %s%s"
                           % (p.returncode, p.stdout, p.stderr))
    return json.loads(p.stdout)


def stop_services(svc):
    """SIGTERM every still running service of svc (name -> Service) and read its log;
    returns what went wrong: an unclean exit, a sanitizer report, an error logged."""
    problems = []
    for name, s in svc.items():
        if s.proc and s.proc.poll() is None:
            rc = s.terminate()
            if rc != 0:
                problems.append("%s exited with %s on SIGTERM" % (name, rc))
        try:
            with open(s.log_path, errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "level=error"):
            if marker in text:
                problems.append("%s's log (%s) has %r" % (name, s.log_path, marker))
    return problems


def officer_keys(database_url, agencies):
    """{agency: key} of a new officer key "officer-<agency>" for each agency (a
    procedure's steps)."""
    return {a: create_api_key(database_url, "officer-" + a, "officer", a)["key"]
            for a in agencies}


def case(routing, key, code):
    """routing's GET /v1/cases/<code> with key: the case, or None when not 200."""
    status, body = http("GET", routing.url("/v1/cases/" + code),
                        headers={"Authorization": "Bearer " + key})
    return body if status == 200 else None


def wait_case_state(routing, key, code, state, timeout=20, what=None):
    """Poll routing's case until it is in state; returns the case."""
    return wait_for(lambda: (lambda c: c if c and c["state"] == state else None)(
        case(routing, key, code)), timeout=timeout, what=what or "%s in %s" % (code, state))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get_raw(url, timeout=30):
    """(status, headers, text) of a GET, without following redirects."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode("utf-8", "replace")


def new_phone():
    """A random Vietnamese mobile number, national form: 09xxxxxxxx."""
    return "09%08d" % (uuid.uuid4().int % 100000000)


def e164(phone):
    """0912345678 -> +84912345678."""
    return "+84" + phone[1:]


SANDBOX = os.path.join(ROOT, "deploy", "sandbox", "sandbox.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class Sandbox:
    """The sandbox (deploy/sandbox/sandbox.py: SMTP sink, SMS gateway, chat webhook, bank
    gateway, carrier) on free ports (port 0; the ports are read from its "ready" log
    line), journals in directory ("": memory only). env: the stand-ins' settings
    (MOTCUA_VNPAY_SECRET, MOTCUA_CARRIER_TOKEN, ...) over an environment without the
    caller's MOTCUA_* variables. Its log lines are kept in lines (and appended to a
    file in log_dir when given)."""

    def __init__(self, directory="", env=None, log_dir=None):
        self.directory = directory
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MOTCUA_")}
        self.env.update(MOTCUA_SANDBOX_DIR=directory, MOTCUA_SANDBOX_PORT="0",
                        MOTCUA_SANDBOX_SMTP_PORT="0", MOTCUA_SANDBOX_HOST="127.0.0.1",
                        MOTCUA_LOG_FORMAT="kv")
        self.env.update(env or {})
        self.log_path = os.path.join(log_dir, "sandbox-%s.log" % uuid.uuid4().hex[:6]) \
            if log_dir else None
        self.proc = None
        self.lines = []

    def start(self, timeout=15):
        """Start it and wait for its "ready" line; returns self."""
        self.lines = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen([PYTHON, SANDBOX], env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(timeout):
            self.stop()
            raise RuntimeError("sandbox not ready:\n" + self.log())
        ready = next(l for l in self.lines if 'msg="ready"' in l)
        self.http_port = int(re.search(r"http_port=(\d+)", ready).group(1))
        self.smtp_port = int(re.search(r"smtp_port=(\d+)", ready).group(1))
        self.base = "http://127.0.0.1:%d" % self.http_port
        return self

    def _read(self):
        log = open(self.log_path, "a") if self.log_path else None
        try:
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace")
                self.lines.append(line)
                if log:
                    log.write(line)
                    log.flush()
                if 'msg="ready"' in line:
                    self.ready.set()
        finally:
            if log:
                log.close()

    def stop(self):
        """SIGTERM and wait (SIGKILL after 10 s); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.reader.join(5)
            self.proc.stderr.close()

    def url(self, path):
        return self.base + path

    def log(self):
        return "".join(self.lines)[-6000:]

    def http(self, method, path, body=None, headers=None, raw=None):
        """(status, headers, decoded JSON or text) of one request to path."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url(path), data=data, method=method,
                                     headers=dict({"Content-Type": "application/json"},
                                                  **(headers or {})))
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, hdrs, payload = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, payload = e.code, e.headers, e.read()
        text = payload.decode("utf-8")
        if hdrs.get("Content-Type", "").startswith("application/json"):
            return status, hdrs, json.loads(text)
        return status, hdrs, text


def envelope_class():
    """The Envelope class, compiled from proto/ with protoc for this run (a second,
    independent reader and writer of the contract)."""
    out = tempfile.mkdtemp(prefix="motcua-pb-")
    proto = os.path.join(ROOT, "proto")
    subprocess.run(["protoc", "-I" + proto, "--python_out=" + out,
                    os.path.join(proto, "motcua", "envelope.proto"),
                    os.path.join(proto, "motcua", "events.proto")], check=True)
    sys.path.insert(0, out)
    try:
        return importlib.import_module("motcua.envelope_pb2").Envelope
    finally:
        sys.path.remove(out)


class Suite:
    """What a test module starts once (PostgreSQL, the sandbox, the services it
    needs): a subclass writes start(); stopping, and the module's setUpModule and
    tearDownModule (Suite.module_hooks()), are the same everywhere."""

    pg = None
    svc = {}
    sandbox = None

    @classmethod
    def stop(cls):
        """Stop everything; what went wrong on the way (an unclean exit, a sanitizer
        report, an error logged)."""
        problems = stop_services(cls.svc)
        if cls.sandbox and cls.sandbox.stop() != 0:
            problems.append("sandbox did not exit 0")
        if cls.pg:
            cls.pg.stop()
        return problems

    @classmethod
    def module_hooks(cls):
        def set_up():
            cls.start()

        def tear_down():
            problems = cls.stop()
            if problems:
                raise AssertionError("the services: " + "; ".join(problems))
        return set_up, tear_down
