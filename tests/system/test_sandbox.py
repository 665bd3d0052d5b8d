"""test_sandbox.py: black-box test of deploy/sandbox/sandbox.py, the outside-world stand-in.

Starts the real sandbox process on free ports (port 0; the ports are read from its
"ready" log line) with a temporary MOTCUA_SANDBOX_DIR, talks SMTP to it with smtplib
and HTTP with urllib, and stops it with SIGTERM, checking it exits 0.

Run: /usr/bin/python3 -m unittest tests/system/test_sandbox.py -v
"""

import json
import os
import smtplib
import socket
import sys
import tempfile
import time
import unittest
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run from the root, too
import harness  # noqa: E402

SUBJECT = "Hồ sơ G09.20-20260609-0092637 đã được tiếp nhận"
BODY = ("Kính gửi ông Nguyễn Văn Bình,\n"
        "Hồ sơ G09.20-20260609-0092637 (Đăng ký khai sinh) đã được tiếp nhận.\n"
        ".Dòng này bắt đầu bằng dấu chấm.\n"
        "Ngày hẹn trả kết quả: 12/06/2026.\n")
SMS_TEXT = "UBND xã: hồ sơ G09.20-20260609-0092637 đã có kết quả, mời ông/bà đến nhận."
TOKEN = "sandbox-sms-token"


class Sandbox(harness.Sandbox):
    """harness.Sandbox, started, with an SMS helper."""

    def __init__(self, directory, extra_env=None):
        super().__init__(directory, extra_env)
        self.start()

    def send_sms(self, body, token=TOKEN, raw=None):
        headers = {"Authorization": "Bearer " + token} if token is not None else {}
        return self.http("POST", "/sms/send", body, headers, raw)


def vietnamese_email(to="nguyen.van.binh@example.vn"):
    msg = EmailMessage()
    msg["From"] = "Trung tâm Phục vụ hành chính công <motcua@tinh.gov.vn>"
    msg["To"] = to
    msg["Subject"] = SUBJECT
    msg.set_content(BODY, charset="utf-8", cte="quoted-printable")
    return msg


class SandboxTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="motcua-sandbox-")
        cls.sb = Sandbox(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        rc = cls.sb.stop()
        logs = "".join(cls.sb.lines)
        cls.tmp.cleanup()
        assert rc == 0, "sandbox exited %r on SIGTERM:\n%s" % (rc, logs)
        assert 'msg="stopped"' in logs, logs

    def setUp(self):
        self.assertEqual(self.sb.http("DELETE", "/smtp/messages")[0], 200)
        self.assertEqual(self.sb.http("DELETE", "/sms/messages")[0], 200)
        self.assertEqual(self.sb.http("POST", "/control/sms", {"mode": "ok"})[0], 200)

    # ---- the sandbox itself ----
    def test_healthz(self):
        status, _, body = self.sb.http("GET", "/healthz")
        self.assertEqual((status, body), (200, {"status": "ok"}))

    def test_unknown_path_is_404_json(self):
        status, _, body = self.sb.http("GET", "/bank/pay")
        self.assertEqual(status, 404)
        self.assertEqual(body["error"]["code"], "not_found")

    def test_logs_are_structured_and_masked(self):
        self.assertEqual(self.sb.send_sms({"to": "+84912345678", "text": "xin chào"})[0], 200)
        time.sleep(0.1)
        lines = [l for l in self.sb.lines if 'msg="sms accepted"' in l]
        self.assertTrue(lines)
        self.assertIn("service=sandbox", lines[-1])
        self.assertIn("level=info", lines[-1])
        self.assertNotIn("+84912345678", "".join(self.sb.lines))
        self.assertIn("to=+84*******78", lines[-1])

    # ---- SMTP ----
    def test_email_utf8_subject_decoded(self):
        msg = vietnamese_email()
        raw = msg.as_bytes(policy=SMTP_POLICY)
        self.assertIn(b"=?utf-8?", raw.split(b"\r\n\r\n")[0])  # the subject really is RFC 2047
        with smtplib.SMTP("127.0.0.1", self.sb.smtp_port, timeout=10) as s:
            code, ehlo = s.ehlo("intake.test")
            self.assertEqual(code, 250)
            self.assertIn(b"8BITMIME", ehlo)
            refused = s.send_message(msg, from_addr="motcua@tinh.gov.vn",
                                     to_addrs=["nguyen.van.binh@example.vn", "van.thu@tinh.gov.vn"])
            self.assertEqual(refused, {})
        status, _, msgs = self.sb.http("GET", "/smtp/messages")
        self.assertEqual(status, 200)
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertRegex(m["id"], r"^smtp-\d+$")
        self.assertEqual(m["mail_from"], "motcua@tinh.gov.vn")
        self.assertEqual(m["rcpt_to"], ["nguyen.van.binh@example.vn", "van.thu@tinh.gov.vn"])
        self.assertEqual(m["subject"], SUBJECT)
        self.assertEqual(m["text"], BODY)  # quoted-printable decoded, dot unstuffed
        self.assertIn("Trung tâm Phục vụ hành chính công", m["from"])
        self.assertIn("Subject: =?utf-8?", m["data"])
        # One e-mail, also in the journal file, with the decoded subject.
        with open(os.path.join(self.tmp.name, "smtp.jsonl"), encoding="utf-8") as f:
            lines = [json.loads(l) for l in f]
        self.assertEqual([l["subject"] for l in lines], [SUBJECT])
        # Filter and single-message lookup.
        self.assertEqual(len(self.sb.http("GET", "/smtp/messages?to=van.thu@tinh.gov.vn")[2]), 1)
        self.assertEqual(self.sb.http("GET", "/smtp/messages?to=nobody@x.vn")[2], [])
        status, _, one = self.sb.http("GET", "/smtp/messages/" + m["id"])
        self.assertEqual((status, one["subject"]), (200, SUBJECT))
        # The HTML page shows it readably.
        status, hdrs, page = self.sb.http("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn("charset=utf-8", hdrs["Content-Type"])
        self.assertIn(SUBJECT, page)

    def test_email_8bit_base64_and_attachment(self):
        msg = EmailMessage()
        msg["From"] = "motcua@tinh.gov.vn"
        msg["To"] = "a@example.vn"
        msg["Subject"] = "Phiếu xin lỗi và hẹn lại ngày trả"
        msg.set_content("Nội dung base64 tiếng Việt\n", charset="utf-8", cte="base64")
        msg.add_alternative("<p>Nội dung <b>HTML</b></p>", subtype="html", cte="8bit")
        msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf",
                           filename="phieu-xin-loi.pdf")
        with smtplib.SMTP("127.0.0.1", self.sb.smtp_port, timeout=10) as s:
            s.send_message(msg)
        m = self.sb.http("GET", "/smtp/messages")[2][0]
        self.assertEqual(m["subject"], "Phiếu xin lỗi và hẹn lại ngày trả")
        self.assertEqual(m["text"], "Nội dung base64 tiếng Việt\n")
        self.assertIn("Nội dung <b>HTML</b>", m["html"])
        self.assertEqual(m["attachments"], [{"filename": "phieu-xin-loi.pdf",
                                             "content_type": "application/pdf", "size": 13}])

    def test_smtp_protocol(self):
        with smtplib.SMTP("127.0.0.1", self.sb.smtp_port, timeout=10) as s:
            self.assertEqual(s.docmd("RCPT", "TO:<a@b.vn>")[0], 503)  # before MAIL
            self.assertEqual(s.helo("desk.test")[0], 250)
            self.assertEqual(s.docmd("DATA")[0], 503)  # before MAIL
            self.assertEqual(s.docmd("MAIL", "FROM:<x@y.vn>")[0], 250)
            self.assertEqual(s.docmd("MAIL", "FROM:<x@y.vn>")[0], 503)  # nested
            self.assertEqual(s.docmd("DATA")[0], 503)  # before RCPT
            self.assertEqual(s.docmd("RSET")[0], 250)
            self.assertEqual(s.docmd("RCPT", "TO:<a@b.vn>")[0], 503)  # RSET forgot MAIL
            self.assertEqual(s.noop()[0], 250)
            self.assertEqual(s.docmd("BOGUS")[0], 500)
            self.assertEqual(s.docmd("MAIL", "FROM:<x@y.vn> SIZE=999999999999")[0], 552)
            s.ehlo("desk.test")
            s.login("notify", "any-password")  # AUTH accepts anything
            s.sendmail("x@y.vn", ["a@b.vn"], b"Subject: plain\r\n\r\n..two dots\r\n.\r\nend\r\n")
            code, _ = s.docmd("QUIT")
            self.assertEqual(code, 221)
            s.close()
        m = self.sb.http("GET", "/smtp/messages")[2][0]
        self.assertEqual(m["auth_user"], "notify")
        self.assertEqual(m["text"], "..two dots\n.\nend\n")  # what was sent, unstuffed
        self.assertEqual(len(self.sb.http("GET", "/smtp/messages")[2]), 1)

    def test_smtp_raw_pipelined_session(self):
        """A client that pipelines and disconnects mid-DATA leaves nothing behind."""
        with socket.create_connection(("127.0.0.1", self.sb.smtp_port), timeout=10) as c:
            f = c.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220 "))
            c.sendall(b"HELO raw.test\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.vn>\r\nDATA\r\n")
            codes = [f.readline()[:3] for _ in range(4)]
            self.assertEqual(codes, [b"250", b"250", b"250", b"354"])
            c.sendall(b"Subject: half\r\n\r\nno end")
        time.sleep(0.2)
        self.assertEqual(self.sb.http("GET", "/smtp/messages")[2], [])

    # ---- SMS ----
    def test_sms_send_and_inspect(self):
        status, _, body = self.sb.send_sms({"to": "+84912345678", "text": SMS_TEXT, "ref": "notif-42"})
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "accepted")
        self.assertRegex(body["id"], r"^sms-\d+$")
        status, _, msgs = self.sb.http("GET", "/sms/messages")
        self.assertEqual(status, 200)
        self.assertEqual(len(msgs), 1)
        self.assertEqual((msgs[0]["id"], msgs[0]["to"], msgs[0]["text"], msgs[0]["ref"]),
                         (body["id"], "+84912345678", SMS_TEXT, "notif-42"))
        self.assertEqual((msgs[0]["encoding"], msgs[0]["segments"]), ("ucs2", 2))
        with open(os.path.join(self.tmp.name, "sms.jsonl"), encoding="utf-8") as f:
            self.assertEqual([json.loads(l)["text"] for l in f], [SMS_TEXT])
        self.assertIn(SMS_TEXT, self.sb.http("GET", "/")[2])
        # ids never repeat, even after clearing
        self.sb.http("DELETE", "/sms/messages")
        second = self.sb.send_sms({"to": "+84912345678", "text": "ok"})[2]["id"]
        self.assertGreater(int(second.split("-")[1]), int(body["id"].split("-")[1]))

    def test_sms_401(self):
        for token in ("wrong", None):
            status, hdrs, body = self.sb.send_sms({"to": "+84912345678", "text": "x"}, token=token)
            self.assertEqual(status, 401, token)
            self.assertEqual(body["error"]["code"], "unauthorized")
            self.assertIn("Bearer", hdrs["WWW-Authenticate"])
        self.assertEqual(self.sb.http("GET", "/sms/messages")[2], [])

    def test_sms_400(self):
        cases = [
            (b"{not json", None),
            (b"[1, 2]", None),
            (json.dumps({"text": "x"}).encode(), "to"),
            (json.dumps({"to": "+84912345678"}).encode(), "text"),
            (json.dumps({"to": "0912345678", "text": "x"}).encode(), "to"),
            (json.dumps({"to": "+84912345678", "text": ""}).encode(), "text"),
            (json.dumps({"to": "+84912345678", "text": "x", "ref": 7}).encode(), "ref"),
        ]
        for raw, field in cases:
            status, _, body = self.sb.send_sms(None, raw=raw)
            self.assertEqual(status, 400, raw)
            self.assertEqual(body["error"].get("field"), field, raw)
        self.assertEqual(self.sb.http("GET", "/sms/messages")[2], [])

    def test_sms_outage_switch(self):
        status, _, state = self.sb.http("POST", "/control/sms", {"mode": "down"})
        self.assertEqual((status, state["mode"]), (200, "down"))
        status, hdrs, body = self.sb.send_sms({"to": "+84912345678", "text": "x"})
        self.assertEqual(status, 503)
        self.assertEqual(body["error"]["code"], "unavailable")
        self.assertEqual(hdrs["Retry-After"], "1")
        self.assertEqual(self.sb.http("GET", "/control/sms")[2]["mode"], "down")
        self.sb.http("POST", "/control/sms", {"mode": "slow", "delay_ms": 300})
        t0 = time.monotonic()
        self.assertEqual(self.sb.send_sms({"to": "+84912345678", "text": "x"})[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.sb.http("POST", "/control/sms", {"mode": "ok"})
        self.assertEqual(self.sb.send_sms({"to": "+84912345678", "text": "y"})[0], 200)
        self.assertEqual([m["text"] for m in self.sb.http("GET", "/sms/messages")[2]], ["x", "y"])
        self.assertEqual(self.sb.http("POST", "/control/sms", {"mode": "sideways"})[0], 400)
        self.assertEqual(self.sb.http("DELETE", "/sms/send")[0], 405)


class RestartTest(unittest.TestCase):
    def test_journal_survives_restart(self):
        with tempfile.TemporaryDirectory(prefix="motcua-sandbox-") as d:
            sb = Sandbox(d, {"MOTCUA_SANDBOX_SMS_TOKEN": "t0ken"})
            try:
                self.assertEqual(sb.send_sms({"to": "+84912345678", "text": "một"}, token="t0ken")[0], 200)
                with smtplib.SMTP("127.0.0.1", sb.smtp_port, timeout=10) as s:
                    s.send_message(vietnamese_email())
            finally:
                self.assertEqual(sb.stop(), 0)
            sb = Sandbox(d, {"MOTCUA_SANDBOX_SMS_TOKEN": "t0ken"})
            try:
                self.assertEqual([m["subject"] for m in sb.http("GET", "/smtp/messages")[2]], [SUBJECT])
                self.assertEqual(sb.send_sms({"to": "+84912345678", "text": "hai"}, token="t0ken")[2]["id"],
                                 "sms-2")
                self.assertEqual([m["text"] for m in sb.http("GET", "/sms/messages")[2]], ["một", "hai"])
            finally:
                self.assertEqual(sb.stop(), 0)


if __name__ == "__main__":
    unittest.main()
