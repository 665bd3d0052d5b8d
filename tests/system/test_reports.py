"""Routing applies what the edge services report: a fee paid online moves a dossier
from AWAITING_PAYMENT to IN_PROGRESS with its clock running again; a result delivered
by post makes it RETURNED; a report that no longer fits the state changes nothing but
is recorded. The reports are real envelopes sent over ZeroMQ to routing's ROUTER, as
payment and postal send them (encoded by hand: a second, independent encoder of the
protobuf contract)."""
import time
import unittest
import uuid

import zmq

import harness
from test_bus_crash import field

WARD = "000.00.31.H99"  # Phường Đông Hưng: its desk and civil-status officer are below it
DESK = "000.01.31.H99"  # the ward's one-stop desk: it receives the dossiers submitted here
FEE_PROCEDURE = "2.000635"  # Cấp bản sao Trích lục hộ tịch: level 4, 8,000 VND, by post
DOCS = [{"kind": "to_khai_cap_ban_sao_trich_luc", "name": "Tờ khai"}]


def envelope(body_field, body, code, source, type_name):
    message_id = str(uuid.uuid4())
    data = (field(1, message_id) + field(2, type_name) + field(3, code) + field(5, message_id) +
            field(6, source) + field(8, 1) + field(body_field, body))
    return message_id, data


class ReportsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres()
        cls.db = cls.pg.database()
        cls.env = harness.suite_env(cls.db)
        cls.svc = {n: harness.Service(n, cls.env) for n in ("intake", "routing", "postal", "notify")}
        for s in cls.svc.values():
            s.start()
        cls.key = harness.create_api_key(cls.db, "ward", "officer", WARD)["key"]
        # Who submits: the citizen portal online, the desk's officer at the desk.
        cls.submitters = {
            "online": harness.create_api_key(cls.db, "portal", "citizen_portal")["key"],
            "direct": harness.create_api_key(cls.db, "desk", "officer", DESK)["key"]}

    @classmethod
    def tearDownClass(cls):
        for s in cls.svc.values():
            s.terminate()
        cls.pg.stop()

    def submit(self, channel, **extra):
        body = dict({"procedure": FEE_PROCEDURE, "channel": channel,
                     "applicant": {"name": "Phạm Thị E", "phone": "0912345670",
                                   "email": "e@example.vn"},
                     "documents": DOCS}, **extra)
        status, answer = harness.http("POST", self.svc["intake"].url("/v1/dossiers"), body,
                                      {"Authorization": "Bearer " + self.submitters[channel]})
        self.assertEqual(status, 201, answer)
        code = answer["code"]
        harness.wait_for(lambda: self.case(code), what="the case")
        return code

    def case(self, code):
        return harness.case(self.svc["routing"], self.key, code)

    def wait_state(self, code, state, what):
        return harness.wait_case_state(self.svc["routing"], self.key, code, state, what=what)

    def act(self, code, action, note=None):
        status, body = harness.http(
            "POST", self.svc["routing"].url("/v1/dossiers/%s/actions" % code),
            {"action": action, "note": note, "officer": "Trần Thị B"},
            {"Authorization": "Bearer " + self.key})
        self.assertEqual(status, 200, body)
        return body

    def report(self, body_field, body, code, source, type_name):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 15000)
        sock.connect(self.env["MOTCUA_ROUTING_BUS"])
        message_id, data = envelope(body_field, body, code, source, type_name)
        sock.send_multipart([message_id.encode(), data])
        reply = sock.recv()
        sock.close()
        self.assertIn(message_id.encode(), reply, "acknowledged")
        self.assertEqual(self.pg.sql("SELECT count(*) FROM routing.dead_letters", self.db), "0",
                         self.pg.sql("SELECT string_agg(reason, '; ') FROM routing.dead_letters",
                                     self.db))

    def test_fee_paid_moves_the_case_on(self):
        code = self.submit("online")
        self.act(code, "receive")
        case = self.case(code)
        self.assertEqual((case["state"], case["paused"]), ("AWAITING_PAYMENT", True))
        paid = field(1, code) + field(2, "ORDER1") + field(3, 8000) + field(4, "TXN9")
        self.report(25, paid, code, "payment", "PaymentSettled")
        case = self.wait_state(code, "IN_PROGRESS", "IN_PROGRESS after payment")
        self.assertFalse(case["paused"])
        self.assertIn("fee paid online: 8000 VND, order ORDER1", case["events"][-1]["note"])
        self.assertEqual(case["events"][-1]["actor"], "payment")
        self.assertEqual(self.pg.sql("SELECT count(*) FROM routing.pauses WHERE code = '%s'"
                                     " AND ended_at IS NOT NULL AND kind = 'payment'" % code,
                                     self.db), "1")
        notes = harness.wait_for(lambda: self.pg.sql(
            "SELECT string_agg(event, ',' ORDER BY id) FROM notify.notifications WHERE code = '%s'"
            % code, self.db) or None, what="notifications")
        harness.wait_for(lambda: "payment_confirmed" in self.pg.sql(
            "SELECT string_agg(event, ',') FROM notify.notifications WHERE code = '%s'" % code,
            self.db), what="payment_confirmed notification")
        self.assertIn("payment_due", notes)  # received online with a fee owed: pay first
        # The same report again (a new message id, as a resent IPN would give): recorded,
        # nothing changes.
        self.report(25, paid, code, "payment", "PaymentSettled")
        case = harness.wait_for(lambda: (lambda c: c if len(c["events"]) >= 4 else None)(
            self.case(code)), what="the late report recorded")
        self.assertEqual(case["state"], "IN_PROGRESS")
        self.assertIn("nothing changes", case["events"][-1]["note"])

    def test_result_by_post_delivered(self):
        code = self.submit("direct", return_method="post",
                           delivery_address="Số 1 Đường Lê Lợi, phường Đông Hưng")
        for action in ("forward", "forward", "approve", "result_ready"):
            self.act(code, action)
        shipment = harness.wait_for(lambda: self.pg.sql(
            "SELECT delivery_address || '|' || state FROM postal.shipments WHERE code = '%s'"
            % code, self.db) or None, what="the shipment request")
        self.assertEqual(shipment, "Số 1 Đường Lê Lợi, phường Đông Hưng|requested")
        failed = field(1, code) + field(2, "VN123") + field(3, "không có người nhận")
        self.report(30, failed, code, "postal", "DeliveryFailed")
        delivered = field(1, code) + field(2, "VN123") + field(3, int(time.time() * 1000))
        self.report(29, delivered, code, "postal", "ResultDelivered")
        case = self.wait_state(code, "RETURNED", "RETURNED")
        notes = [e["note"] for e in case["events"]]
        self.assertTrue(any("a delivery attempt failed" in n for n in notes), notes)
        self.assertIn("result delivered by post, tracking VN123", notes[-1])

    def chain(self):
        """A birth registration of the liên thông chain, handed off to the police."""
        body = {"procedure": "1.012746", "channel": "direct",
                "applicant": {"name": "Lê Văn C", "phone": "0912345679"},
                "documents": [{"kind": "to_khai_lien_thong_khai_sinh", "name": "Tờ khai"},
                              {"kind": "giay_chung_sinh", "name": "Giấy chứng sinh"}]}
        status, answer = harness.http("POST", self.svc["intake"].url("/v1/dossiers"), body,
                                      {"Authorization": "Bearer " + self.submitters["direct"]})
        self.assertEqual(status, 201, answer)
        code = answer["code"]
        harness.wait_for(lambda: self.case(code), what="the case")
        for _ in range(3):
            self.act(code, "forward")
        case = self.case(code)
        self.assertEqual((case["state"], case["step"]), ("HANDED_OFF", 3))
        return code

    def test_handoffs_completed_move_along_the_chain(self):
        code = self.chain()
        police = field(1, code) + field(2, 3) + field(3, "G09.99.31") + field(4, "Đã đăng ký thường trú")
        self.report(31, police, code, "interconnect", "HandoffCompleted")
        # The next step (social insurance) is outside motcua too: handed off again.
        case = harness.wait_for(lambda: (lambda c: c if c["step"] == 4 else None)(self.case(code)),
                                what="step 4")
        self.assertEqual(case["state"], "HANDED_OFF")
        self.assertIsNotNone(case["steps"][3]["done_at"])
        self.assertEqual(self.pg.sql(
            "SELECT count(*) FROM routing.outbox WHERE dossier_code = '%s' AND type ="
            " 'HandoffRequested'" % code, self.db), "2")
        card = field(1, code) + field(2, 4) + field(3, "G12.99.01") + field(4, "Thẻ BHYT số 123")
        self.report(31, card, code, "interconnect", "HandoffCompleted")
        case = harness.wait_for(lambda: (lambda c: c if c["state"] == "IN_PROGRESS" else None)(
            self.case(code)), what="back in progress after the last step")
        self.assertIn("Thẻ BHYT số 123", case["events"][-1]["note"])
        self.act(code, "approve")  # the last step is done: the officer approves
        self.assertEqual(self.case(code)["state"], "APPROVED")

    def test_handoff_refused_gives_the_step_back(self):
        code = self.chain()
        refused = field(1, code) + field(2, 3) + field(3, "G09.99.31") + \
            field(4, "Giấy tờ chỗ ở không hợp lệ") + field(5, 1)
        self.report(32, refused, code, "interconnect", "HandoffFailed")
        case = harness.wait_for(lambda: (lambda c: c if c["state"] == "IN_PROGRESS" else None)(
            self.case(code)), what="in progress again")
        self.assertEqual(case["step"], 2)
        self.assertIn("refused its step: Giấy tờ chỗ ở không hợp lệ", case["events"][-1]["note"])
        # A report for a step the case is not at changes nothing.
        stale = field(1, code) + field(2, 4) + field(3, "G12.99.01") + field(4, "late")
        self.report(31, stale, code, "interconnect", "HandoffCompleted")
        case = harness.wait_for(lambda: (lambda c: c if "the case is at step 2" in
                                         c["events"][-1]["note"] else None)(self.case(code)),
                                what="the stale report recorded")
        self.assertEqual((case["state"], case["step"]), ("IN_PROGRESS", 2))
        # The officers hand it off again (or refuse the dossier).
        self.act(code, "forward")
        self.assertEqual(self.case(code)["state"], "HANDED_OFF")

    def test_unknown_dossier_is_a_dead_letter(self):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 15000)
        sock.connect(self.env["MOTCUA_ROUTING_BUS"])
        message_id, data = envelope(29, field(1, "NO-SUCH") + field(2, "X"), "NO-SUCH", "postal",
                                    "ResultDelivered")
        sock.send_multipart([message_id.encode(), data])
        self.assertIn(message_id.encode(), sock.recv())
        sock.close()
        reason = self.pg.sql("SELECT reason FROM routing.dead_letters WHERE message_id = '%s'"
                             % message_id, self.db)
        self.assertIn("does not know", reason)


if __name__ == "__main__":
    unittest.main()
