"""Online fee payment end to end, on the real services (intake, routing, payment, notify),
a private PostgreSQL and the sandbox's bank gateway (deploy/sandbox/bank_gateway.py):
a level-4 dossier submitted online with a fee is received by the desk, waits in
AWAITING_PAYMENT, its lookup shows the pay link, the link redirects to the gateway with
a request signed as docs/payment.md says (checked here with Python's own hmac), the
applicant pays in the sandbox, the IPN settles the order once and the case moves on.
Then the bad callbacks (forged signature, unknown order, wrong amount, replay, garbage,
ten concurrent duplicates), a cancelled payment, expiry, a refund after withdrawal, and
payment killed while the gateway calls it. Refunds go through the sandbox gateway's
refund API (vnp_Command refund, fields joined by '|' and signed): completed once, also
when the API is down for a while or answers with a forged hash. The daily
reconciliation on demand: a clean day, then a day with a payment the gateway never saw
and one motcua never heard of.

Run: cd tests/system && /usr/bin/python3 run.py test_payment"""
import hashlib
import hmac
import json
import os
import tempfile
import threading
import time
import unittest
import urllib.parse
import uuid

import harness
from harness import get_raw

ROOT = harness.ROOT
SECRET = "MOTCUASANDBOXSECRET"
TMN = "MOTCUA01"
PROCEDURE = "2.000635"  # Cấp bản sao Trích lục hộ tịch: level 4, fee 8 000 VND
FEE = 8000
DESK = "000.01.31.H99"  # the agency of its first step: receives it

with open(os.path.join(ROOT, "deploy", "data", "catalog", "procedures.json"),
          encoding="utf-8") as _f:
    _P = {p["code"]: p for p in json.load(_f)["procedures"]}[PROCEDURE]


# ---------------------------------------------------------------- the signature, again

def vnp_encode(s):
    """Written from docs/payment.md: letters, digits, -_. stay; space '+'; else %XX."""
    safe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    return "".join(chr(b) if chr(b) in safe else "+" if b == 32 else "%%%02X" % b
                   for b in s.encode("utf-8"))


def vnp_sign(params, secret=SECRET):
    data = "&".join("%s=%s" % (vnp_encode(k), vnp_encode(v)) for k, v in sorted(params.items())
                    if k not in ("vnp_SecureHash", "vnp_SecureHashType") and v != "")
    return hmac.new(secret.encode(), data.encode(), hashlib.sha512).hexdigest()


def signed(params, secret=SECRET):
    q = dict(params)
    q["vnp_SecureHash"] = vnp_sign(params, secret)
    return urllib.parse.urlencode(q)


# ---------------------------------------------------------------- the suite

class Suite(harness.Suite):
    @classmethod
    def start(cls):
        cls.pg = harness.Postgres()
        cls.svc = {}
        cls.sandbox = None
        try:
            cls.db = cls.pg.database()
            env = harness.suite_env(cls.db)
            pay_url = "http://127.0.0.1:%s" % env["MOTCUA_PAYMENT_HTTP_PORT"]
            env["MOTCUA_PAYMENT_PUBLIC_URL"] = pay_url
            env["MOTCUA_PAYMENT_SWEEP_MS"] = "200"
            env["MOTCUA_PAYMENT_REFUND_TICK_MS"] = "200"
            env["MOTCUA_PAYMENT_BACKOFF_MS"] = "200"
            env["MOTCUA_ROUTING_SWEEP_MS"] = "1000"
            env["MOTCUA_VNPAY_SECRET"] = SECRET
            env["MOTCUA_VNPAY_TMN_CODE"] = TMN
            cls.logs = tempfile.mkdtemp(prefix="motcua-payment-")
            cls.sandbox = harness.Sandbox("", {
                "MOTCUA_VNPAY_SECRET": SECRET,
                "MOTCUA_PAYMENT_IPN_URL": pay_url + "/v1/payments/ipn"}, log_dir=cls.logs).start()
            env["MOTCUA_VNPAY_URL"] = cls.sandbox.url("/vnpay/pay")
            cls.env = env
            # notify takes the applicant's notifications; the payment walk does not
            # depend on it, so a tree where notify does not build still tests payment.
            names = ["intake", "routing", "payment", "notify"]
            if not os.path.exists(os.path.join(harness.BIN, "motcua-notify")):
                names.remove("notify")
            harness.start_services(cls.svc, names, env, log_dir=cls.logs)
            cls.officer = harness.create_api_key(cls.db, "officer-desk", "officer", DESK)["key"]
            cls.operator = harness.create_api_key(cls.db, "operator", "operator")["key"]
            cls.portal = harness.create_api_key(cls.db, "portal", "citizen_portal")["key"]
        except Exception:
            cls.stop()
            raise
        return cls


