"""carrier.py: a stand-in for the postal carrier's API (VNPost style JSON), for postal.

API (what postal is written against, docs/postal.md):
    POST /carrier/shipments   Authorization: Bearer MOTCUA_CARRIER_TOKEN
        {"reference", "sender": {...}, "receiver": {"name", "phone", "address"},
         "parcel": {"weight_g", "content"}, "cod_amount"}
        creates a shipment and answers 201 {"tracking_number", "fee", "reference"}.
        Idempotent by reference: the same reference answers 200 with the shipment
        already made (so a client that crashed before recording it never makes two).
        503 while the outage switch says "down"; "slow" waits delay_ms first.
    GET  /carrier/shipments[?reference=]   the shipments made, oldest first
    DELETE /carrier/shipments              forget them
    POST /carrier/advance  {"tracking_number", "status", "final"?, "attempt"?, "reason"?,
                            "sign"?: "bad", "timestamp"?: N}   (GET with a query too)
        moves a shipment and calls postal's webhook (MOTCUA_CARRIER_WEBHOOK_URL),
        signed: X-Timestamp (Unix seconds) and X-Signature = hex HMAC-SHA256 under
        MOTCUA_CARRIER_WEBHOOK_SECRET over "<timestamp>.<raw body>". Answers with
        the webhook's status and answer. sign=bad forges the signature; timestamp
        sends another time (to test staleness).
    GET  /control/carrier     outage switch and counters
    POST /control/carrier     {"mode": "ok" | "down" | "slow", "delay_ms": N}

Design: handlers run on the HTTP server's threads (a slow create sleeps on its own);
shipments are kept in memory under a lock and in the journal, which a restarted
sandbox loads back.
"""

import html
import json
import os
import time

from standin import OutageSwitch, StandIn, error_body as _error, post_signed, sign

DEFAULT_TOKEN = "sandbox-carrier-token"
DEFAULT_SECRET = "sandbox-carrier-webhook-secret"
DEFAULT_WEBHOOK_URL = "http://127.0.0.1:8084/v1/postal/webhook"
STATUSES = ("picked_up", "in_transit", "delivered", "failed_attempt", "returned_to_sender")



def validate(body):
    """(field, message) of the first problem, or None."""
    if not isinstance(body, dict):
        return "body", "a JSON object is required"
    ref = body.get("reference")
    if not isinstance(ref, str) or not 0 < len(ref) <= 80:
        return "reference", "reference is required"
    rc = body.get("receiver")
    if not isinstance(rc, dict):
        return "receiver", "receiver is required"
    for k in ("name", "address"):
        if not isinstance(rc.get(k), str) or not rc.get(k).strip():
            return "receiver." + k, "receiver.%s is required" % k
    parcel = body.get("parcel")
    if not isinstance(parcel, dict) or not isinstance(parcel.get("weight_g"), int) \
            or parcel["weight_g"] <= 0:
        return "parcel.weight_g", "parcel.weight_g must be a positive integer"
    cod = body.get("cod_amount", 0)
    if isinstance(cod, bool) or not isinstance(cod, int) or cod < 0:
        return "cod_amount", "cod_amount must be a non-negative integer"
    return None


