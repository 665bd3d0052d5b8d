"""Money, post and messages end to end (issue 5, "Not done until"): all six services
(intake, routing, interconnect, payment, postal, notify), a private PostgreSQL and the
sandbox (bank gateway, carrier, SMTP sink, SMS gateway, chat webhook) on free ports,
each pointing at the others: payment's IPN URL and the carrier's webhook URL at the
services, notify's SMTP/SMS/chat URLs at the sandbox.

The dossier is a level-4 procedure with a fee and return by post, 2.000635 "Cấp bản sao
Trích lục hộ tịch" (8 000 đồng), submitted online by an applicant with e-mail and phone.

1. happy path: submit → desk receives → AWAITING_PAYMENT (payment_due e-mail with the pay
   link and "8.000") → the pay link → the sandbox gateway → paid → IPN → IN_PROGRESS
   (payment_confirmed) → forward, forward, approve, result_ready → shipment at the
   carrier (shipped, tracking number) → picked_up, in_transit, delivered → RETURNED
   (delivered). The sinks: exactly the expected e-mails once each, in order, with
   decoded Vietnamese subjects; nothing by SMS or chat (e-mail is preferred).
2. failed payment (cancel, vnp_ResponseCode 24) → payment_failed, still AWAITING_PAYMENT;
   a second attempt pays.
3. refund: paid, then withdrawn by the desk → RefundCompleted in routing's events,
   withdrawn e-mail.
4. failed delivery: two failed attempts and a final one → delivery_failed, the case
   stays RESULT_READY; the desk hands it back at the counter → RETURNED.
5. SMTP down (notify restarted with MOTCUA_SMTP_URL on a closed port): the messages go
   by SMS instead, once each.
6. SIGKILL of notify (messages pending), payment (right after the IPN was answered) and
   postal (carrier call in flight, carrier slow): nothing twice, nothing lost.

Checks that fail because of a real bug are written as subTests named "BUG: ..." with a
message saying what is wrong and where; the rest of the test goes on.

Run: cd tests/system && /usr/bin/python3 run.py test_edge_e2e"""
import json
import os
import re
import tempfile
import time
import unittest
import urllib.parse
import uuid

import harness
from harness import e164, get_raw, new_phone

ROOT = harness.ROOT
PROCEDURE = "2.000635"  # Cấp bản sao Trích lục hộ tịch: level 4, fee 8 000, post allowed
PROCEDURE_NAME = "Cấp bản sao Trích lục hộ tịch"
FEE = 8000
SECRET = "MOTCUASANDBOXSECRET"
TMN = "MOTCUA01"
CARRIER_TOKEN = "sandbox-carrier-token"
CARRIER_SECRET = "sandbox-carrier-webhook-secret"
ADDRESS = "Số 12 phố Hàng Bạc, phường Đông Hưng"
LINK = "https://dichvucong.example.gov.vn/tra-cuu"
DATE_RE = r"\d{2}:\d{2} ngày \d{2}/\d{2}/\d{4}"

with open(os.path.join(ROOT, "deploy", "data", "catalog", "procedures.json"),
          encoding="utf-8") as _f:
    _P = {p["code"]: p for p in json.load(_f)["procedures"]}[PROCEDURE]
DESK, CIVIL, LEADER = (s["agency"] for s in _P["steps"])  # 000.01 / 000.02 / 000.00.31.H99

SUBJECTS = {
    "payment_due": "Hồ sơ %s: mời nộp phí, lệ phí",
    "payment_confirmed": "Hồ sơ %s: đã nhận phí, lệ phí",
    "payment_failed": "Hồ sơ %s: thanh toán chưa thành công",
    "result_ready": "Hồ sơ %s đã có kết quả",
    "shipped": "Hồ sơ %s: kết quả đã được gửi qua bưu chính",
    "delivered": "Hồ sơ %s: kết quả đã được giao",
    "delivery_failed": "Hồ sơ %s: giao kết quả không thành công",
    "withdrawn": "Hồ sơ %s đã được rút",
    "returned": "Hồ sơ %s: đã trả kết quả",
}


def iso_to_vn(iso):
    """'2026-11-26T17:00:00+07:00' as the templates write it: '17:00 ngày 26/11/2026'."""
    return "%s:%s ngày %s/%s/%s" % (iso[11:13], iso[14:16], iso[8:10], iso[5:7], iso[0:4])


