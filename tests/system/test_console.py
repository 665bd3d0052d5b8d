"""The front door as `make run` starts it (nginx with the configuration that
deploy/nginx/local-conf.sh makes from deploy/nginx/nginx.conf) in front of the six
services, and the operator console it serves at /console/:

- / and /console redirect to /console/, which is index.html, UTF-8, with the CSS and
  JS it references, and nothing loaded from outside (the machines are offline);
- every API path console.js calls (its "/v1/..." and "/health/..." string literals)
  answers 200 through the front door, with an operator key where a key is needed,
  and 401 without one; an officer key gets 403 on the operator-only dead-letter list;
- an unknown path is a JSON 404, and a service that is down is a JSON 503 on its
  /health/<service>.

Skipped when nginx is not installed.
"""
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

import harness

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
CONSOLE = os.path.join(harness.ROOT, "deploy", "console")
LOCAL_CONF = os.path.join(harness.ROOT, "deploy", "nginx", "local-conf.sh")


def console_paths():
    """The API paths console.js calls: its string literals starting /v1/ or /health/."""
    with open(os.path.join(CONSOLE, "console.js"), encoding="utf-8") as f:
        return sorted(set(re.findall(r'"(/(?:v1|health)/[^"?]*)"', f.read())))


def requests_for(path):
    """(path with query, needs a key) for each request the console makes on path. A
    path console.js calls that is missing here fails the test: add it."""
    today = dt.date.today()
    table = {
        "/health/": [("/health/" + s, False) for s in harness.SERVICES],
        "/v1/tasks": [("/v1/tasks?limit=200", True),
                      ("/v1/tasks?state=SUBMITTED&limit=1", True)],
        "/v1/notifications": [("/v1/notifications?state=failed&limit=20", True)],
        "/v1/stats": [("/v1/stats?from=%d-01-01&to=%s" % (today.year, today.isoformat()), True)],
    }
    return table.get(path)


