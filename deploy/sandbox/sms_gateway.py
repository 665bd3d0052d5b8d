"""sms_gateway.py: a stand-in for the SMS gateway (brand-name SMS API) notify calls.

API (what notify is written against):
    POST /sms/send
    Authorization: Bearer <token>
    {"to": "+84912345678", "text": "...", "ref": "optional client reference"}
    -> 200 {"id": "sms-<n>", "status": "accepted"}
       400 bad JSON or a missing/invalid field, 401 wrong or missing token,
       503 while the outage switch says "down".
Errors use the suite's shape: {"error": {"code", "message", "field"}}.

Test controls:
    POST /control/sms {"mode": "ok" | "down" | "slow", "delay_ms": 5000}
        ok: normal; down: every send answers 503 with Retry-After; slow: every send
        waits delay_ms (default 5000) before being handled, to trip client timeouts.
    GET  /control/sms -> the mode and counters (attempts, accepted, rejected).

Design: handlers run on the HTTP server's threads; a slow send sleeps on its own
thread. The mode and counters are guarded by one lock, the journal by its own.
Each accepted message records its encoding and segment count the way an operator
bills them: GSM 03.38 (160 characters, 153 per part) or, for Vietnamese with
diacritics, UCS-2 (70, 67 per part).
"""

import html
import re

from standin import OutageSwitch, StandIn

E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
MAX_TEXT = 1600  # characters; about 24 UCS-2 parts, more than any notice needs
MAX_REF = 128
DOSSIER_CODE = re.compile(r"\b[0-9A-Z][0-9A-Z.]*-\d{8}-\d{4,}\b")

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXT = set("^{}\\[~]|€\f")


def segments(text):
    """(encoding, number of SMS parts) for text."""
    if all(c in GSM7_BASIC or c in GSM7_EXT for c in text):
        units = sum(2 if c in GSM7_EXT else 1 for c in text)
        return "gsm7", 1 if units <= 160 else -(-units // 153)
    units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)  # UTF-16 code units
    return "ucs2", 1 if units <= 70 else -(-units // 67)


class SmsGateway(StandIn):
    name = "sms"
    noun = "SMS"
    title = "SMS sent (SMS gateway)"
    REJECT_LOG = "sms rejected"
    ENDPOINTS = (
        "POST   /sms/send              send an SMS: {\"to\",\"text\",\"ref\"}, Bearer token",
        "GET    /sms/messages          SMS accepted, oldest first (?to=+84... filters)",
        "DELETE /sms/messages          forget them (and empty sms.jsonl)",
        "GET    /control/sms           outage switch and counters",
        "POST   /control/sms           {\"mode\":\"ok\"|\"down\"|\"slow\",\"delay_ms\":N}",
    )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.token = ctx.config["MOTCUA_SANDBOX_SMS_TOKEN"]
        self.switch = OutageSwitch(("ok", "down", "slow"), ("attempts", "accepted", "rejected"),
                                   delay=True)
        self.routes = {
            ("POST", "/sms/send"): self.send,
            ("GET", "/sms/messages"): self.list,
            ("HEAD", "/sms/messages"): self.list,
            ("DELETE", "/sms/messages"): self.clear,
            ("GET", "/control/sms"): self.control_get,
            ("POST", "/control/sms"): self.control_set,
        }

    # ---- the gateway API ----
    def send(self, req):
        body, refused = self.admit(req, "SMS gateway is down (sandbox outage switch)", validate)
        if refused:
            return refused
        encoding, parts = segments(body["text"])
        rec = self.journal.append({"to": body["to"], "text": body["text"], "ref": body.get("ref"),
                                   "encoding": encoding, "segments": parts, "client": req.client})
        self.switch.count("accepted")
        m = DOSSIER_CODE.search(body["text"])
        self.log("info", "sms accepted", id=rec["id"], to=rec["to"], ref=rec["ref"],
                 segments=parts, dossier=m.group(0) if m else None)
        return 200, {"id": rec["id"], "status": "accepted"}

    # ---- inspection ----
    def list(self, req):
        msgs = self.journal.list()
        to = req.query.get("to", [None])[0]
        if to:
            msgs = [m for m in msgs if m["to"] == to]
        return 200, msgs

    def clear(self, req):
        n = self.journal.clear()
        self.log("info", "sms messages cleared", count=n)
        return 200, {"deleted": n}

    def html(self):
        st = self.switch.state()
        head = ("<p>Mode: <b>%s</b>%s; attempts %d, accepted %d, rejected %d. JSON: "
                "<a href=\"/sms/messages\">/sms/messages</a>, "
                "<a href=\"/control/sms\">/control/sms</a>.</p>") % (
            html.escape(st["mode"]), " (%d ms)" % st["delay_ms"] if st["mode"] == "slow" else "",
            st["attempts"], st["accepted"], st["rejected"])
        msgs = self.journal.list()
        if not msgs:
            return head + "<p class=\"muted\">No SMS yet.</p>"
        rows = [head, "<table><tr><th>id</th><th>received</th><th>to</th><th>ref</th>"
                "<th>parts</th><th>text</th></tr>"]
        for m in reversed(msgs):
            rows.append("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                        "<td><pre>%s</pre></td></tr>" % tuple(html.escape(str(v)) for v in (
                            m.get("id"), m.get("received_at"), m.get("to"), m.get("ref") or "",
                            "%s %s" % (m.get("segments"), m.get("encoding")), m.get("text"))))
        rows.append("</table>")
        return "".join(rows)


def validate(body):
    """(field, problem) for the first thing wrong with a send request, or None."""
    if not isinstance(body, dict):
        return None, "body must be a JSON object"
    to = body.get("to")
    if not isinstance(to, str) or not to:
        return "to", "to is required: a phone number in E.164 form (+84...)"
    if not E164.match(to):
        return "to", "to must be in E.164 form, e.g. +84912345678"
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return "text", "text is required and must not be empty"
    if len(text) > MAX_TEXT:
        return "text", "text is longer than %d characters" % MAX_TEXT
    ref = body.get("ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > MAX_REF):
        return "ref", "ref must be a string of at most %d characters" % MAX_REF
    return None
