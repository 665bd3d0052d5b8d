"""agency_systems.py: stand-ins for the agency systems that receive liên thông
handoffs from interconnect's HTTP/JSON adapter (docs/handoffs.md): the police's
residence registration (cư trú), social insurance (BHXH: health-insurance cards) and
tax.

API (what interconnect is written against):
    POST /agency/residence | /agency/insurance | /agency/tax
        Authorization: Bearer MOTCUA_RESIDENCE_TOKEN | MOTCUA_INSURANCE_TOKEN |
        MOTCUA_TAX_TOKEN, body {handoff_id, dossier, procedure, step, due_at, applicant,
        documents, note, callback_url}: stored and answered 202 {"status": "received"}
        (the answer comes later, by callback). Idempotent by handoff_id: a repeat
        answers as the first time. In "immediate" mode it answers 200
        {"status": "completed", "result": ...} at once; "reject" mode answers 422;
        "down" answers 503.
    GET  /agency/handoffs[?handoff_id=&dossier=]   what was received, oldest first
    DELETE /agency/handoffs                        forget it
    POST /agency/answer  {"handoff_id", "status": "accepted"|"completed"|"rejected",
                          "result"?, "reason"?, "sign"?: "bad", "timestamp"?: N}
        calls the handoff's callback_url with that answer, signed: X-Timestamp (Unix
        seconds), X-Signature = hex HMAC-SHA256 under MOTCUA_AGENCY_WEBHOOK_SECRET over
        "<timestamp>.<raw body>". A completed answer without a result gets one the
        system would give (a residence registration number, a BHYT card number).
        Answers with the callback's status and answer.
    GET  /control/agency    mode and counters
    POST /control/agency    {"mode": "ok" | "immediate" | "reject" | "down" | "slow",
                             "delay_ms": N}
"""

import html
import json
import os
import time

from standin import (OutageSwitch, StandIn, check_bearer, error_body as _error, post_signed,
                     sign)

DEFAULT_SECRET = "sandbox-agency-secret"
SYSTEMS = {  # path -> (token variable, default token, what a completion produces)
    "/agency/residence": ("MOTCUA_RESIDENCE_TOKEN", "sandbox-residence-token",
                          "Số đăng ký thường trú CT-%08d"),
    "/agency/insurance": ("MOTCUA_INSURANCE_TOKEN", "sandbox-insurance-token",
                          "Thẻ BHYT số TE1%012d"),
    "/agency/tax": ("MOTCUA_TAX_TOKEN", "sandbox-tax-token", "Mã số thuế %010d"),
}
ANSWERS = ("accepted", "completed", "rejected")



def validate(body):
    if not isinstance(body, dict):
        return "body", "a JSON object is required"
    if isinstance(body.get("handoff_id"), bool) or not isinstance(body.get("handoff_id"), int):
        return "handoff_id", "handoff_id is required"
    for k in ("dossier", "callback_url"):
        if not isinstance(body.get(k), str) or not body[k]:
            return k, "%s is required" % k
    if not isinstance(body.get("step"), dict):
        return "step", "step is required"
    return None


