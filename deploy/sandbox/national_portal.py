"""national_portal.py: a stand-in for the national public-service portal (Cổng dịch vụ
công quốc gia) as interconnect talks to it (docs/portal.md): it takes motcua's status
pushes, answers what it holds for reconciliation, and sends dossiers submitted on it
to motcua, signed.

API (what interconnect is written against; MOTCUA_PORTAL_URL = <sandbox>/portal/api):
    POST /portal/api/status   Authorization: Bearer MOTCUA_PORTAL_TOKEN, body
        {sync_id, code, seq, status (1..10), updated_at (yyyyMMddHHmmss), local_code?,
         national_code?, state?, agency?, officer?, content?, department?, step?,
         due_at?, appointment_at?, overdue?}: recorded in the order received and
        answered 200 {"ack": true, "sync_id", "code", "seq"}. A repeat of a sync_id
        is acknowledged again and not recorded twice. Order is not enforced: the order
        received is kept for tests to check.
    POST /portal/api/dossiers/lookup   Bearer; {"codes": [...]} -> {"dossiers": [{code,
        status, seq, updated_at}]} for the codes it holds (reconciliation)
    GET  /portal/api/dossiers[?code=]  Bearer; every dossier it holds, last status

Test endpoints (no token):
    GET  /portal/pushes[?code=]        pushes recorded, in the order received
    GET  /control/portal               mode, fail_next, counters
    POST /control/portal               {"mode": "ok"|"down"|"slow", "fail_next": N,
                                       "delay_ms": N}: down answers 503 to everything
                                       of /portal/api, slow answers after delay_ms; the
                                       next N pushes are answered 500
    POST /control/portal/forget        {"code"}: forget a dossier (its pushes stay listed)
    POST /portal/control/submit        {"dossier": {...portal dossier...}, "url"?,
        "sign"?: "bad", "timestamp"?: N, "raw"?: "text"}: send a dossier submitted on
        the portal to motcua: POST url (default MOTCUA_PORTAL_INBOUND_URL) with
        X-Timestamp and X-Signature = hex HMAC-SHA256 under MOTCUA_PORTAL_SECRET over
        "<timestamp>.<body>"; a missing national_code is made up. Answers
        {"status": <motcua's HTTP status>, "answer": ..., "dossier": ...}.
"""

import html
import json
import os
import re
import time

from standin import (OutageSwitch, StandIn, check_bearer, error_body as _error, post_signed,
                     sign)

DEFAULT_TOKEN = "sandbox-portal-token"
DEFAULT_SECRET = "sandbox-portal-secret"
DEFAULT_INBOUND = "http://127.0.0.1:8082/v1/portal/dossiers"
STAMP = re.compile(r"^\d{14}$")



def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def validate_push(body):
    """(field, message) of the first problem of a status push, or None."""
    if not isinstance(body, dict):
        return "body", "a JSON object is required"
    if not _int(body.get("sync_id")) or body["sync_id"] <= 0:
        return "sync_id", "sync_id is a positive integer"
    if not isinstance(body.get("code"), str) or not body["code"]:
        return "code", "code is required"
    if not _int(body.get("seq")) or body["seq"] <= 0:
        return "seq", "seq is a positive integer"
    if not _int(body.get("status")) or not 1 <= body["status"] <= 10:
        return "status", "status is the national status code 1..10"
    if not isinstance(body.get("updated_at"), str) or not STAMP.match(body["updated_at"]):
        return "updated_at", "updated_at is yyyyMMddHHmmss"
    for k in ("due_at", "appointment_at"):
        if body.get(k) is not None and (not isinstance(body[k], str) or not STAMP.match(body[k])):
            return k, "%s is yyyyMMddHHmmss or null" % k
    return None


