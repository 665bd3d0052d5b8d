"""Results returned by post, end to end, on the real services (intake, routing, postal,
notify), a private PostgreSQL and the sandbox's carrier (deploy/sandbox/carrier.py):
a dossier with return by post walked by an officer to result_ready becomes a shipment
created once at the carrier, the applicant is told "shipped" with the tracking number,
the carrier's signed webhooks move it to delivered and routing marks the dossier
RETURNED; a second one fails three times, the last final, and comes back to the
counter with a "delivery_failed" notice. Then bad webhooks (forged, stale, unknown,
garbage, replayed), the carrier down, postal SIGKILLed while the carrier is slow, and
the postal intake handover (a batch with one bad item, sent twice; postal's own key at
intake missing or refused: the items wait for the carrier's next try).

Run: cd tests/system && /usr/bin/python3 run.py test_postal"""
import hashlib
import hmac
import json
import time
import unittest
import urllib.error
import urllib.request
import uuid

import harness

WARD = "000.00.31.H99"  # Phường Đông Hưng: its desk and civil-status officer are below it
DESK = "000.01.31.H99"  # the ward's one-stop desk, which receives PROCEDURE's dossiers
PROCEDURE = "2.000635"  # Cấp bản sao Trích lục hộ tịch: returned by post on request
DOCS = [{"kind": "to_khai_cap_ban_sao_trich_luc", "name": "Tờ khai"}]
SECRET = "sandbox-carrier-webhook-secret"
TOKEN = "sandbox-carrier-token"
ADDRESS = "Số 1 Đường Lê Lợi, phường Đông Hưng"


def sign(ts, raw, secret=SECRET):
    """Written from docs/postal.md: hex HMAC-SHA256 over "<timestamp>.<raw body>"."""
    return hmac.new(secret.encode(), str(ts).encode() + b"." + raw, hashlib.sha256).hexdigest()


class Suite(harness.Suite):
    @classmethod
    def start(cls):
        cls.pg = harness.Postgres()
        cls.svc = {}
        cls.sandbox = None
        try:
            cls.db = cls.pg.database()
            # postal's key at intake (MOTCUA_POSTAL_INTAKE_KEY), before postal starts.
            cls.postal_key = harness.create_api_key(cls.db, "postal-intake", "integrator")["key"]
            env = harness.suite_env(cls.db)
            postal_url = "http://127.0.0.1:%s" % env["MOTCUA_POSTAL_HTTP_PORT"]
            cls.logs = harness.tempfile.mkdtemp(prefix="motcua-postal-")
            cls.sandbox = harness.Sandbox("", {
                "MOTCUA_CARRIER_WEBHOOK_URL": postal_url + "/v1/postal/webhook",
                "MOTCUA_CARRIER_TOKEN": TOKEN, "MOTCUA_CARRIER_WEBHOOK_SECRET": SECRET},
                log_dir=cls.logs).start()
            env.update(MOTCUA_CARRIER_URL=cls.sandbox.url("/carrier"),
                       MOTCUA_CARRIER_TOKEN=TOKEN, MOTCUA_CARRIER_WEBHOOK_SECRET=SECRET,
                       MOTCUA_INTAKE_URL="http://127.0.0.1:%s" % env["MOTCUA_INTAKE_HTTP_PORT"],
                       MOTCUA_POSTAL_TICK_MS="200", MOTCUA_POSTAL_BACKOFF_MS="300",
                       MOTCUA_POSTAL_TIMEOUT_MS="2000", MOTCUA_POSTAL_LEASE_MS="3500",
                       MOTCUA_POSTAL_INTAKE_KEY=cls.postal_key)
            cls.env = env
            harness.start_services(cls.svc, ("intake", "routing", "postal", "notify"),
                                   env, log_dir=cls.logs)
            cls.officer = harness.create_api_key(cls.db, "ward", "officer", WARD)["key"]
            cls.desk = harness.create_api_key(cls.db, "desk", "officer", DESK)["key"]
            cls.operator = harness.create_api_key(cls.db, "operator", "operator")["key"]
            cls.integrator = harness.create_api_key(cls.db, "vnpost", "integrator")["key"]
        except Exception:
            cls.stop()
            raise
        return cls