class Suite(harness.Suite):
    """The six services and the sandbox, started once for the module."""

    @classmethod
    def start(cls):
        cls.tmp = tempfile.mkdtemp(prefix="motcua-edge-")
        cls.pg = harness.Postgres()
        cls.svc = {}
        cls.sandbox = None
        try:
            cls.db = cls.pg.database()
            env = harness.suite_env(cls.db)
            url = {n: "http://127.0.0.1:%s" % env["MOTCUA_%s_HTTP_PORT" % n.upper()]
                   for n in harness.SERVICES}
            cls.sandbox = harness.Sandbox(os.path.join(cls.tmp, "sandbox"), {
                "MOTCUA_VNPAY_SECRET": SECRET,
                "MOTCUA_PAYMENT_IPN_URL": url["payment"] + "/v1/payments/ipn",
                "MOTCUA_CARRIER_TOKEN": CARRIER_TOKEN,
                "MOTCUA_CARRIER_WEBHOOK_SECRET": CARRIER_SECRET,
                "MOTCUA_CARRIER_WEBHOOK_URL": url["postal"] + "/v1/postal/webhook",
                "MOTCUA_LOG_LEVEL": "info"}).start()
            env.update({
                # payment (and routing's pay link, intake's payment_url)
                "MOTCUA_PAYMENT_PUBLIC_URL": url["payment"],
                "MOTCUA_VNPAY_URL": cls.sandbox.url("/vnpay/pay"),
                "MOTCUA_VNPAY_SECRET": SECRET,
                "MOTCUA_VNPAY_TMN_CODE": TMN,
                "MOTCUA_PAYMENT_SWEEP_MS": "1000",
                # postal
                "MOTCUA_CARRIER_URL": cls.sandbox.url("/carrier"),
                "MOTCUA_CARRIER_TOKEN": CARRIER_TOKEN,
                "MOTCUA_CARRIER_WEBHOOK_SECRET": CARRIER_SECRET,
                "MOTCUA_INTAKE_URL": url["intake"],
                "MOTCUA_POSTAL_TICK_MS": "200",
                "MOTCUA_POSTAL_BACKOFF_MS": "300",
                "MOTCUA_POSTAL_TIMEOUT_MS": "2000",
                "MOTCUA_POSTAL_LEASE_MS": "3500",
                # notify
                "MOTCUA_SMTP_URL": "smtp://127.0.0.1:%d" % cls.sandbox.smtp_port,
                "MOTCUA_SMS_URL": cls.sandbox.url("/sms/send"),
                "MOTCUA_CHAT_URL": cls.sandbox.url("/chat/send"),
                "MOTCUA_NOTIFY_LINK": LINK,
                "MOTCUA_NOTIFY_TICK_MS": "100",
                "MOTCUA_NOTIFY_RETRIES": "2",
                "MOTCUA_NOTIFY_BACKOFF_MS": "200",
                "MOTCUA_NOTIFY_TIMEOUT_MS": "3000",
                "MOTCUA_NOTIFY_LEASE_MS": "4500",
            })
            cls.env = env
            harness.start_services(cls.svc, harness.SERVICES, env, log_dir=cls.tmp)
            cls.keys = harness.officer_keys(cls.db, (DESK, CIVIL, LEADER))
            cls.operator = harness.create_api_key(cls.db, "operator", "operator")["key"]
            cls.portal = harness.create_api_key(cls.db, "portal", "citizen_portal")["key"]
        except Exception:
            cls.stop()
            raise


setUpModule, tearDownModule = Suite.module_hooks()


