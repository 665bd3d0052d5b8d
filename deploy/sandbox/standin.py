"""standin.py: what the HTTP stand-ins (SMS gateway, chat webhook, bank gateway,
carrier) share, so that each module holds only the API it imitates.

    error_body(code, message, field)   the suite's error shape {"error": {...}}
    sign(secret, timestamp, body)      hex HMAC-SHA256 over "<timestamp>.<body>"
    post_signed(url, raw, ts, sig)     POST raw JSON with X-Timestamp and X-Signature;
                                       (decoded answer or text, HTTP status; 0 if none)
    check_bearer(req, token, realm)    the Authorization: Bearer check (401 answer)
    OutageSwitch                       the test switch: mode (ok, down, slow, ...),
                                       delay_ms for "slow", and counters, under a lock
    StandIn                            base class: journal and log from the Context,
                                       handle() dispatching self.routes with the
                                       404/405 answers, GET/POST /control/<name>

A stand-in sets name, noun (for "no such <noun> endpoint"), routes and, if it has
one, switch; see sandbox.py for the protocol the sandbox expects. Standard library
only; never imports sandbox.py.
"""

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request

DEFAULT_DELAY_MS = 5000
MAX_DELAY_MS = 120000


def error_body(code, message, field=None):
    err = {"code": code, "message": message}
    if field:
        err["field"] = field
    return {"error": err}


def sign(secret, timestamp, body):
    """The signature motcua checks on callbacks (common/signed_callback.c)."""
    return hmac.new(secret.encode("utf-8"), str(timestamp).encode() + b"." + body,
                    hashlib.sha256).hexdigest()


def post_signed(url, raw, ts, sig):
    """POST a signed JSON callback; (the answer, JSON-decoded if it is JSON, and the
    HTTP status, 0 when there was no answer: then the answer is the error's text)."""
    r = urllib.request.Request(url, data=raw, method="POST", headers={
        "Content-Type": "application/json", "X-Timestamp": str(ts), "X-Signature": sig})
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            text, code = resp.read().decode("utf-8", "replace"), resp.status
    except urllib.error.HTTPError as e:
        text, code = e.read().decode("utf-8", "replace"), e.code
    except OSError as e:
        return str(e), 0
    try:
        return json.loads(text), code
    except ValueError:
        return text, code


def check_bearer(req, token, realm):
    """None when req carries "Authorization: Bearer <token>"; otherwise the 401
    answer (status, body, headers) to send."""
    auth = req.headers.get("Authorization") or ""
    scheme, _, got = auth.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(got.strip().encode(), token.encode()):
        return None
    return 401, error_body("unauthorized", "missing or wrong bearer token"), \
        {"WWW-Authenticate": 'Bearer realm="%s"' % realm}


class OutageSwitch:
    """The mode a stand-in is told to be in and what it counted, under one lock.

    modes: the modes allowed, "ok" first (the initial one). delay: whether the
    switch has a delay_ms (for "slow"); only then is delay_ms part of state()."""

    def __init__(self, modes, counters, delay=False):
        self.lock = threading.Lock()
        self.modes = tuple(modes)
        self.has_delay = delay
        self.mode = "ok"
        self.delay_ms = DEFAULT_DELAY_MS
        self.counters = dict.fromkeys(counters, 0)

    def count(self, counter):
        with self.lock:
            self.counters[counter] += 1

    def attempt(self, counter="attempts"):
        """Count a call; when the mode is "slow", wait delay_ms first. Returns the mode."""
        with self.lock:
            self.counters[counter] += 1
            mode, delay_ms = self.mode, self.delay_ms
        if mode == "slow":
            time.sleep(delay_ms / 1000.0)
        return mode

    def current(self):
        with self.lock:
            return self.mode

    def _state(self):
        state = {"mode": self.mode}
        if self.has_delay:
            state["delay_ms"] = self.delay_ms
        state.update(self.counters)
        return state

    def state(self):
        """{"mode", ["delay_ms",] counters...}, as GET /control/<name> shows it."""
        with self.lock:
            return self._state()

    def set(self, mode, delay_ms=None):
        """Switch to mode (and delay_ms when given); returns the new state()."""
        with self.lock:
            self.mode = mode
            if delay_ms is not None:
                self.delay_ms = delay_ms
            return self._state()