class Front:
    """nginx with the make-run configuration, in a directory of its own."""

    def __init__(self, env):
        self.dir = tempfile.mkdtemp(prefix="motcua-nginx-")
        os.chmod(self.dir, 0o755)  # as root the workers are www-data: temp dirs inside
        self.port = harness.free_port()
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.log_path = os.path.join(self.dir, "nginx.log")
        cenv = dict(env, MOTCUA_FRONT_PORT=str(self.port))
        with open(self.conf, "w") as out:
            subprocess.run(["bash", LOCAL_CONF, self.dir], env=cenv, stdout=out, check=True)
        self.cmd = [NGINX, "-e", "stderr", "-p", self.dir + "/", "-c", self.conf]
        check = subprocess.run(self.cmd + ["-t", "-q"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        if check.returncode != 0:
            raise AssertionError("nginx -t: " + check.stdout)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        harness.wait_for(lambda: self.ready(), timeout=15, what="nginx on port %d" % self.port)

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("nginx exited with %s:\n%s" % (self.proc.returncode, self.log()))
        try:
            return harness.http("GET", self.url("/healthz"), timeout=2)[0] == 200
        except OSError:
            return False

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class ConsoleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not NGINX:
            raise unittest.SkipTest("nginx not installed")
        cls.pg = cls.front = None
        cls.svc = {}
        try:
            cls.pg = harness.Postgres()
            cls.db = cls.pg.database()
            cls.env = harness.suite_env(cls.db)
            harness.start_services(cls.svc, harness.SERVICES, cls.env)
            cls.operator = harness.create_api_key(cls.db, "console-operator", "operator")["key"]
            cls.officer = harness.create_api_key(cls.db, "console-officer", "officer",
                                                 "000.01.31.H99")["key"]
            cls.front = Front(cls.env)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.front:
            cls.front.stop()
        problems = harness.stop_services(cls.svc)
        if cls.pg:
            cls.pg.stop()
        if problems:
            raise AssertionError("the services: " + "; ".join(problems))

    def get(self, path, key=None):
        headers = {"Authorization": "Bearer " + key} if key else {}
        return harness.http("GET", self.front.url(path), headers=headers)

    def test_console_served(self):
        status, headers, _ = harness.get_raw(self.front.url("/"))
        self.assertEqual((status, headers["Location"]), (302, "/console/"))
        status, headers, _ = harness.get_raw(self.front.url("/console"))
        self.assertEqual((status, headers["Location"]), (301, "/console/"))

        status, headers, html = harness.get_raw(self.front.url("/console/"))
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        with open(os.path.join(CONSOLE, "index.html"), encoding="utf-8") as f:
            self.assertEqual(html, f.read())
        self.assertIn('<meta charset="utf-8">', html)
        self.assertIn("Hồ sơ quá hạn", html)
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        self.assertIn("console.js", assets)
        self.assertIn("console.css", assets)
        types = {"js": "application/javascript", "css": "text/css"}
        for asset in assets:
            self.assertNotRegex(asset, r"^(https?:)?//", "loaded from outside: " + asset)
            status, headers, body = harness.get_raw(self.front.url("/console/" + asset))
            self.assertEqual(status, 200, asset)
            self.assertTrue(headers["Content-Type"].startswith(types[asset.rsplit(".", 1)[1]]),
                            (asset, headers["Content-Type"]))
            with open(os.path.join(CONSOLE, asset), encoding="utf-8") as f:
                self.assertEqual(body, f.read(), asset)
        # Nothing from outside: no URL but the SVG namespace.
        for name in ("index.html", "console.js", "console.css"):
            with open(os.path.join(CONSOLE, name), encoding="utf-8") as f:
                urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[a-z]{2,}[^\s\"')]*",
                                      f.read())) - {"http://www.w3.org/2000/svg"}
            self.assertEqual(urls, set(), name)
        status, _, _ = harness.get_raw(self.front.url("/console/nope.js"))
        self.assertEqual(status, 404)

    def test_console_api_paths(self):
        paths = console_paths()
        for p in ("/health/", "/v1/tasks", "/v1/notifications", "/v1/stats"):
            self.assertIn(p, paths)
        for path in paths:
            calls = requests_for(path)
            self.assertIsNotNone(calls, "console.js calls %s: add it to requests_for()" % path)
            for url, needs_key in calls:
                with self.subTest(url=url):
                    status, body = self.get(url, self.operator if needs_key else None)
                    self.assertEqual(status, 200, (url, body, self.front.log()))
                    self.assertIsInstance(body, dict, url)
                    if needs_key:
                        status, body = self.get(url)
                        self.assertEqual(status, 401, (url, body))
                        self.assertEqual(body["error"]["code"], "unauthorized")
                    else:
                        self.assertEqual(body["status"], "ready", url)
                        self.assertIn("outbox_pending", body["bus"])
                        self.assertIsInstance(body["bus"]["peers"], list)

    def test_dead_letters_need_operator(self):
        status, body = self.get("/v1/notifications?state=failed&limit=20", self.officer)
        self.assertEqual(status, 403, body)
        status, body = self.get("/v1/notifications?state=failed&limit=20", self.operator)
        self.assertEqual(status, 200, body)
        self.assertIn("total", body)
        self.assertIsInstance(body["items"], list)

    def test_errors_are_json(self):
        status, body = self.get("/v1/nope")
        self.assertEqual((status, body["error"]["code"]), (404, "not_found"))
        # A service that is down: 503 JSON from nginx on its health path.
        postal = self.svc["postal"]
        postal.terminate()
        try:
            status, body = self.get("/health/postal")
            self.assertEqual((status, body["error"]["code"]), (503, "unavailable"))
        finally:
            postal.start()
        status, body = self.get("/health/postal")
        self.assertEqual(status, 200, body)


if __name__ == "__main__":
    unittest.main()