setUpModule, tearDownModule = Suite.module_hooks()


class Postal(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.s = Suite
        cls.intake, cls.routing = Suite.svc["intake"], Suite.svc["routing"]
        cls.postal = Suite.svc["postal"]
        cls.carrier = Suite.sandbox.base

    # ------------------------------------------------------------ helpers

    def sql(self, q):
        return self.s.pg.sql(q, self.s.db)

    def submit(self, phone="0912345670"):
        body = {"procedure": PROCEDURE, "channel": "direct",
                "applicant": {"name": "Phạm Thị E", "phone": phone, "email": "e@example.vn"},
                "documents": DOCS, "return_method": "post", "delivery_address": ADDRESS}
        status, a = harness.http("POST", self.intake.url("/v1/dossiers"), body,
                                 {"Idempotency-Key": str(uuid.uuid4()),
                                  "Authorization": "Bearer " + self.s.desk})
        self.assertEqual(status, 201, a)
        code = a["code"]
        harness.wait_for(lambda: self.case(code), what="the case of " + code)
        return code

    def case(self, code):
        return harness.case(self.routing, self.s.operator, code)

    def walk(self, code):
        for action in ("forward", "forward", "approve", "result_ready"):
            status, body = harness.http(
                "POST", self.routing.url("/v1/dossiers/%s/actions" % code),
                {"action": action, "officer": "Trần Thị B"},
                {"Authorization": "Bearer " + self.s.officer})
            self.assertEqual(status, 200, body)

    def shipment(self, code):
        row = self.sql("SELECT state || '|' || coalesce(tracking_number, '') FROM postal.shipments"
                       " WHERE code = '%s'" % code)
        return tuple(row.split("|")) if row else None

    def wait_created(self, code, timeout=30):
        return harness.wait_for(lambda: (lambda s: s[1] if s and s[0] == "created" else None)(
            self.shipment(code)), timeout=timeout, what="the shipment of %s created" % code)

    def carrier_shipments(self, code):
        status, body = harness.http("GET", self.carrier + "/carrier/shipments?reference=" + code)
        self.assertEqual(status, 200, body)
        return body["shipments"]

    def carrier_mode(self, mode, delay_ms=0):
        status, body = harness.http("POST", self.carrier + "/control/carrier",
                                    {"mode": mode, "delay_ms": delay_ms})
        self.assertEqual(status, 200, body)
        return body

    def advance(self, tracking, status, **extra):
        st, body = harness.http("POST", self.carrier + "/carrier/advance",
                                dict(tracking_number=tracking, status=status, **extra), timeout=40)
        self.assertEqual(st, 200, body)
        return body["webhook_status"], body["answer"]

    def notifications(self, code):
        out = self.sql("SELECT event || '|' || params::text FROM notify.notifications"
                       " WHERE code = '%s' ORDER BY id" % code)
        return [(l.split("|", 1)[0], json.loads(l.split("|", 1)[1])) for l in out.splitlines()
                if l]

    def wait_notified(self, code, event):
        return harness.wait_for(lambda: [p for e, p in self.notifications(code) if e == event],
                                timeout=30, what="%s notification of %s" % (event, code))

    def webhook(self, raw, ts=None, signature=None, headers=None):
        ts = int(time.time()) if ts is None else ts
        h = {"Content-Type": "application/json", "X-Timestamp": str(ts),
             "X-Signature": signature or sign(ts, raw)}
        h.update(headers or {})
        for k in [k for k, v in h.items() if v is None]:
            del h[k]
        req = urllib.request.Request(self.postal.url("/v1/postal/webhook"), data=raw,
                                     method="POST", headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    # ------------------------------------------------------------ the walks

    def test_a_shipped_and_delivered(self):
        code = self.submit()
        self.walk(code)
        tracking = self.wait_created(code)
        at_carrier = self.carrier_shipments(code)
        self.assertEqual(len(at_carrier), 1, at_carrier)
        self.assertEqual(at_carrier[0]["tracking_number"], tracking)
        req = at_carrier[0]["request"]
        self.assertEqual(req["reference"], code)
        self.assertEqual(req["receiver"]["address"], ADDRESS)
        self.assertEqual(req["receiver"]["name"], "Phạm Thị E")
        self.assertEqual(req["parcel"]["content"], "Kết quả giải quyết TTHC")
        shipped = self.wait_notified(code, "shipped")
        self.assertEqual(len(shipped), 1)
        self.assertEqual(shipped[0]["tracking"], tracking)

        for status in ("picked_up", "in_transit"):
            self.assertEqual(self.advance(tracking, status)[0], 200)
            self.assertEqual(self.shipment(code), (status, tracking))
        http, answer = self.advance(tracking, "delivered")
        self.assertEqual((http, answer["verdict"]), (200, "applied"), answer)
        case = harness.wait_case_state(self.routing, self.s.operator, code, "RETURNED",
                                       what="RETURNED")
        self.assertIn("result delivered by post, tracking " + tracking, case["events"][-1]["note"])
        delivered = self.wait_notified(code, "delivered")
        self.assertEqual(delivered[0]["tracking"], tracking)
        # A late in_transit after delivery changes nothing.
        http, answer = self.advance(tracking, "in_transit")
        self.assertEqual((http, answer["verdict"], answer["state"]), (200, "ignored", "delivered"))
        self.assertEqual(self.sql("SELECT count(*) FROM postal.outbox WHERE dossier_code = '%s'"
                                  " AND type = 'ResultDelivered'" % code), "1")
        self.assertEqual(len(self.carrier_shipments(code)), 1)
        self.assertEqual(len([e for e, _ in self.notifications(code) if e == "shipped"]), 1)

    def test_b_delivery_failed(self):
        code = self.submit(phone="0912345671")
        self.walk(code)
        tracking = self.wait_created(code)
        self.assertEqual(self.advance(tracking, "picked_up")[0], 200)
        for attempt in (1, 2):
            http, answer = self.advance(tracking, "failed_attempt", attempt=attempt,
                                        reason="không có người nhận")
            self.assertEqual((http, answer["verdict"]), (200, "applied"), answer)
        http, answer = self.advance(tracking, "failed_attempt", attempt=3, final=True,
                                    reason="không liên lạc được người nhận")
        self.assertEqual((http, answer["verdict"]), (200, "applied"), answer)
        case = harness.wait_for(lambda: (lambda c: c if any(
            "delivery failed for good" in e["note"] for e in c["events"]) else None)(
            self.case(code)), what="the final failure recorded by routing")
        notes = [e["note"] for e in case["events"]]
        self.assertEqual(sum("a delivery attempt failed" in n for n in notes), 2, notes)
        failed = self.wait_notified(code, "delivery_failed")
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["tracking"], tracking)
        # Nothing moves a shipment that ended.
        http, answer = self.advance(tracking, "delivered")
        self.assertEqual((http, answer["verdict"]), (200, "ignored"))
        self.assertEqual(self.sql("SELECT count(*) FROM postal.outbox WHERE dossier_code = '%s'"
                                  " AND type = 'DeliveryFailed'" % code), "3")

    def test_c_bad_webhooks(self):
        tracking = "EBTEST%06dVN" % (int(time.time()) % 1000000)
        self.sql("INSERT INTO postal.shipments (code, delivery_address, recipient, state,"
                 " tracking_number) VALUES ('TEST-%s', 'x', '{}', 'created', '%s')"
                 % (tracking, tracking))
        raw = json.dumps({"tracking_number": tracking, "status": "picked_up", "attempt": 1,
                          "final": False, "reason": "", "at": "2026-01-01T00:00:00Z"}).encode()
        # Forged (by the sandbox, and by hand), stale, missing headers: 401.
        http, answer = self.advance(tracking, "picked_up", sign="bad")
        self.assertEqual(http, 401, answer)
        self.assertEqual(self.webhook(raw, signature=sign(int(time.time()), raw, "wrong"))[0], 401)
        old = int(time.time()) - 1000
        self.assertEqual(self.webhook(raw, ts=old)[0], 401)
        self.assertEqual(self.advance(tracking, "picked_up", timestamp=old)[0], 401)
        self.assertEqual(self.webhook(raw, headers={"X-Signature": None})[0], 401)
        self.assertEqual(self.shipment("TEST-" + tracking), ("created", tracking))
        self.assertIn("bad signature", self.postal.log())
        self.assertIn("stale timestamp", self.postal.log())
        # Unknown tracking number: 404; garbage and bad fields: 400.
        unknown = raw.replace(tracking.encode(), b"EB000000000VN")
        self.assertEqual(self.webhook(unknown)[0], 404)
        self.assertEqual(self.webhook(b"{not json")[0], 400)
        self.assertEqual(self.webhook(raw.replace(b"picked_up", b"teleported"))[0], 400)
        self.assertEqual(self.webhook(b'{"status": "delivered"}')[0], 400)
        # The real event, then the very same request replayed: 200, no change.
        ts = int(time.time())
        status, answer = self.webhook(raw, ts=ts)
        self.assertEqual((status, answer["verdict"]), (200, "applied"), answer)
        status, answer = self.webhook(raw, ts=ts)
        self.assertEqual((status, answer["verdict"]), (200, "ignored"), answer)
        self.assertEqual(self.shipment("TEST-" + tracking), ("picked_up", tracking))
        log = self.sql("SELECT string_agg(verdict, ',' ORDER BY id) FROM postal.tracking_events"
                       " WHERE tracking_number IN ('%s', 'EB000000000VN')" % tracking)
        self.assertEqual(log, "unknown,applied,ignored")

    def test_d_carrier_down(self):
        self.carrier_mode("down")
        try:
            code = self.submit(phone="0912345672")
            self.walk(code)
            harness.wait_for(lambda: int(self.sql(
                "SELECT tries FROM postal.shipments WHERE code = '%s'" % code) or 0) >= 2,
                timeout=30, what="two tries while the carrier is down")
            self.assertEqual(self.shipment(code), ("requested", ""))
            self.assertIn("503", self.sql("SELECT last_error FROM postal.shipments"
                                          " WHERE code = '%s'" % code))
        finally:
            self.carrier_mode("ok")
        tracking = self.wait_created(code)
        self.assertEqual([s["tracking_number"] for s in self.carrier_shipments(code)], [tracking])
        self.assertEqual(len(self.wait_notified(code, "shipped")), 1)

    def test_e_postal_killed_while_carrier_slow(self):
        before = harness.http("GET", self.carrier + "/control/carrier")[1]["attempts"]
        self.carrier_mode("slow", 2500)
        try:
            code = self.submit(phone="0912345673")
            self.walk(code)
            harness.wait_for(lambda: harness.http("GET", self.carrier + "/control/carrier")[1]
                             ["attempts"] > before, timeout=30, what="postal calling the carrier")
            self.postal.kill()  # the carrier is still working on it
        finally:
            self.carrier_mode("ok")
        harness.wait_for(lambda: self.carrier_shipments(code), timeout=10,
                         what="the carrier made the shipment")
        self.assertEqual(self.shipment(code), ("requested", ""))  # postal never recorded it
        self.postal.start()
        tracking = self.wait_created(code)
        at_carrier = self.carrier_shipments(code)
        self.assertEqual([s["tracking_number"] for s in at_carrier], [tracking])
        time.sleep(1)
        self.assertEqual(len(self.wait_notified(code, "shipped")), 1)

    def test_f_postal_intake(self):
        def dossier(name, phone):
            return {"procedure": PROCEDURE, "channel": "direct",
                    "applicant": {"name": name, "phone": phone, "email": "p@example.vn"},
                    "documents": DOCS, "return_method": "counter"}
        batch_id = "BATCH-" + uuid.uuid4().hex[:8]
        refs = ["%s-%d" % (batch_id, i) for i in range(3)]
        bad = dossier("Ngô Văn G", "0912345675")
        del bad["applicant"]
        batch = {"carrier_reference_batch": batch_id, "items": [
            {"carrier_reference": refs[0], "dossier": dossier("Đỗ Thị F", "0912345674")},
            {"carrier_reference": refs[1], "dossier": bad},
            {"carrier_reference": refs[2], "dossier": dossier("Vũ Văn H", "0912345676")}]}
        url = self.postal.url("/v1/postal/intake")
        self.assertEqual(harness.http("POST", url, batch)[0], 401)
        status, _ = harness.http("POST", url, batch, {"Authorization": "Bearer " + self.s.officer})
        self.assertEqual(status, 403)
        status, a = harness.http("POST", url, batch,
                                 {"Authorization": "Bearer " + self.s.integrator}, timeout=30)
        self.assertEqual(status, 200, a)
        items = a["items"]
        self.assertEqual([i["carrier_reference"] for i in items], refs)
        self.assertEqual([i["status"] for i in items], [201, 400, 201], items)
        self.assertIn("error", items[1])
        codes = [items[0]["code"], items[2]["code"]]
        channels = self.sql("SELECT string_agg(channel, ',') FROM intake.dossiers"
                            " WHERE code IN ('%s', '%s')" % tuple(codes))
        self.assertEqual(channels, "postal,postal")
        count = self.sql("SELECT count(*) FROM intake.dossiers")
        # The same batch again (an operator key this time): answered from the record.
        status, again = harness.http("POST", url, batch,
                                     {"Authorization": "Bearer " + self.s.operator}, timeout=30)
        self.assertEqual(status, 200, again)
        self.assertEqual(again["items"], items)
        self.assertEqual(self.sql("SELECT count(*) FROM intake.dossiers"), count)
        self.assertEqual(self.sql("SELECT count(*) FROM postal.intake_items WHERE batch = '%s'"
                                  % batch_id), "3")
        # A bad batch as a whole: 400.
        status, _ = harness.http("POST", url, {"items": []},
                                 {"Authorization": "Bearer " + self.s.integrator})
        self.assertEqual(status, 400)

    def restart_postal(self, intake_key):
        self.postal.terminate()
        self.postal.env = dict(self.s.env, MOTCUA_POSTAL_INTAKE_KEY=intake_key)
        self.postal.start()

    def test_g_postal_intake_key(self):
        # Intake takes postal's dossiers only with postal's key. Missing, unknown or of a
        # scope that may not submit by post, the fault is ours: every item answers 503
        # and is not recorded, and the carrier's next try goes through once it is right.
        portal = harness.create_api_key(self.s.db, "portal", "citizen_portal")["key"]
        batch_id = "KEY-" + uuid.uuid4().hex[:8]
        batch = {"carrier_reference_batch": batch_id, "items": [
            {"carrier_reference": batch_id + "-0", "dossier": {
                "procedure": PROCEDURE, "channel": "postal", "documents": DOCS,
                "applicant": {"name": "Lý Thị K", "phone": "0912345677"}}}]}
        url = self.postal.url("/v1/postal/intake")
        auth = {"Authorization": "Bearer " + self.s.integrator}
        count = self.sql("SELECT count(*) FROM intake.dossiers")
        try:
            for key, why in (("", "MOTCUA_POSTAL_INTAKE_KEY is not set"),
                             ("mck_" + "0" * 64, "HTTP 401"), (portal, "HTTP 403")):
                self.restart_postal(key)
                status, a = harness.http("POST", url, batch, auth, timeout=30)
                self.assertEqual(status, 200, a)
                item = a["items"][0]
                self.assertEqual((item["status"], item["error"]["code"]), (503, "unavailable"),
                                 item)
                self.assertIn(why, item["error"]["message"])
                self.assertEqual(self.sql("SELECT count(*) FROM postal.intake_items"
                                          " WHERE batch = '%s'" % batch_id), "0")
                if not key:
                    self.assertIn("MOTCUA_POSTAL_INTAKE_KEY is not set", self.postal.log())
            self.assertEqual(self.sql("SELECT count(*) FROM intake.dossiers"), count)
        finally:
            self.restart_postal(self.s.postal_key)
        status, a = harness.http("POST", url, batch, auth, timeout=30)
        self.assertEqual(status, 200, a)
        self.assertEqual(a["items"][0]["status"], 201, a)
        self.assertEqual(self.sql("SELECT channel FROM intake.dossiers WHERE code = '%s'"
                                  % a["items"][0]["code"]), "postal")


if __name__ == "__main__":
    unittest.main()