class StandIn:
    """Base of the HTTP stand-ins: routes dispatch and the outage switch's endpoints."""

    name = ""  # short name: journal file, log lines
    noun = ""  # in "no such <noun> endpoint /path"
    switch = None  # an OutageSwitch, set by stand-ins that have /control/<name>
    # control_set's answers to a bad body ({error} is the parse error, {modes} a|b|c)
    CONTROL_BAD_JSON = "body is not UTF-8 JSON: {error}"
    CONTROL_BAD_MODE = "mode must be one of {modes}"
    REJECT_LOG = "rejected"  # log message of reject()

    def __init__(self, ctx):
        self.log = ctx.log
        self.journal = ctx.journal(self.name)
        self.lock = threading.Lock()
        self.routes = {}  # (method, path) -> handler(req)

    def route_error(self, code, message):
        """The body of a 404/405 answer from handle()."""
        return error_body(code, message)

    def handle(self, req):
        path = req.path.rstrip("/") or "/"
        fn = self.routes.get((req.method, path))
        if fn is not None:
            return fn(req)
        allowed = sorted(m for m, p in self.routes if p == path)
        if allowed:
            return 405, self.route_error("method_not_allowed", "use " + " or ".join(allowed)), \
                {"Allow": ", ".join(allowed)}
        return 404, self.route_error("not_found", "no such %s endpoint %s" % (self.noun, req.path))

    # ---- outage switch: GET and POST /control/<name> ----
    def control_get(self, req):
        return 200, self.switch.state()

    def control_set(self, req):
        """POST {"mode": ..., "delay_ms": N} (delay_ms only when the switch has one)."""
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError) as e:
            return 400, error_body("bad_json", self.CONTROL_BAD_JSON.format(error=e))
        modes = self.switch.modes
        if not isinstance(body, dict) or body.get("mode") not in modes:
            return 400, error_body("invalid", self.CONTROL_BAD_MODE.format(modes="|".join(modes)),
                                   "mode")
        fields = {}
        if self.switch.has_delay:
            delay = body.get("delay_ms", DEFAULT_DELAY_MS)
            if isinstance(delay, bool) or not isinstance(delay, int) or \
                    not 0 <= delay <= MAX_DELAY_MS:
                return 400, error_body("invalid", "delay_ms must be an integer 0..%d" % MAX_DELAY_MS,
                                       "delay_ms")
            fields["delay_ms"] = delay
        state = self.switch.set(body["mode"], **fields)
        self.log("info", "%s mode" % self.name, mode=state["mode"], **fields)
        return 200, state

    def admit(self, req, down_message, validate):
        """The front of an API call behind the outage switch and a bearer token
        (self.token, realm self.name): count the attempt (waiting when "slow"), then
        refuse, counted and logged, when "down" (503, Retry-After), without the token
        (401), with a body that is not JSON or that validate(body) finds wrong: it
        returns (field, message) or None (400). Returns (body, None) or (None, answer)."""
        if self.switch.attempt() == "down":
            return None, self.reject(503, error_body("unavailable", down_message),
                                     {"Retry-After": "1"})
        denied = check_bearer(req, self.token, self.name)
        if denied:
            return None, self.reject(*denied)
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError) as e:
            return None, self.reject(400, error_body("bad_json", "body is not UTF-8 JSON: %s" % e))
        problem = validate(body)
        if problem:
            return None, self.reject(400, error_body("invalid", problem[1], problem[0]))
        return body, None

    def reject(self, status, body, headers=None):
        """Count a refused call and log why; returns the answer."""
        self.switch.count("rejected")
        self.log("info", self.REJECT_LOG, status=status, reason=body["error"]["message"])
        return status, body, headers or {}