class NationalPortal(StandIn):
    name = "portal"
    noun = "national portal"
    title = "National public-service portal (status sync, dossiers submitted there)"
    REJECT_LOG = "portal: call refused"
    ENDPOINTS = (
        "POST   /portal/api/status    a status push (Bearer token; 200 ack; by sync_id once)",
        "POST   /portal/api/dossiers/lookup  {codes}: what it holds (reconciliation)",
        "GET    /portal/api/dossiers  every dossier it holds, last status (Bearer)",
        "GET    /portal/pushes        pushes received, in order (?code=)",
        "GET    /control/portal       mode, fail_next and counters",
        "POST   /control/portal       {\"mode\":\"ok\"|\"down\"|\"slow\",\"fail_next\":N}",
        "POST   /control/portal/forget  {\"code\"}: forget a dossier",
        "POST   /portal/control/submit  {dossier,url?,sign?,timestamp?}: send one to motcua",
    )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.token = os.environ.get("MOTCUA_PORTAL_TOKEN", DEFAULT_TOKEN)
        self.secret = os.environ.get("MOTCUA_PORTAL_SECRET", DEFAULT_SECRET)
        self.inbound_url = os.environ.get("MOTCUA_PORTAL_INBOUND_URL", DEFAULT_INBOUND)
        self.switch = OutageSwitch(("ok", "down", "slow"),
                                   ("attempts", "received", "repeated", "rejected", "failed",
                                    "lookups", "submitted"), delay=True)
        self.fail_next = 0
        self.pushes = []  # in the order received
        self.seen = {}  # sync_id -> ack
        self.dossiers = {}  # code -> last status held
        self.sequence = 0
        for rec in self.journal.list():  # a restarted sandbox still knows what it held
            if rec.get("kind") == "push":
                self._apply(rec["push"])
            elif rec.get("kind") == "forget":
                self.dossiers.pop(rec["code"], None)
        self.routes = {
            ("POST", "/portal/api/status"): self.push,
            ("POST", "/portal/api/dossiers/lookup"): self.lookup,
            ("GET", "/portal/api/dossiers"): self.held,
            ("GET", "/portal/pushes"): self.list_pushes,
            ("GET", "/control/portal"): self.control_get,
            ("POST", "/control/portal"): self.control_set,
            ("POST", "/control/portal/forget"): self.forget,
            ("POST", "/portal/control/submit"): self.submit,
        }

    def describe(self):
        return {"national_portal": "/portal/api"}

    # ---- the switch, with fail_next ----
    def control_get(self, req):
        state = self.switch.state()
        with self.lock:
            state["fail_next"] = self.fail_next
        return 200, state

    def control_set(self, req):
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError) as e:
            return 400, _error("bad_json", "body is not UTF-8 JSON: %s" % e)
        if not isinstance(body, dict):
            return 400, _error("bad_json", "a JSON object is required")
        mode = body.get("mode", self.switch.current())
        if mode not in self.switch.modes:
            return 400, _error("invalid", "mode must be ok, down or slow", "mode")
        fail = body.get("fail_next")
        if fail is not None and (not _int(fail) or fail < 0):
            return 400, _error("invalid", "fail_next is a non-negative integer", "fail_next")
        delay = body.get("delay_ms")
        if delay is not None and (not _int(delay) or not 0 <= delay <= 120000):
            return 400, _error("invalid", "delay_ms must be an integer 0..120000", "delay_ms")
        state = self.switch.set(mode, delay)
        with self.lock:
            if fail is not None:
                self.fail_next = fail
            state["fail_next"] = self.fail_next
        self.log("info", "portal mode", mode=mode, fail_next=state["fail_next"])
        return 200, state

    def _front(self, req, counter="attempts"):
        """Outage switch and bearer token of /portal/api: None or the answer."""
        if self.switch.attempt(counter) == "down":
            return self.reject(503, _error("unavailable", "the national portal is down (sandbox "
                                           "outage switch)"), {"Retry-After": "1"})
        denied = check_bearer(req, self.token, self.name)
        if denied:
            return self.reject(*denied)
        return None

    # ---- status pushes ----
    def _apply(self, body):
        """Record one push (under self.lock, or at start)."""
        self.sequence += 1
        rec = dict(body, received=self.sequence)
        self.pushes.append(rec)
        self.seen[body["sync_id"]] = {"ack": True, "sync_id": body["sync_id"],
                                      "code": body["code"], "seq": body["seq"]}
        self.dossiers[body["code"]] = {
            "code": body["code"], "status": body["status"], "seq": body["seq"],
            "updated_at": body["updated_at"], "local_code": body.get("local_code"),
            "national_code": body.get("national_code"), "state": body.get("state")}
        return self.seen[body["sync_id"]]

    def push(self, req):
        answer = self._front(req)
        if answer:
            return answer
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                failing = True
            else:
                failing = False
        if failing:
            self.switch.count("failed")
            self.log("info", "portal: push failed on purpose", left=self.fail_next)
            return 500, _error("internal", "the national portal failed (sandbox fail_next)")
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError) as e:
            return self.reject(400, _error("bad_json", "body is not UTF-8 JSON: %s" % e))
        problem = validate_push(body)
        if problem:
            return self.reject(400, _error("invalid", problem[1], problem[0]))
        with self.lock:
            old = self.seen.get(body["sync_id"])
            if old is not None:
                self.switch.count("repeated")
                return 200, old
            ack = self._apply(body)
            self.journal.append({"kind": "push", "push": body})
            self.switch.count("received")
        self.log("info", "portal: status received", dossier=body["code"], seq=body["seq"],
                 status=body["status"], sync_id=body["sync_id"])
        return 200, ack

    def lookup(self, req):
        answer = self._front(req, "lookups")
        if answer:
            return answer
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError) as e:
            return self.reject(400, _error("bad_json", "body is not UTF-8 JSON: %s" % e))
        codes = body.get("codes") if isinstance(body, dict) else None
        if not isinstance(codes, list) or len(codes) > 1000 or \
                not all(isinstance(c, str) for c in codes):
            return self.reject(400, _error("invalid", "codes is a list of at most 1000 strings",
                                           "codes"))
        with self.lock:
            held = [dict(self.dossiers[c]) for c in codes if c in self.dossiers]
        return 200, {"dossiers": held}

    def held(self, req):
        answer = self._front(req, "lookups")
        if answer:
            return answer
        code = req.query.get("code", [None])[0]
        with self.lock:
            items = [dict(d) for d in self.dossiers.values() if not code or d["code"] == code]
        return 200, {"dossiers": items}

    def list_pushes(self, req):
        code = req.query.get("code", [None])[0]
        with self.lock:
            items = [dict(p) for p in self.pushes
                     if not code or p["code"] == code or p.get("local_code") == code]
        return 200, {"pushes": items}

    def forget(self, req):
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError) as e:
            return 400, _error("bad_json", "body is not UTF-8 JSON: %s" % e)
        code = body.get("code") if isinstance(body, dict) else None
        if not isinstance(code, str) or not code:
            return 400, _error("invalid", "code is required", "code")
        with self.lock:
            gone = self.dossiers.pop(code, None)
            self.journal.append({"kind": "forget", "code": code})
        self.log("info", "portal: dossier forgotten", dossier=code, held=gone is not None)
        return 200, {"code": code, "forgotten": gone is not None}

    # ---- dossiers submitted on the portal, sent to motcua ----
    def submit(self, req):
        try:
            fields = req.json()
        except (ValueError, UnicodeDecodeError) as e:
            return 400, _error("bad_json", "body is not UTF-8 JSON: %s" % e)
        if not isinstance(fields, dict):
            return 400, _error("bad_json", "a JSON object is required")
        url = fields.get("url") or self.inbound_url
        if "raw" in fields:
            if not isinstance(fields["raw"], str):
                return 400, _error("invalid", "raw is a string", "raw")
            dossier, raw = None, fields["raw"].encode("utf-8")
        else:
            dossier = fields.get("dossier")
            if not isinstance(dossier, dict):
                return 400, _error("invalid", "dossier is an object in the portal's shape",
                                   "dossier")
            dossier = dict(dossier)
            if "national_code" not in dossier:
                with self.lock:
                    self.sequence += 1
                    n = self.sequence
                dossier["national_code"] = "G22.99-%s-%07d" % (
                    time.strftime("%Y%m%d", time.gmtime(time.time() + 7 * 3600)),
                    (int(time.time() * 1000) % 10 ** 5) * 100 + n % 100)
            raw = json.dumps(dossier, ensure_ascii=False).encode("utf-8")
        try:
            ts = int(fields.get("timestamp", int(time.time())))
        except (TypeError, ValueError):
            return 400, _error("invalid", "timestamp is an integer", "timestamp")
        sig = sign(self.secret, ts, raw)
        if fields.get("sign") == "bad":
            sig = sig[:-4] + ("0000" if not sig.endswith("0000") else "1111")
        answer, code = post_signed(url, raw, ts, sig)
        self.switch.count("submitted")
        self.log("info", "portal: dossier sent to motcua", url=url, http=code,
                 national_code=(dossier or {}).get("national_code", "-"))
        return 200, {"status": code, "answer": answer, "dossier": dossier}

    def html(self):
        with self.lock:
            items = list(self.dossiers.values())[-50:]
            pushes = len(self.pushes)
            fail_next = self.fail_next
        st = self.switch.state()
        head = ("<p>Mode: <b>%s</b> (fail next %d); pushes received %d, repeated %d, "
                "refused %d, failed %d; lookups %d; dossiers sent %d.</p>" % (
                    html.escape(st["mode"]), fail_next, pushes, st["repeated"], st["rejected"],
                    st["failed"], st["lookups"], st["submitted"]))
        if not items:
            return head + "<p class=\"muted\">No dossiers yet.</p>"
        rows = "".join("<tr><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%s</td></tr>" % (
            html.escape(d["code"]), html.escape(d.get("local_code") or ""), d["status"], d["seq"],
            html.escape(d["updated_at"])) for d in reversed(items))
        return head + "<table><tr><th>dossier</th><th>motcua code</th><th>status</th>" \
                      "<th>seq</th><th>updated</th></tr>%s</table>" % rows