class AgencySystems(StandIn):
    name = "agency"
    noun = "agency system"
    title = "Agency systems (residence, social insurance, tax)"
    REJECT_LOG = "agency: handoff refused"
    ENDPOINTS = (
        "POST   /agency/residence|insurance|tax  a handoff (Bearer token; 202; idempotent)",
        "GET    /agency/handoffs      handoffs received (?handoff_id=&dossier=)",
        "DELETE /agency/handoffs      forget them",
        "POST   /agency/answer        {handoff_id,status,result?,reason?}: signed callback",
        "GET    /control/agency       mode and counters",
        "POST   /control/agency       {\"mode\":\"ok\"|\"immediate\"|\"reject\"|\"down\"|\"slow\"}",
    )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.secret = os.environ.get("MOTCUA_AGENCY_WEBHOOK_SECRET", DEFAULT_SECRET)
        self.tokens = {p: os.environ.get(env, dflt) for p, (env, dflt, _) in SYSTEMS.items()}
        self.switch = OutageSwitch(("ok", "immediate", "reject", "down", "slow"),
                                   ("attempts", "received", "repeated", "rejected", "answered"),
                                   delay=True)
        self.handoffs = {}  # handoff_id -> record
        for rec in self.journal.list():  # a restarted sandbox still knows its handoffs
            if rec.get("kind") == "handoff":
                self.handoffs[rec["handoff_id"]] = rec
        self.routes = {("POST", p): self._receiver(p) for p in SYSTEMS}
        self.routes.update({
            ("GET", "/agency/handoffs"): self.list,
            ("DELETE", "/agency/handoffs"): self.clear,
            ("POST", "/agency/answer"): self.answer,
            ("GET", "/control/agency"): self.control_get,
            ("POST", "/control/agency"): self.control_set,
        })

    def describe(self):
        return {"agency_systems": ",".join(sorted(SYSTEMS))}

    # ---- receiving handoffs ----
    def _receiver(self, path):
        return lambda req: self.receive(path, req)

    def receive(self, path, req):
        # Like StandIn.admit, with the token of this system.
        mode = self.switch.attempt()
        if mode == "down":
            return self.reject(503, _error("unavailable", "agency system is down (sandbox "
                                           "outage switch)"), {"Retry-After": "1"})
        denied = check_bearer(req, self.tokens[path], self.name)
        if denied:
            return self.reject(*denied)
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError) as e:
            return self.reject(400, _error("bad_json", "body is not UTF-8 JSON: %s" % e))
        problem = validate(body)
        if problem:
            return self.reject(400, _error("invalid", problem[1], problem[0]))
        hid = body["handoff_id"]
        with self.lock:
            old = self.handoffs.get(hid)
            if old is not None:
                self.switch.count("repeated")
                return old["http_status"], old["answer"]
            n = len(self.handoffs) + 1
            if mode == "reject":
                status, answer = 422, {"status": "rejected", "reason":
                                       "hồ sơ không đủ điều kiện (sandbox reject mode)"}
            elif mode == "immediate":
                status, answer = 200, {"status": "completed",
                                       "result": SYSTEMS[path][2] % (int(time.time()) % 10 ** 6
                                                                     * 100 + n)}
            else:
                status, answer = 202, {"status": "received"}
            rec = self.journal.append({"kind": "handoff", "handoff_id": hid, "system": path,
                                       "dossier": body["dossier"], "request": body,
                                       "http_status": status, "answer": answer,
                                       "state": answer["status"]})
            self.handoffs[hid] = rec
            self.switch.count("received")
        self.log("info", "agency: handoff received", system=path, handoff=hid,
                 dossier=body["dossier"], http=status)
        return status, answer

    def list(self, req):
        hid = req.query.get("handoff_id", [None])[0]
        dossier = req.query.get("dossier", [None])[0]
        with self.lock:
            items = [dict(h) for h in self.handoffs.values()]
        if hid:
            items = [h for h in items if str(h["handoff_id"]) == hid]
        if dossier:
            items = [h for h in items if h["dossier"] == dossier]
        return 200, {"handoffs": items}

    def clear(self, req):
        with self.lock:
            self.handoffs.clear()
        return 200, {"deleted": self.journal.clear()}

    # ---- answering later: the signed callback ----
    def answer(self, req):
        try:
            fields = req.json()
        except (ValueError, UnicodeDecodeError) as e:
            return 400, _error("bad_json", "body is not UTF-8 JSON: %s" % e)
        if not isinstance(fields, dict):
            return 400, _error("bad_json", "a JSON object is required")
        status = fields.get("status")
        if status not in ANSWERS:
            return 400, _error("invalid", "status must be one of " + "|".join(ANSWERS), "status")
        with self.lock:
            rec = self.handoffs.get(fields.get("handoff_id"))
        if rec is None:
            return 404, _error("not_found", "no such handoff", "handoff_id")
        event = {"status": status}
        if status == "completed":
            event["result"] = fields.get("result") or SYSTEMS[rec["system"]][2] % (
                int(time.time()) % 10 ** 6 * 100 + rec["handoff_id"] % 100)
        if status == "rejected" or fields.get("reason"):
            event["reason"] = fields.get("reason") or "hồ sơ không hợp lệ"
        raw = json.dumps(event, ensure_ascii=False).encode("utf-8")
        try:
            ts = int(fields.get("timestamp", int(time.time())))
        except (TypeError, ValueError):
            return 400, _error("invalid", "timestamp is an integer", "timestamp")
        sig = sign(self.secret, ts, raw)
        if fields.get("sign") == "bad":
            sig = sig[:-4] + ("0000" if not sig.endswith("0000") else "1111")
        reply, code = post_signed(rec["request"]["callback_url"], raw, ts, sig)
        if code == 200:
            with self.lock:
                rec["state"] = status
        self.switch.count("answered")
        self.journal.append({"kind": "callback", "handoff_id": rec["handoff_id"],
                             "event": event, "http_status": code, "answer": reply})
        self.log("info", "agency: callback sent", handoff=rec["handoff_id"], status=status,
                 http=code)
        return 200, {"callback_status": code, "answer": reply, "event": event}


    def html(self):
        with self.lock:
            items = list(self.handoffs.values())[-50:]
        st = self.switch.state()
        head = "<p>Mode: <b>%s</b>; received %d, repeated %d, refused %d, answered %d.</p>" % (
            html.escape(st["mode"]), st["received"], st["repeated"], st["rejected"],
            st["answered"])
        if not items:
            return head + "<p class=\"muted\">No handoffs yet.</p>"
        rows = "".join("<tr><td>%d</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
            h["handoff_id"], html.escape(h["system"]), html.escape(h["dossier"]),
            html.escape(h.get("state", ""))) for h in reversed(items))
        return head + "<table><tr><th>handoff</th><th>system</th><th>dossier</th>" \
                      "<th>state</th></tr>%s</table>" % rows