setUpModule, tearDownModule = Suite.module_hooks()


class Payment(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        assert (_P["level"], _P["fee"], _P["steps"][0]["agency"]) == (4, FEE, DESK), _P
        cls.s = Suite
        cls.intake, cls.routing = Suite.svc["intake"], Suite.svc["routing"]
        cls.payment = Suite.svc["payment"]

    # ------------------------------------------------------------ helpers

    def sql(self, q):
        return self.s.pg.sql(q, self.s.db)

    def submit(self):
        body = {"procedure": PROCEDURE, "channel": "online",
                "applicant": {"name": "Lê Văn Thanh", "id_number": "001203004567",
                              "phone": "0912345678", "email": "thanh@example.vn",
                              "address": "Số 5 phố Hàng Bạc"},
                "documents": [{"kind": d["kind"], "name": d["name"], "sha256": "c" * 64,
                               "size": 1024} for d in _P["documents"]],
                "return_method": "counter"}
        status, a = harness.http("POST", self.intake.url("/v1/dossiers"), body,
                                 {"Idempotency-Key": str(uuid.uuid4()),
                                  "Authorization": "Bearer " + self.s.portal})
        self.assertEqual(status, 201, a)
        code, token = a["code"], a["lookup_token"]
        order = harness.wait_for(lambda: self.sql(
            "SELECT id FROM payment.orders WHERE code = '%s'" % code), timeout=20,
            what="the fee order of %s" % code)
        # Wait until routing opened the case (intake's view says "routed").
        harness.wait_for(lambda: self.lookup(code, token)["routed"], timeout=20,
                         what="the case of %s" % code)
        return code, token, order

    def lookup(self, code, token):
        status, v = harness.http("GET", self.intake.url("/v1/dossiers/%s?token=%s" % (code, token)))
        self.assertEqual(status, 200, v)
        return v

    def wait_status(self, code, token, state, timeout=20):
        return harness.wait_for(lambda: (lambda v: v if v["status"] == state else None)(
            self.lookup(code, token)), timeout=timeout, what="%s in %s" % (code, state))

    def receive(self, code, token):
        status, r = harness.http("POST", self.routing.url("/v1/dossiers/%s/actions" % code),
                                 {"action": "receive", "officer": "Cán bộ một cửa"},
                                 {"Authorization": "Bearer " + self.s.officer})
        self.assertEqual(status, 200, r)
        self.assertEqual(r["state"], "AWAITING_PAYMENT", r)
        return self.wait_status(code, token, "AWAITING_PAYMENT")

    def order(self, order_id):
        status, o = harness.http("GET", self.payment.url("/v1/payments/" + order_id),
                                 headers={"Authorization": "Bearer " + self.s.operator})
        self.assertEqual(status, 200, o)
        return o

    def pay_link(self, code, token):
        """Follow the lookup's payment_url: the gateway URL and its parsed query."""
        view = self.lookup(code, token)
        self.assertEqual(view["payment_url"], self.payment.url("/v1/payments/pay/" + code))
        self.assertEqual(view["fee"], FEE)
        status, headers, _ = get_raw(view["payment_url"])
        self.assertEqual(status, 302)
        location = headers["Location"]
        url = urllib.parse.urlsplit(location)
        self.assertEqual("%s://%s%s" % (url.scheme, url.netloc, url.path),
                         self.s.sandbox.url("/vnpay/pay"))
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        return location, q

    def act(self, txn, outcome, **extra):
        """The applicant's choice on the gateway page: (status, headers)."""
        q = urllib.parse.urlencode(dict(txn=txn, outcome=outcome, **extra))
        status, headers, body = get_raw(self.s.sandbox.url("/vnpay/act?" + q), timeout=60)
        self.assertEqual(status, 302, body)
        return headers

    def ipn(self, query):
        status, a = harness.http("GET", self.payment.url("/v1/payments/ipn?" + query), timeout=30)
        self.assertEqual(status, 200, a)
        return a["RspCode"]

    def ipn_params(self, order_id, amount=FEE * 100, response="00", tstatus="00"):
        return {"vnp_TmnCode": TMN, "vnp_Amount": str(amount), "vnp_BankCode": "NCB",
                "vnp_CardType": "ATM", "vnp_OrderInfo": "Thanh toan le phi",
                "vnp_PayDate": time.strftime("%Y%m%d%H%M%S"), "vnp_ResponseCode": response,
                "vnp_TransactionNo": "14%06d" % (int(time.time()) % 1000000),
                "vnp_TransactionStatus": tstatus, "vnp_TxnRef": order_id}

    def outbox(self, code, type_):
        """(rows, delivered rows) of payment's outbox for the dossier and body type."""
        out = self.sql("SELECT count(*), count(delivered_at) FROM payment.outbox"
                       " WHERE dossier_code = '%s' AND type = '%s'" % (code, type_))
        return tuple(int(x) for x in out.split("|"))

    def sandbox(self, method, path, body=None):
        status, a = harness.http(method, self.s.sandbox.url(path), body)
        self.assertIn(status, (200, 201), a)
        return a

    def gateway_list(self, day="", txn=""):
        """The merchant's signed transaction list, as payment asks for it."""
        h = hmac.new(SECRET.encode(), ("%s|%s|%s" % (TMN, day, txn)).encode(),
                     hashlib.sha512).hexdigest()
        return self.sandbox("GET", "/vnpay/transactions?" + urllib.parse.urlencode(
            {"vnp_TmnCode": TMN, "date": day, "txn": txn, "vnp_SecureHash": h}))["transactions"]

    def paid_in_sandbox(self):
        """A dossier received and paid through the sandbox gateway: (code, token, order)."""
        code, token, order_id = self.submit()
        self.receive(code, token)
        location, _ = self.pay_link(code, token)
        self.assertEqual(get_raw(location)[0], 200)
        self.act(order_id, "paid")
        self.wait_status(code, token, "IN_PROGRESS")
        return code, token, order_id

    def withdraw(self, code):
        status, r = harness.http("POST", self.routing.url("/v1/dossiers/%s/actions" % code),
                                 {"action": "withdraw", "note": "Công dân rút hồ sơ",
                                  "officer": "Cán bộ một cửa"},
                                 {"Authorization": "Bearer " + self.s.officer})
        self.assertEqual(status, 200, r)

    def refund_of(self, order_id):
        return self.order(order_id)["refund"]

    def refunds_at_gateway(self, order_id):
        return [t for t in self.gateway_list(txn=order_id) if t["vnp_TransactionType"] == "02"]

    def reconcile(self, day, key=None):
        status, run = harness.http("POST", self.payment.url("/v1/payments/reconciliation"),
                                   {"date": day},
                                   {"Authorization": "Bearer " + (key or self.s.operator)})
        self.assertEqual(status, 201, run)
        return run

    def wait_delivered(self, code, type_, n=1):
        harness.wait_for(lambda: self.outbox(code, type_) == (n, n), timeout=20,
                         what="%d %s of %s delivered" % (n, type_, code))

    # ------------------------------------------------------------ the walk

    def test_0_refund_through_gateway_clean_day(self):
        """Runs first: today is then a day where everything matches."""
        code, token, order_id = self.paid_in_sandbox()
        bank_txn = self.order(order_id)["bank_transaction"]
        self.withdraw(code)
        refund = harness.wait_for(lambda: (lambda r: r if r and r["state"] == "completed"
                                           else None)(self.refund_of(order_id)),
                                  timeout=20, what="refund completed")
        self.assertEqual((refund["amount_vnd"], refund["reason"], refund["response_code"]),
                         (FEE, "WITHDRAWN", "00"))
        # The sandbox made exactly one refund, of the whole fee, of that payment.
        at_gateway = self.refunds_at_gateway(order_id)
        self.assertEqual(len(at_gateway), 1, at_gateway)
        self.assertEqual(at_gateway[0]["vnp_Amount"], str(FEE * 100))
        self.assertEqual(at_gateway[0]["vnp_TransactionNo"], refund["bank_transaction"])
        self.assertNotEqual(refund["bank_transaction"], bank_txn)
        # RefundCompleted went to routing, which notes it on the case.
        self.wait_delivered(code, "RefundCompleted")
        case = harness.wait_for(lambda: (lambda c: c if any(
            e["note"].startswith("fee refunded") for e in c["events"]) else None)(
            harness.http("GET", self.routing.url("/v1/cases/" + code),
                         headers={"Authorization": "Bearer " + self.s.operator})[1]),
            timeout=20, what="fee refunded on the case")
        self.assertEqual(case["state"], "WITHDRAWN")
        # Today matches: one payment and one refund at the gateway, the same here.
        today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 7 * 3600))
        run = self.reconcile(today)
        self.assertEqual((run["date"], run["trigger"], run["mismatches"]),
                         (today, "operator", []))
        self.assertGreaterEqual(run["gateway_transactions"], 2)

    def test_a_pay_settle_refund(self):
        code, token, order_id = self.submit()
        view = self.lookup(code, token)
        self.assertNotIn("payment_url", view)  # not before the desk received it
        o = self.order(order_id)
        self.assertEqual((o["code"], o["amount_vnd"], o["state"]), (code, FEE, "pending"))
        created = self.sql("SELECT extract(epoch FROM expires_at - created_at)::int"
                           " FROM payment.orders WHERE id = '%s'" % order_id)
        self.assertAlmostEqual(int(created), 48 * 3600, delta=60)  # default TTL 48 h

        self.receive(code, token)
        location, q = self.pay_link(code, token)
        # The request is signed as docs/payment.md says: checked with Python's hmac.
        self.assertEqual(q["vnp_SecureHash"], vnp_sign(q))
        self.assertEqual(q["vnp_Version"], "2.1.0")
        self.assertEqual(q["vnp_Command"], "pay")
        self.assertEqual(q["vnp_TmnCode"], TMN)
        self.assertEqual(q["vnp_Amount"], str(FEE * 100))
        self.assertEqual(q["vnp_CurrCode"], "VND")
        self.assertEqual(q["vnp_TxnRef"], order_id)
        self.assertEqual(q["vnp_OrderInfo"], "Thanh toan le phi ho so " + code)
        self.assertEqual((q["vnp_OrderType"], q["vnp_Locale"]), ("other", "vn"))
        self.assertEqual(q["vnp_ReturnUrl"], self.payment.url("/v1/payments/return"))
        self.assertRegex(q["vnp_CreateDate"], r"^20\d{12}$")
        self.assertGreater(q["vnp_ExpireDate"], q["vnp_CreateDate"])
        vn_now = time.strftime("%Y%m%d%H%M", time.gmtime(time.time() + 7 * 3600))
        self.assertLessEqual(abs(int(q["vnp_CreateDate"][:12]) - int(vn_now)), 1)
        # A tampered request is refused by the gateway, the real one shown.
        bad = location.replace("vnp_Amount=800000", "vnp_Amount=100")
        self.assertEqual(get_raw(bad)[0], 400)
        status, _, page = get_raw(location)
        self.assertEqual(status, 200)
        self.assertIn("Thanh toán (Pay)", page)

        headers = self.act(order_id, "paid")
        self.assertEqual(json.loads(headers["X-Ipn-Replies"]), [{"status": 200, "RspCode": "00"}])
        o = self.order(order_id)
        self.assertEqual(o["state"], "paid")
        self.assertTrue(o["bank_transaction"])
        self.assertEqual([i["verdict"] for i in o["ipn"]], ["00"])
        # The return page shows the result; it changes nothing.
        status, _, page = get_raw(headers["Location"])
        self.assertEqual(status, 200)
        self.assertIn("Thanh toán thành công", page)
        # PaymentSettled went to routing; the case moves on and the link disappears.
        self.wait_delivered(code, "PaymentSettled")
        view = self.wait_status(code, token, "IN_PROGRESS")
        self.assertNotIn("payment_url", view)
        status, _, _ = get_raw(self.payment.url("/v1/payments/pay/" + code))
        self.assertEqual(status, 409)

        # Replays: the gateway again, and the same IPN again: 02, nothing changes.
        headers = self.act(order_id, "paid", repeat="2")
        self.assertEqual([r["RspCode"] for r in json.loads(headers["X-Ipn-Replies"])], ["02", "02"])
        self.assertEqual(self.outbox(code, "PaymentSettled"), (1, 1))
        self.assertEqual(self.order(order_id)["state"], "paid")

        # Withdrawal of the paid dossier: refunded, RefundCompleted to routing.
        status, r = harness.http("POST", self.routing.url("/v1/dossiers/%s/actions" % code),
                                 {"action": "withdraw", "note": "Công dân rút hồ sơ",
                                  "officer": "Cán bộ một cửa"},
                                 {"Authorization": "Bearer " + self.s.officer})
        self.assertEqual(status, 200, r)
        harness.wait_for(lambda: self.order(order_id)["state"] == "refunded", timeout=20,
                         what="refund")
        o = self.order(order_id)
        self.assertEqual((o["refund"]["amount_vnd"], o["refund"]["reason"]), (FEE, "WITHDRAWN"))
        self.wait_delivered(code, "RefundCompleted")
        # A late paid IPN for it changes nothing either.
        self.assertEqual(self.ipn(signed(self.ipn_params(order_id))), "02")

    def test_b_bad_ipns(self):
        code, token, order_id = self.submit()
        self.receive(code, token)
        good = self.ipn_params(order_id)
        # Forged: signed with another secret; and one character of the hash changed.
        self.assertEqual(self.ipn(signed(good, "NOT-THE-SECRET")), "97")
        q = dict(good, vnp_SecureHash=vnp_sign(good))
        q["vnp_Amount"] = "100"
        self.assertEqual(self.ipn(urllib.parse.urlencode(q)), "97")
        # Unknown order, wrong amount (well signed).
        self.assertEqual(self.ipn(signed(self.ipn_params("NOSUCHORDER1"))), "01")
        self.assertEqual(self.ipn(signed(self.ipn_params(order_id, amount=FEE * 10))), "04")
        self.assertEqual(self.ipn(signed(self.ipn_params(order_id, amount=FEE * 100 + 1))), "04")
        # Garbage.
        self.assertEqual(self.ipn("foo=bar&%ZZ=1"), "99")
        self.assertEqual(self.ipn(""), "99")
        self.assertEqual(self.ipn("vnp_SecureHash=abc&vnp_TxnRef=" + order_id), "99")
        self.assertEqual(self.ipn(signed(dict(good, vnp_Amount="12x"))), "99")
        self.assertEqual(self.order(order_id)["state"], "pending")
        self.assertEqual(self.outbox(code, "PaymentSettled")[0], 0)
        # Ten concurrent duplicates of the good IPN: settled once.
        query, answers = signed(good), []
        lock = threading.Lock()

        def send():
            a = self.ipn(query)
            with lock:
                answers.append(a)
        threads = [threading.Thread(target=send) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(answers), ["00"] + ["02"] * 9)
        self.assertEqual(self.order(order_id)["state"], "paid")
        self.wait_delivered(code, "PaymentSettled")
        self.wait_status(code, token, "IN_PROGRESS")
        logged = self.sql("SELECT string_agg(verdict, ',' ORDER BY verdict) FROM payment.ipn_log"
                          " WHERE order_id = '%s'" % order_id)
        # The forged and unreadable ones that named this order are logged against it.
        self.assertEqual(logged.split(","),
                         ["00"] + ["02"] * 9 + ["04", "04", "97", "97", "99", "99"])
        # Every IPN is logged, 97 and 99 included; metrics count the verdicts.
        self.assertGreaterEqual(int(self.sql("SELECT count(*) FROM payment.ipn_log"
                                             " WHERE verdict IN ('97', '99')")), 6)
        status, text = harness.http("GET", self.payment.url("/metrics"))
        self.assertIn('motcua_payment_ipn_total{verdict="97"}', text)
        self.assertIn("motcua_payment_orders_created_total", text)

    def test_c_cancelled_then_paid(self):
        code, token, order_id = self.submit()
        self.receive(code, token)
        _, q = self.pay_link(code, token)
        self.assertEqual(q["vnp_TxnRef"], order_id)
        get_raw(self.s.sandbox.url("/vnpay/pay?" + urllib.parse.urlencode(q)))
        headers = self.act(order_id, "cancel")
        self.assertEqual(json.loads(headers["X-Ipn-Replies"])[0]["RspCode"], "00")
        o = self.order(order_id)
        self.assertEqual((o["state"], o["response_code"]), ("failed", "24"))
        self.wait_delivered(code, "PaymentFailed")
        status, _, page = get_raw(headers["Location"])
        self.assertIn("Thanh toán không thành công", page)
        self.wait_status(code, token, "AWAITING_PAYMENT")
        # The applicant tries again: a new order, a new reference; this time it is paid.
        _, q = self.pay_link(code, token)
        self.assertNotEqual(q["vnp_TxnRef"], order_id)
        self.assertEqual(q["vnp_SecureHash"], vnp_sign(q))
        get_raw(self.s.sandbox.url("/vnpay/pay?" + urllib.parse.urlencode(q)))
        headers = self.act(q["vnp_TxnRef"], "paid")
        self.assertEqual(json.loads(headers["X-Ipn-Replies"])[0]["RspCode"], "00")
        self.wait_status(code, token, "IN_PROGRESS")
        self.assertEqual(self.outbox(code, "PaymentSettled"), (1, 1))

    def test_d_expiry(self):
        code, token, order_id = self.submit()
        self.receive(code, token)
        # Two days pass: written into the order, as test_lifecycle does for deadlines.
        self.sql("UPDATE payment.orders SET expires_at = now() - interval '1 second'"
                 " WHERE id = '%s'" % order_id)
        harness.wait_for(lambda: self.order(order_id)["state"] == "expired", timeout=20,
                         what="expiry")
        self.wait_delivered(code, "PaymentFailed")
        status, _, page = get_raw(self.payment.url("/v1/payments/pay/" + code))
        self.assertEqual(status, 410)
        self.assertEqual(self.ipn(signed(self.ipn_params(order_id))), "02")

    def test_e_payment_killed(self):
        code, token, order_id = self.submit()
        self.receive(code, token)
        _, q = self.pay_link(code, token)
        get_raw(self.s.sandbox.url("/vnpay/pay?" + urllib.parse.urlencode(q)))
        self.payment.kill()
        try:
            headers = self.act(order_id, "paid")
            self.assertEqual(json.loads(headers["X-Ipn-Replies"])[0]["status"], 0)  # refused
        finally:
            self.payment.start()
        self.assertEqual(self.order(order_id)["state"], "pending")
        # The gateway sends the IPN again (its journal has the query it sent).
        status, t = harness.http("GET", self.s.sandbox.url("/vnpay/transactions"))
        query = [r["query"] for r in t["transactions"]
                 if r.get("kind") == "ipn" and r["txn"] == order_id][-1]
        self.assertEqual(self.ipn(query), "00")
        self.assertEqual(self.ipn(query), "02")
        self.wait_delivered(code, "PaymentSettled")
        self.wait_status(code, token, "IN_PROGRESS")

    def test_f_ttl_seconds(self):
        """MOTCUA_PAYMENT_TTL_SECONDS: the order expires by itself, unpaid."""
        intake = self.intake
        intake.terminate()
        intake.env = dict(intake.env, MOTCUA_PAYMENT_TTL_SECONDS="2")
        intake.start()
        try:
            code, token, order_id = self.submit()
            harness.wait_for(lambda: self.order(order_id)["state"] == "expired", timeout=20,
                             what="expiry after 2 s")
            self.wait_delivered(code, "PaymentFailed")
            self.assertEqual(self.outbox(code, "PaymentSettled")[0], 0)
        finally:
            intake.terminate()
            intake.env = self.s.env
            intake.start()

    def test_h_refund_gateway_down(self):
        code, token, order_id = self.paid_in_sandbox()
        self.sandbox("POST", "/vnpay/control", {"mode": "down"})
        try:
            self.withdraw(code)
            harness.wait_for(lambda: (lambda r: r and r["tries"] >= 3)(self.refund_of(order_id)),
                             timeout=20, what="refund tried while the gateway is down")
            refund = self.refund_of(order_id)
            self.assertEqual(refund["state"], "requested")
            self.assertIn("HTTP 503", refund["last_error"])
            self.assertEqual(self.outbox(code, "RefundCompleted")[0], 0)
        finally:
            self.sandbox("POST", "/vnpay/control", {"mode": "ok"})
        harness.wait_for(lambda: self.refund_of(order_id)["state"] == "completed", timeout=30,
                         what="refund completed once the gateway is back")
        self.assertEqual(len(self.refunds_at_gateway(order_id)), 1)
        self.wait_delivered(code, "RefundCompleted")

    def test_i_refund_forged_answer(self):
        code, token, order_id = self.paid_in_sandbox()
        self.sandbox("POST", "/vnpay/control", {"mode": "forge"})
        try:
            self.withdraw(code)
            harness.wait_for(lambda: (lambda r: r and r["tries"] >= 2)(self.refund_of(order_id)),
                             timeout=20, what="refund answered with a forged hash")
            refund = self.refund_of(order_id)
            # The answer said 00, but its hash is wrong: not believed, not completed.
            self.assertEqual(refund["state"], "requested")
            self.assertIn("bad vnp_SecureHash", refund["last_error"])
            self.assertEqual(self.outbox(code, "RefundCompleted")[0], 0)
        finally:
            self.sandbox("POST", "/vnpay/control", {"mode": "ok"})
        # The next try is a duplicate (94) at the gateway; its list shows the refund.
        harness.wait_for(lambda: self.refund_of(order_id)["state"] == "completed", timeout=30,
                         what="refund settled by the gateway's list")
        self.assertEqual(self.refund_of(order_id)["response_code"], "94")
        self.assertEqual(len(self.refunds_at_gateway(order_id)), 1)
        self.wait_delivered(code, "RefundCompleted")

    def test_j_reconciliation_mismatches(self):
        today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 7 * 3600))
        # Paid here (written into the database) but never seen by the gateway.
        code, token, order_id = self.submit()
        self.sql("UPDATE payment.orders SET state = 'paid', paid_at = now(),"
                 " bank_transaction = '99999999' WHERE id = '%s'" % order_id)
        # Paid at the gateway for an order motcua never made.
        self.sandbox("POST", "/vnpay/transactions", {"txn": "ZZNOTOURS234", "amount": 12000})
        # Operators only.
        status, _ = harness.http("POST", self.payment.url("/v1/payments/reconciliation"),
                                 {"date": today})
        self.assertEqual(status, 401)
        status, _ = harness.http("POST", self.payment.url("/v1/payments/reconciliation"),
                                 {"date": "2026-13-45"},
                                 {"Authorization": "Bearer " + self.s.operator})
        self.assertEqual(status, 400)
        run = self.reconcile(today)
        found = {(m["order_id"], m["kind"]): m for m in run["mismatches"]}
        self.assertIn((order_id, "paid_here_only"), found, run)
        self.assertEqual(found[(order_id, "paid_here_only")]["our_amount_vnd"], FEE)
        self.assertIn(("ZZNOTOURS234", "paid_at_gateway_only"), found, run)
        self.assertEqual(found[("ZZNOTOURS234", "paid_at_gateway_only")]["gateway_amount_vnd"],
                         12000)
        self.assertEqual(run["mismatch_count"], len(run["mismatches"]))
        # The last run of the day is shown; each mismatch is a warn line.
        status, shown = harness.http("GET", self.payment.url(
            "/v1/payments/reconciliation?date=" + today),
            headers={"Authorization": "Bearer " + self.s.operator})
        self.assertEqual(status, 200, shown)
        self.assertEqual(shown, run)
        with open(self.payment.log_path, errors="replace") as f:
            log = f.read()
        self.assertIn("mismatch, order ZZNOTOURS234", log)
        self.assertIn("mismatch, order %s" % order_id, log)
        status, _ = harness.http("GET", self.payment.url(
            "/v1/payments/reconciliation?date=2001-01-01"),
            headers={"Authorization": "Bearer " + self.s.operator})
        self.assertEqual(status, 404)

    def test_g_return_page_forged(self):
        params = self.ipn_params("NOSUCHORDER1")
        params["vnp_SecureHash"] = "0" * 128
        status, _, page = get_raw(self.payment.url("/v1/payments/return?")
                                  + urllib.parse.urlencode(params))
        self.assertEqual(status, 200)
        self.assertIn("Dữ liệu không hợp lệ", page)
        self.assertNotIn("thành công", page.replace("không thành công", ""))
        # The order view needs a key.
        status, _ = harness.http("GET", self.payment.url("/v1/payments/NOSUCHORDER1"))
        self.assertEqual(status, 401)


if __name__ == "__main__":
    unittest.main()