class EdgeE2E(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        assert (_P["level"], _P["fee"]) == (4, FEE) and "post" in _P["return_methods"], _P
        cls.s = Suite
        cls.sb = Suite.sandbox

    def svc(self, name):
        return self.s.svc[name]

    # ------------------------------------------------------------ plumbing

    def sql(self, q):
        return self.s.pg.sql(q, self.s.db)

    def sandbox(self, method, path, body=None):
        status, _, answer = self.sb.http(method, path, body)
        self.assertEqual(status, 200, answer)
        return answer

    def applicant(self):
        tag = uuid.uuid4().hex[:8]
        return {"name": "Nguyễn Thị Hồng Nhung", "id_number": "001203004567",
                "email": "nhung.%s@example.vn" % tag, "phone": new_phone(),
                "address": "Số 5 phố Hàng Bạc"}

    def submit(self, applicant):
        body = {"procedure": PROCEDURE, "channel": "online", "applicant": applicant,
                "documents": [{"kind": d["kind"], "name": d["name"], "sha256": "e" * 64,
                               "size": 4096} for d in _P["documents"]],
                "return_method": "post", "delivery_address": ADDRESS}
        status, a = harness.http("POST", self.svc("intake").url("/v1/dossiers"), body,
                                 {"Idempotency-Key": str(uuid.uuid4()),
                                  "Authorization": "Bearer " + self.s.portal})
        self.assertEqual(status, 201, a)
        code, token = a["code"], a["lookup_token"]
        harness.wait_for(lambda: self.lookup(code, token).get("routed"), timeout=20,
                         what="the case of %s opened" % code)
        harness.wait_for(lambda: self.sql("SELECT id FROM payment.orders WHERE code = '%s'"
                                          % code), timeout=20, what="the fee order of " + code)
        return code, token

    def lookup(self, code, token):
        status, v = harness.http("GET", self.svc("intake").url(
            "/v1/dossiers/%s?token=%s" % (code, token)))
        self.assertEqual(status, 200, v)
        return v

    def case(self, code):
        status, c = harness.http("GET", self.svc("routing").url("/v1/cases/" + code),
                                 headers={"Authorization": "Bearer " + self.s.operator})
        self.assertEqual(status, 200, c)
        return c

    def wait_state(self, code, state, timeout=20):
        return harness.wait_case_state(self.svc("routing"), self.s.operator, code, state,
                                       timeout=timeout)

    def act(self, code, action, agency=None, note=None, expect=200):
        body = {"action": action, "officer": "Trần Văn Cán Bộ"}
        if note:
            body["note"] = note
        status, r = harness.http("POST", self.svc("routing").url("/v1/dossiers/%s/actions" % code),
                                 body, {"Authorization": "Bearer " + self.s.keys[agency or DESK]})
        self.assertEqual(status, expect, (action, r))
        return r

    def walk_to_result(self, code):
        self.act(code, "forward", DESK)
        self.act(code, "forward", CIVIL)
        self.act(code, "approve", LEADER)
        r = self.act(code, "result_ready", DESK)
        self.assertEqual(r["state"], "RESULT_READY", r)

    def receive(self, code, token):
        r = self.act(code, "receive", DESK)
        self.assertEqual(r["state"], "AWAITING_PAYMENT", r)
        return harness.wait_for(lambda: (lambda v: v if v["status"] == "AWAITING_PAYMENT"
                                         and v.get("payment_url") else None)(
            self.lookup(code, token)), timeout=20, what="%s awaiting payment" % code)

    def open_gateway(self, code, token):
        """Follow the lookup's payment_url to the sandbox gateway's page: the TxnRef."""
        view = self.lookup(code, token)
        self.assertEqual(view["payment_url"], self.svc("payment").url("/v1/payments/pay/" + code))
        self.assertEqual(view["fee"], FEE)
        status, headers, _ = get_raw(view["payment_url"])
        self.assertEqual(status, 302)
        location = headers["Location"]
        self.assertTrue(location.startswith(self.sb.base + "/vnpay/pay?"), location)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        self.assertEqual(q["vnp_Amount"], str(FEE * 100))
        status, _, page = get_raw(location)
        self.assertEqual(status, 200, page)
        self.assertIn("Thanh toán (Pay)", page)
        self.assertIn("8.000 đồng", page)
        return q["vnp_TxnRef"]

    def gateway_act(self, txn, outcome, **extra):
        """The applicant's button on the gateway page: the IPN replies and the return URL."""
        q = urllib.parse.urlencode(dict(txn=txn, outcome=outcome, **extra))
        status, headers, body = get_raw(self.sb.base + "/vnpay/act?" + q, timeout=60)
        self.assertEqual(status, 302, body)
        return json.loads(headers["X-Ipn-Replies"]), headers["Location"]

    def pay(self, code, token):
        txn = self.open_gateway(code, token)
        replies, back = self.gateway_act(txn, "paid")
        self.assertEqual(replies, [{"status": 200, "RspCode": "00"}])
        status, _, page = get_raw(back)
        self.assertEqual(status, 200)
        self.assertIn("Thanh toán thành công", page)
        return txn

    def outbox(self, schema, code, type_):
        out = self.sql("SELECT count(*), count(delivered_at) FROM %s.outbox"
                       " WHERE dossier_code = '%s' AND type = '%s'" % (schema, code, type_))
        return tuple(int(x) for x in out.split("|"))

    def transitions(self, code, frm, to):
        return int(self.sql("SELECT count(*) FROM routing.case_events WHERE code = '%s'"
                            " AND from_state = '%s' AND to_state = '%s'" % (code, frm, to)))

    def shipment(self, code):
        row = self.sql("SELECT state || '|' || coalesce(tracking_number, '') FROM postal.shipments"
                       " WHERE code = '%s'" % code)
        return tuple(row.split("|")) if row else None

    def wait_created(self, code, timeout=30):
        return harness.wait_for(lambda: (lambda s: s[1] if s and s[0] == "created" else None)(
            self.shipment(code)), timeout=timeout, what="the shipment of %s created" % code)

    def carrier_shipments(self, code):
        return self.sandbox("GET", "/carrier/shipments?reference=" + code)["shipments"]

    def advance(self, tracking, status, **extra):
        body = self.sandbox("POST", "/carrier/advance",
                            dict(tracking_number=tracking, status=status, **extra))
        self.assertEqual((body["webhook_status"], body["answer"]["verdict"]), (200, "applied"),
                         body)
        return body["answer"]

    def notifications(self, code):
        status, body = harness.http("GET", self.svc("notify").url(
            "/v1/notifications?dossier=" + code),
            headers={"Authorization": "Bearer " + self.s.operator})
        self.assertEqual(status, 200, body)
        return body["items"]

    def wait_notified(self, code, events, states=("sent", "delivered"), timeout=30):
        """Every event of `events` has a notification in `states`: {event: item}."""
        def done():
            items = {}
            for n in self.notifications(code):
                items.setdefault(n["event"], n)
            return items if all(e in items and items[e]["state"] in states
                                for e in events) else None
        return harness.wait_for(done, timeout=timeout, interval=0.1,
                                what="%s of %s in %s" % (events, code, states))

    def mails(self, email):
        return self.sandbox("GET", "/smtp/messages?to=" + urllib.parse.quote(email))

    def sms(self, phone):
        return self.sandbox("GET", "/sms/messages?to=" + urllib.parse.quote(e164(phone)))

    def chats(self, phone):
        return self.sandbox("GET", "/chat/messages?phone=" + urllib.parse.quote(e164(phone)))

    def expect_mails(self, who, code, events, settle=0.7):
        """The SMTP sink got exactly these e-mails for the applicant, once each, in order;
        nothing went by SMS or chat. Returns {event: message}."""
        self.wait_notified(code, events)
        time.sleep(settle)  # a message sent twice would have arrived by now
        got = self.mails(who["email"])
        self.assertEqual([m["subject"] for m in got], [SUBJECTS[e] % code for e in events],
                         "the e-mails of %s" % code)
        for m in got:
            self.assertNotIn("parse_error", m)
            self.assertIn("Một cửa điện tử", m["from"])
            self.assertEqual(m["rcpt_to"], [who["email"]])
            self.assertIn(code, m["text"])
            self.assertIn(PROCEDURE_NAME, m["text"])
            self.assertTrue(m["message_id"] and m["date"], m)
            # On the wire: an RFC 2047 encoded-word subject, a UTF-8 text/plain body.
            head = m["data"].split("\r\n\r\n", 1)[0]
            self.assertRegex(head, r"(?im)^Subject: =\?UTF-8\?[BQ]\?", head)
            self.assertEqual(m["content_type"], "text/plain")
            self.assertRegex(head, r"(?i)charset=\"?UTF-8")
        self.assertEqual(self.sms(who["phone"]), [], "no SMS when e-mail works")
        self.assertEqual(self.chats(who["phone"]), [], "no chat message when e-mail works")
        items = self.notifications(code)
        self.assertEqual(sorted(n["event"] for n in items), sorted(events), items)
        for n in items:
            self.assertEqual((n["channel"], n["attempts"]), ("email", 1), n)
        return dict(zip(events, got))

    def check_payment_due(self, m, code):
        self.assertIn("cần nộp phí, lệ phí 8.000 đồng", m["text"])
        self.assertIn("Nộp trực tuyến tại: " + self.svc("payment").url("/v1/payments/pay/" + code),
                      m["text"])

    # ------------------------------------------------------------ 1

    def test_1_happy_path_paid_online_returned_by_post(self):
        who = self.applicant()
        code, token = self.submit(who)
        self.assertEqual(self.case(code)["state"], "SUBMITTED")
        self.receive(code, token)
        due = self.wait_notified(code, ["payment_due"])["payment_due"]
        self.assertEqual(due["params"]["amount"], "8000")

        txn = self.pay(code, token)
        self.wait_state(code, "IN_PROGRESS")
        self.assertEqual(self.sql("SELECT state FROM payment.orders WHERE id = '%s'" % txn), "paid")
        self.assertEqual(self.lookup(code, token)["status"], "IN_PROGRESS")
        self.assertNotIn("payment_url", self.lookup(code, token))

        self.walk_to_result(code)
        tracking = self.wait_created(code)
        self.assertRegex(tracking, r"^E[A-Z]\d{9}VN$")
        at_carrier = self.carrier_shipments(code)
        self.assertEqual([s["tracking_number"] for s in at_carrier], [tracking])
        req = at_carrier[0]["request"]
        self.assertEqual((req["reference"], req["receiver"]["address"], req["receiver"]["name"]),
                         (code, ADDRESS, who["name"]))
        self.wait_notified(code, ["shipped"])
        for status in ("picked_up", "in_transit"):
            self.advance(tracking, status)
        self.advance(tracking, "delivered")
        case = self.wait_state(code, "RETURNED")
        self.assertIn("tracking " + tracking, case["events"][-1]["note"])
        harness.wait_for(lambda: self.lookup(code, token)["status"] == "RETURNED",
                         what="the public view RETURNED")

        events = ["payment_due", "payment_confirmed", "result_ready", "shipped", "delivered"]
        m = self.expect_mails(who, code, events)
        self.check_payment_due(m["payment_due"], code)
        self.assertIn("Đã nhận 8.000 đồng phí, lệ phí của hồ sơ " + code,
                      m["payment_confirmed"]["text"])
        self.assertIn("Mã vận đơn: " + tracking, m["shipped"]["text"])
        self.assertIn("đã được giao thành công (mã vận đơn %s)" % tracking,
                      m["delivered"]["text"])
        for e in events:
            self.assertIn("Tra cứu hồ sơ: ", m[e]["text"])
        self.assertIn("%s?code=%s" % (LINK, code), m["delivered"]["text"])
        # Once only, at every layer: one settlement, one move to IN_PROGRESS, one shipment,
        # one delivery report.
        self.assertEqual(self.outbox("payment", code, "PaymentSettled"), (1, 1))
        self.assertEqual(self.transitions(code, "AWAITING_PAYMENT", "IN_PROGRESS"), 1)
        self.assertEqual(self.outbox("postal", code, "ResultDelivered"), (1, 1))
        self.assertEqual(len(self.carrier_shipments(code)), 1)

        # The applicant of an online fee dossier is never told the due date: the
        # "received" e-mail (which carries it) is replaced by payment_due, and neither
        # payment_due nor payment_confirmed (when the clock restarts with a new due time)
        # shows one.
        with self.subTest("BUG: due date never told for an online fee dossier"):
            dated = [e for e in events if re.search("hẹn trả kết quả: " + DATE_RE, m[e]["text"])]
            self.assertTrue(dated, "BUG (routing action.c receive / external.c decide_paid, "
                            "templates payment_due/payment_confirmed): no e-mail of %s tells the "
                            "applicant the appointment date (%s); the 'received' notice with "
                            "the due date is replaced by payment_due. Suggested fix: show "
                            "'Ngày hẹn trả kết quả: {{due_at}}' in payment_confirmed (routing "
                            "sets due_at to the new due time in decide_paid)."
                            % (code, [m[e]["subject"] for e in events]))
            due_at = self.case(code).get("due_at")
            self.assertTrue(due_at)
            self.assertIn(iso_to_vn(due_at), m["payment_confirmed"]["text"])

    # ------------------------------------------------------------ 2

    def test_2_failed_payment_then_paid(self):
        who = self.applicant()
        code, token = self.submit(who)
        self.receive(code, token)
        txn = self.open_gateway(code, token)
        replies, back = self.gateway_act(txn, "cancel")
        self.assertEqual(replies, [{"status": 200, "RspCode": "00"}])
        self.assertIn("Thanh toán không thành công", get_raw(back)[2])
        self.assertEqual(self.sql("SELECT state || ',' || response_code FROM payment.orders"
                                  " WHERE id = '%s'" % txn), "failed,24")
        self.wait_notified(code, ["payment_due", "payment_failed"])
        self.assertEqual(self.case(code)["state"], "AWAITING_PAYMENT")
        self.assertEqual(self.lookup(code, token)["status"], "AWAITING_PAYMENT")
        self.assertTrue(any("gateway code 24" in e["note"] for e in self.case(code)["events"]))

        txn2 = self.pay(code, token)
        self.assertNotEqual(txn2, txn)
        self.wait_state(code, "IN_PROGRESS")
        m = self.expect_mails(who, code, ["payment_due", "payment_failed", "payment_confirmed"])
        self.check_payment_due(m["payment_due"], code)
        self.assertIn("Đã nhận 8.000 đồng", m["payment_confirmed"]["text"])
        failed = m["payment_failed"]["text"]
        self.assertIn("cho hồ sơ %s" % code, failed)
        self.assertEqual(self.outbox("payment", code, "PaymentFailed"), (1, 1))
        self.assertEqual(self.outbox("payment", code, "PaymentSettled"), (1, 1))
        self.assertEqual(self.transitions(code, "AWAITING_PAYMENT", "IN_PROGRESS"), 1)

        with self.subTest("BUG: payment_failed e-mail has no amount"):
            self.assertIn("Giao dịch nộp 8.000 đồng", failed,
                          "BUG (routing external.c decide_payment_failed): PaymentFailed carries "
                          "no amount and routing sets no 'amount' param, so the template "
                          "renders 'Giao dịch nộp  đồng'. Suggested fix: set params.amount "
                          "from the case's fee (c.fee) as decide_paid does.")
        with self.subTest("BUG: payment_failed e-mail has no reason"):
            self.assertRegex(failed, r"Lý do: \S",
                             "BUG (routing external.c decide_payment_failed): no 'reason' param "
                             "is set (only 'note'), so the template renders an empty 'Lý do: '. "
                             "Suggested fix: set params.reason to a Vietnamese text for the "
                             "PaymentFailed reason / vnp_ResponseCode (24: 'Quý ông/bà đã hủy "
                             "giao dịch'); PaymentFailed.reason itself is English "
                             "(services/payment/vnpay.c: 'cancelled by the applicant').")
        with self.subTest("BUG: payment_failed retry link is not the pay link"):
            self.assertIn("thanh toán lại tại: " + self.svc("payment").url(
                "/v1/payments/pay/" + code), failed,
                "BUG (routing external.c decide_payment_failed): 'Xin vui lòng thanh toán lại "
                "tại: {{link}}' renders the lookup link, not the pay link "
                "($MOTCUA_PAYMENT_PUBLIC_URL/v1/payments/pay/CODE) that payment_due gives. "
                "Suggested fix: set params.link as action.c does for payment_due.")

    # ------------------------------------------------------------ 3

    def test_3_refund_after_withdrawal(self):
        who = self.applicant()
        code, token = self.submit(who)
        self.receive(code, token)
        txn = self.pay(code, token)
        self.wait_state(code, "IN_PROGRESS")
        note = "Công dân đề nghị rút hồ sơ"
        self.act(code, "withdraw", DESK, note)
        case = harness.wait_for(lambda: (lambda c: c if any(
            e["note"].startswith("fee refunded") for e in c["events"]) else None)(
            self.case(code)), timeout=20, what="RefundCompleted recorded by routing")
        self.assertEqual(case["state"], "WITHDRAWN")
        refund = [e for e in case["events"] if e["note"].startswith("fee refunded")]
        self.assertEqual(len(refund), 1, refund)
        self.assertIn("8000 VND, order %s (WITHDRAWN)" % txn, refund[0]["note"])
        self.assertEqual(self.sql("SELECT state FROM payment.orders WHERE id = '%s'" % txn),
                         "refunded")
        self.assertEqual(self.sql("SELECT count(*) FROM payment.refunds WHERE order_id = '%s'"
                                  % txn), "1")
        self.assertEqual(self.outbox("payment", code, "RefundCompleted"), (1, 1))
        m = self.expect_mails(who, code, ["payment_due", "payment_confirmed", "withdrawn"])
        self.assertIn("đã được rút theo đề nghị. Ghi chú: " + note, m["withdrawn"]["text"])
        # A late paid IPN (the gateway's journal) changes nothing: 02.
        q = [r["query"] for r in self.sandbox("GET", "/vnpay/transactions")["transactions"]
             if r.get("kind") == "ipn" and r["txn"] == txn][-1]
        status, a = harness.http("GET", self.svc("payment").url("/v1/payments/ipn?" + q))
        self.assertEqual((status, a["RspCode"]), (200, "02"))

    # ------------------------------------------------------------ 4

    def test_4_delivery_failed_back_at_counter(self):
        who = self.applicant()
        code, token = self.submit(who)
        self.receive(code, token)
        self.pay(code, token)
        self.wait_state(code, "IN_PROGRESS")
        self.walk_to_result(code)
        tracking = self.wait_created(code)
        self.advance(tracking, "picked_up")
        for attempt in (1, 2):
            self.advance(tracking, "failed_attempt", attempt=attempt, reason="Không có người nhận")
        self.advance(tracking, "failed_attempt", attempt=3, final=True,
                     reason="Không liên lạc được người nhận")
        case = harness.wait_for(lambda: (lambda c: c if any(
            "delivery failed for good" in e["note"] for e in c["events"]) else None)(
            self.case(code)), timeout=20, what="the final failure recorded by routing")
        self.assertEqual(case["state"], "RESULT_READY")
        notes = [e["note"] for e in case["events"]]
        self.assertEqual(sum("a delivery attempt failed" in n for n in notes), 2, notes)
        self.wait_notified(code, ["delivery_failed"])
        r = self.act(code, "return", DESK)
        self.assertEqual(r["state"], "RETURNED", r)
        events = ["payment_due", "payment_confirmed", "result_ready", "shipped",
                  "delivery_failed", "returned"]
        m = self.expect_mails(who, code, events)
        text = m["delivery_failed"]["text"]
        self.assertIn("mã vận đơn %s" % tracking, text)
        self.assertIn("Lý do: Không liên lạc được người nhận", text)
        self.assertIn("Xin liên hệ bộ phận một cửa", text)
        self.assertEqual(self.outbox("postal", code, "DeliveryFailed"), (3, 3))
        self.assertEqual(self.shipment(code)[0], "failed_attempt")

    # ------------------------------------------------------------ 5

    def restart_notify(self, **env):
        n = self.svc("notify")
        self.assertEqual(n.terminate(), 0, n.log())
        n.env = dict(self.s.env, **env)
        n.start()

    def test_5_smtp_down_goes_by_sms(self):
        who = self.applicant()
        closed = harness.free_port()
        self.restart_notify(MOTCUA_SMTP_URL="smtp://127.0.0.1:%d" % closed)
        try:
            code, token = self.submit(who)
            self.receive(code, token)
            self.pay(code, token)
            self.wait_state(code, "IN_PROGRESS")
            items = self.wait_notified(code, ["payment_due", "payment_confirmed"],
                                       states=("sent", "delivered", "failed"))
        finally:
            self.restart_notify()
        for e in ("payment_due", "payment_confirmed"):
            n = items[e]
            self.assertEqual((n["state"], n["channel"]), ("sent", "sms"), n)
            self.assertEqual([(a["channel"], a["state"]) for a in n["history"]],
                             [("email", "failed")] * 2 + [("sms", "sent")], n)
        time.sleep(0.7)
        sms = self.sms(who["phone"])
        self.assertEqual(len(sms), 2, sms)
        self.assertEqual(sms[0]["text"], "Hồ sơ %s: mời nộp phí, lệ phí 8.000 đồng tại %s"
                         % (code, self.svc("payment").url("/v1/payments/pay/" + code)))
        # After payment the clock runs again: the message gives the new appointment.
        self.assertRegex(sms[1]["text"], r"^Hồ sơ %s: đã nhận 8\.000 đồng phí, lệ phí\. "
                         r"Hẹn trả kết quả: \d\d:\d\d ngày \d\d/\d\d/\d{4}\.$" % re.escape(code))
        self.assertEqual(self.mails(who["email"]), [])
        self.assertEqual(self.chats(who["phone"]), [])

    # ------------------------------------------------------------ 6

    def test_6_sigkill_each_edge_service(self):
        who = self.applicant()
        code, token = self.submit(who)
        notify, payment, postal = self.svc("notify"), self.svc("payment"), self.svc("postal")
        # notify dies with payment_due on its way (routing's outbox, the bus).
        self.act(code, "receive", DESK)
        notify.kill()
        try:
            harness.wait_for(lambda: self.lookup(code, token).get("payment_url"), timeout=20,
                             what="the pay link of " + code)
            # payment dies right after answering the gateway's IPN.
            txn = self.open_gateway(code, token)
            replies, _ = self.gateway_act(txn, "paid")
            payment.kill()
            self.assertEqual(replies, [{"status": 200, "RspCode": "00"}])
            payment.start()
            # The gateway sends the IPN again (as a real one does when unsure): 02.
            q = [r["query"] for r in self.sandbox("GET", "/vnpay/transactions")["transactions"]
                 if r.get("kind") == "ipn" and r["txn"] == txn][-1]
            status, a = harness.http("GET", payment.url("/v1/payments/ipn?" + q))
            self.assertEqual((status, a["RspCode"]), (200, "02"))
            self.wait_state(code, "IN_PROGRESS")
            harness.wait_for(lambda: self.outbox("payment", code, "PaymentSettled") == (1, 1),
                             what="PaymentSettled delivered once")

            # postal dies while the carrier is making the shipment (slow carrier).
            before = self.sandbox("GET", "/control/carrier")["attempts"]
            self.sandbox("POST", "/control/carrier", {"mode": "slow", "delay_ms": 1500})
            try:
                self.walk_to_result(code)
                harness.wait_for(lambda: self.sandbox("GET", "/control/carrier")["attempts"]
                                 > before, timeout=20, what="postal calling the carrier")
                postal.kill()
            finally:
                self.sandbox("POST", "/control/carrier", {"mode": "ok"})
            harness.wait_for(lambda: self.carrier_shipments(code), timeout=10,
                             what="the carrier made the shipment")
            self.assertEqual(self.shipment(code), ("requested", ""))
            postal.start()
            # Everything so far waited for notify: nothing has reached the sinks.
            self.assertEqual(self.mails(who["email"]), [])
        finally:
            if notify.proc.poll() is not None:
                notify.start()
            if payment.proc.poll() is not None:
                payment.start()
            if postal.proc.poll() is not None:
                postal.start()
        tracking = self.wait_created(code, timeout=30)
        self.assertEqual([s["tracking_number"] for s in self.carrier_shipments(code)], [tracking])
        self.advance(tracking, "delivered")
        self.wait_state(code, "RETURNED")
        m = self.expect_mails(who, code, ["payment_due", "payment_confirmed", "result_ready",
                                          "shipped", "delivered"], settle=1.0)
        self.assertIn("Mã vận đơn: " + tracking, m["shipped"]["text"])
        self.assertEqual(self.outbox("payment", code, "PaymentSettled"), (1, 1))
        self.assertEqual(self.transitions(code, "AWAITING_PAYMENT", "IN_PROGRESS"), 1)
        self.assertEqual(self.sql("SELECT count(*) FROM payment.orders WHERE code = '%s'"
                                  " AND state = 'paid'" % code), "1")
        self.assertEqual(len(self.carrier_shipments(code)), 1)
        self.assertEqual(self.transitions(code, "RESULT_READY", "RETURNED"), 1)


if __name__ == "__main__":
    unittest.main()