class Carrier(StandIn):
    name = "carrier"
    noun = "carrier"
    title = "Postal carrier (VNPost style)"
    REJECT_LOG = "carrier: create rejected"
    ENDPOINTS = (
        "POST   /carrier/shipments     create a shipment (Bearer token; idempotent by reference)",
        "GET    /carrier/shipments     shipments made, oldest first (?reference=)",
        "DELETE /carrier/shipments     forget them",
        "POST   /carrier/advance       {tracking_number,status,final?,attempt?}: signed webhook",
        "GET    /control/carrier       outage switch and counters",
        "POST   /control/carrier       {\"mode\":\"ok\"|\"down\"|\"slow\",\"delay_ms\":N}",
    )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.token = os.environ.get("MOTCUA_CARRIER_TOKEN", DEFAULT_TOKEN)
        self.secret = os.environ.get("MOTCUA_CARRIER_WEBHOOK_SECRET", DEFAULT_SECRET)
        self.webhook_url = os.environ.get("MOTCUA_CARRIER_WEBHOOK_URL", DEFAULT_WEBHOOK_URL)
        self.switch = OutageSwitch(("ok", "down", "slow"),
                                   ("attempts", "created", "repeated", "rejected"), delay=True)
        self.shipments = {}  # reference -> shipment
        for rec in self.journal.list():  # a restarted sandbox still knows its shipments
            if rec.get("kind") == "shipment":
                self.shipments[rec["reference"]] = rec
        self.routes = {
            ("POST", "/carrier/shipments"): self.create,
            ("GET", "/carrier/shipments"): self.list,
            ("DELETE", "/carrier/shipments"): self.clear,
            ("POST", "/carrier/advance"): self.advance,
            ("GET", "/carrier/advance"): self.advance,
            ("GET", "/control/carrier"): self.control_get,
            ("POST", "/control/carrier"): self.control_set,
        }

    def describe(self):
        return {"carrier_webhook": self.webhook_url}

    # ---- the shipments API ----
    def create(self, req):
        body, refused = self.admit(req, "carrier is down (sandbox outage switch)", validate)
        if refused:
            return refused
        ref = body["reference"]
        with self.lock:
            old = self.shipments.get(ref)
            if old is not None:
                self.switch.count("repeated")
                return 200, {"tracking_number": old["tracking_number"], "fee": old["fee"],
                             "reference": ref}
            n = len(self.shipments) + 1
            tracking = "EB%09dVN" % (int(time.time()) % 100000 * 10000 + n)
            fee = 25000 + 5000 * (body["parcel"]["weight_g"] // 500)
            rec = self.journal.append({"kind": "shipment", "reference": ref,
                                       "tracking_number": tracking, "fee": fee,
                                       "status": "created", "request": body})
            self.shipments[ref] = rec
            self.switch.count("created")
        self.log("info", "carrier: shipment created", dossier=ref, tracking=tracking, fee=fee)
        return 201, {"tracking_number": tracking, "fee": fee, "reference": ref}

    def list(self, req):
        ref = req.query.get("reference", [None])[0]
        with self.lock:
            items = [dict(s) for s in self.shipments.values()]
        if ref:
            items = [s for s in items if s["reference"] == ref]
        return 200, {"shipments": items}

    def clear(self, req):
        with self.lock:
            self.shipments.clear()
        return 200, {"deleted": self.journal.clear()}

    # ---- tracking events: the webhook postal receives ----
    def advance(self, req):
        fields = {k: v[0] for k, v in req.query.items()}
        if req.method == "POST" and req.body:
            try:
                body = req.json()
            except (ValueError, UnicodeDecodeError) as e:
                return 400, _error("bad_json", "body is not UTF-8 JSON: %s" % e)
            if not isinstance(body, dict):
                return 400, _error("bad_json", "a JSON object is required")
            fields.update(body)
        tracking, status = fields.get("tracking_number"), fields.get("status")
        if status not in STATUSES:
            return 400, _error("invalid", "status must be one of " + "|".join(STATUSES), "status")
        with self.lock:
            ship = next((s for s in self.shipments.values()
                         if s["tracking_number"] == tracking), None)
        final = fields.get("final", False)
        if isinstance(final, str):
            final = final.lower() in ("1", "true", "yes")
        try:
            attempt = int(fields.get("attempt", 1))
            ts = int(fields.get("timestamp", int(time.time())))
        except (TypeError, ValueError):
            return 400, _error("invalid", "attempt and timestamp are integers")
        event = {"tracking_number": tracking, "status": status, "attempt": attempt,
                 "final": bool(final), "reason": str(fields.get("reason", "")),
                 "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        raw = json.dumps(event, ensure_ascii=False).encode("utf-8")
        sig = sign(self.secret, ts, raw)
        if fields.get("sign") == "bad":
            sig = sig[:-4] + ("0000" if not sig.endswith("0000") else "1111")
        answer, code = post_signed(self.webhook_url, raw, ts, sig)
        if ship is not None and code == 200:
            with self.lock:
                ship["status"] = status
        self.journal.append({"kind": "webhook", "event": event, "http_status": code,
                             "answer": answer})
        self.log("info", "carrier: webhook sent", tracking=tracking, status=status, http=code)
        return 200, {"webhook_status": code, "answer": answer, "event": event}


    def html(self):
        with self.lock:
            items = list(self.shipments.values())[-50:]
        st = self.switch.state()
        head = "<p>Mode: <b>%s</b>; created %d, repeated %d, rejected %d.</p>" % (
            html.escape(st["mode"]), st["created"], st["repeated"], st["rejected"])
        if not items:
            return head + "<p class=\"muted\">No shipments yet.</p>"
        rows = "".join("<tr><td>%s</td><td>%s</td><td>%s</td></tr>" % (
            html.escape(s["reference"]), html.escape(s["tracking_number"]),
            html.escape(s.get("status", ""))) for s in reversed(items))
        return head + "<table><tr><th>reference</th><th>tracking</th><th>status</th></tr>%s" \
                      "</table>" % rows
