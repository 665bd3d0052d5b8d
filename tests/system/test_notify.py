"""test_notify.py: notifications end to end: intake and routing make real events, notify
sends them through the sandbox's SMTP sink, SMS gateway and chat webhook, and the
sinks are counted: each message arrives once, with the right Vietnamese text.

Covered: e-mail for "received" (RFC 2047 subject decoded by Python's email parser,
due date in the body) and "supplement_requested" (the officer's note); SMS when
there is no e-mail; template list and preview; signed delivery receipts (good, bad,
stale, unknown); SMS gateway down -> retries -> chat; SMTP unreachable -> SMS;
SIGKILL of notify in the middle of a batch and restart -> no message twice;
preferences per applicant (set through the API, keyed by the normalised phone or
the lower-cased e-mail) change the channel used, opt-outs are respected, bad bodies,
wrong scopes and missing keys are refused; the dead-letter list (state=failed,
operator only) and an operator's retry that sends once when the channels are back.

Run: cd tests/system && /usr/bin/python3 run.py test_notify"""
import hashlib
import hmac
import json
import os
import tempfile
import time
import unittest
import uuid

import harness
from harness import e164, new_phone

ROOT = harness.ROOT
with open(os.path.join(ROOT, "deploy", "data", "catalog", "procedures.json"), encoding="utf-8") as _f:
    PROCEDURES = {p["code"]: p for p in json.load(_f)["procedures"]}
BIRTH = "1.001193"  # Đăng ký khai sinh: no fee, steps at the commune
SECRET = "test-receipt-secret"
OFFICER = "Nguyễn Thị Cán Bộ"


def bearer(key):
    return {"Authorization": "Bearer " + key}


class NotifyTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="motcua-notify-")
        cls.sb = harness.Sandbox(os.path.join(cls.tmp.name, "sandbox")).start()
        cls.pg = harness.Postgres()
        try:
            cls.db = cls.pg.database()
            env = harness.suite_env(cls.db)
            env.update({
                "MOTCUA_SMTP_URL": "smtp://127.0.0.1:%d" % cls.sb.smtp_port,
                "MOTCUA_SMS_URL": cls.sb.url("/sms/send"),
                "MOTCUA_CHAT_URL": cls.sb.url("/chat/send"),
                "MOTCUA_SMS_RECEIPT_SECRET": SECRET,
                "MOTCUA_NOTIFY_TICK_MS": "100",
                "MOTCUA_NOTIFY_RETRIES": "3",
                "MOTCUA_NOTIFY_BACKOFF_MS": "200",
                "MOTCUA_NOTIFY_TIMEOUT_MS": "3000",
                "MOTCUA_NOTIFY_LEASE_MS": "4500",
            })
            cls.env = env
            cls.svc = {}
            harness.start_services(cls.svc, ("intake", "routing", "notify"),
                                   env, log_dir=cls.tmp.name)
            cls.agency = PROCEDURES[BIRTH]["steps"][0]["agency"]
            cls.officer = harness.create_api_key(cls.db, "officer-" + cls.agency, "officer",
                                                 cls.agency)["key"]
            cls.operator = harness.create_api_key(cls.db, "operator", "operator")["key"]
            cls.portal = harness.create_api_key(cls.db, "portal", "citizen_portal")["key"]
            cls.integrator = harness.create_api_key(cls.db, "integrator", "integrator")["key"]
        except Exception:
            cls.stop_all()
            raise

    @classmethod
    def stop_all(cls):
        problems = harness.stop_services(getattr(cls, "svc", {}))
        cls.pg.stop()
        cls.sb.stop()
        return problems

    @classmethod
    def tearDownClass(cls):
        problems = cls.stop_all()
        if problems:
            raise AssertionError("; ".join(problems))

    # ------------------------------------------------------------ helpers

    @property
    def notify(self):
        return self.svc["notify"]

    def submit(self, email=None, phone=None):
        p = PROCEDURES[BIRTH]
        applicant = {"name": "Trần Thị Bình", "id_number": "001203004567",
                     "address": "Số 5 phố Hàng Bạc, phường Đông Hưng"}
        if email:
            applicant["email"] = email
        if phone:
            applicant["phone"] = phone
        body = {"procedure": BIRTH, "channel": "direct", "applicant": applicant,
                "documents": [{"kind": d["kind"], "name": d["name"], "sha256": "b" * 64,
                               "size": 2048} for d in p["documents"]],
                "return_method": "counter"}
        status, a = harness.http("POST", self.svc["intake"].url("/v1/dossiers"), body,
                                 dict(bearer(self.officer),  # the desk receives it
                                      **{"Idempotency-Key": str(uuid.uuid4())}))
        self.assertEqual(status, 201, a)
        return a["code"]

    def notifications(self, code):
        status, body = harness.http("GET", self.notify.url("/v1/notifications?dossier=" + code),
                                    headers=bearer(self.operator))
        self.assertEqual(status, 200, body)
        return body["items"]

    def wait_state(self, code, event, states, timeout=30):
        def done():
            items = [n for n in self.notifications(code) if n["event"] == event]
            return items[0] if items and items[0]["state"] in states else None
        return harness.wait_for(done, timeout=timeout, interval=0.1,
                                what="%s of %s in %s" % (event, code, states))

    def sink(self, kind, **query):
        path = {"smtp": "/smtp/messages", "sms": "/sms/messages", "chat": "/chat/messages"}[kind]
        if query:
            path += "?" + "&".join("%s=%s" % (k, v.replace("+", "%2B")) for k, v in query.items())
        status, _, msgs = self.sb.http("GET", path)
        self.assertEqual(status, 200)
        return msgs

    def mails(self, email, code):
        return [m for m in self.sink("smtp", to=email) if code in m["subject"]]

    def act(self, code, action, note=None):
        body = {"action": action, "officer": OFFICER}
        if note:
            body["note"] = note
        status, r = harness.http("POST", self.svc["routing"].url("/v1/dossiers/%s/actions" % code),
                                 body, bearer(self.officer))
        self.assertEqual(status, 200, r)
        return r

    def restart_notify(self, **env):
        s = self.notify
        self.assertEqual(s.terminate(), 0, s.log())
        s.env = dict(self.env, **env)
        s.start()

    def prefs_put(self, body, key=None):
        return harness.http("PUT", self.notify.url("/v1/notifications/preferences"), body,
                            bearer(key or self.portal))

    def prefs_get(self, query, key=None):
        return harness.http("GET", self.notify.url("/v1/notifications/preferences?" + query),
                            headers=bearer(key or self.portal))

    def receipt(self, body, ts=None, secret=SECRET, sig=None):
        raw = json.dumps(body).encode()
        ts = str(int(time.time()) if ts is None else ts)
        mac = hmac.new(secret.encode(), ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
        return harness.http("POST", self.notify.url("/v1/notifications/receipt"), raw,
                            {"Content-Type": "application/json", "X-Timestamp": ts,
                             "X-Signature": sig or mac})

    # ------------------------------------------------------------ tests

    def test_01_received_and_supplement_by_email_once(self):
        email = "binh.%s@example.vn" % uuid.uuid4().hex[:8]
        phone = new_phone()
        code = self.submit(email, phone)
        n = self.wait_state(code, "received", ("sent",))
        self.assertEqual((n["channel"], n["attempts"]), ("email", 1), n)
        m = harness.wait_for(lambda: self.mails(email, code), what="received e-mail")[0]
        self.assertEqual(m["subject"], "Hồ sơ %s đã được tiếp nhận" % code)
        self.assertNotIn("defects", m)
        self.assertIn("Một cửa điện tử", m["from"])
        self.assertIn("Đăng ký khai sinh", m["text"])
        due = n["params"]["due_at"]  # 2026-11-26T17:00:00+07:00
        shown = "%s:%s ngày %s/%s/%s" % (due[11:13], due[14:16], due[8:10], due[5:7], due[0:4])
        self.assertIn("Ngày hẹn trả kết quả: " + shown, m["text"])
        self.assertTrue(m["message_id"] and m["date"], m)

        note = "Bản sao giấy chứng sinh có chứng thực; tờ khai ký tên"
        self.act(code, "request_supplement", note)
        self.wait_state(code, "supplement_requested", ("sent",))
        time.sleep(1.5)  # anything sent twice would have arrived by now
        mails = self.mails(email, code)
        subjects = sorted(x["subject"] for x in mails)
        self.assertEqual(subjects, sorted(["Hồ sơ %s đã được tiếp nhận" % code,
                                           "Hồ sơ %s cần bổ sung" % code]))
        sup = [x for x in mails if "bổ sung" in x["subject"]][0]
        self.assertIn(note, sup["text"])
        self.assertEqual(self.sink("sms", to=e164(phone)), [])

    def test_02_sms_when_no_email(self):
        phone = new_phone()
        code = self.submit(None, phone)
        n = self.wait_state(code, "received", ("sent",))
        self.assertEqual(n["channel"], "sms")
        time.sleep(1)
        sms = self.sink("sms", to=e164(phone))
        self.assertEqual(len(sms), 1, sms)
        self.assertIn("Hồ sơ %s (Đăng ký khai sinh) đã được tiếp nhận" % code, sms[0]["text"])
        self.assertEqual(n["history"][0]["provider_id"], sms[0]["id"])
        type(self).sms_id = sms[0]["id"]
        type(self).sms_code = code

    def test_03_templates_and_preview(self):
        status, t = harness.http("GET", self.notify.url("/v1/templates"))
        self.assertEqual(status, 200, t)
        ids = {i["id"] for i in t["items"]}
        for ev in ("received", "supplement_requested", "payment_due", "payment_confirmed",
                   "overdue_apology", "result_ready", "shipped", "delivered", "delivery_failed",
                   "refused"):
            for ch in ("email", "sms", "chat"):
                self.assertIn("%s.%s" % (ev, ch), ids)
        status, p = harness.http("GET", self.notify.url(
            "/v1/templates/received.email/preview?code=X.1-20260101-0001&procedure=Th%E1%BB%AD"))
        self.assertEqual(status, 200, p)
        self.assertEqual(p["subject"], "Hồ sơ X.1-20260101-0001 đã được tiếp nhận")
        self.assertIn("(Thử)", p["text"])
        self.assertIn("17:00 ngày 26/11/2026", p["text"])  # the sample due date
        status, p = harness.http("GET", self.notify.url("/v1/templates/shipped.sms/preview"))
        self.assertEqual(status, 200, p)
        self.assertIn("EB123456789VN", p["text"])
        status, p = harness.http("GET", self.notify.url("/v1/templates/payment_due.sms/preview"))
        self.assertIn("1.500.000", p["text"])
        # Every step's results, or none: an empty placeholder leaves no double space.
        status, p = harness.http("GET", self.notify.url("/v1/templates/result_ready.sms/preview"))
        self.assertIn("Kết quả: ", p["text"])
        status, p = harness.http("GET", self.notify.url(
            "/v1/templates/result_ready.sms/preview?results="))
        self.assertEqual(status, 200, p)
        self.assertNotIn("Kết quả", p["text"])
        self.assertNotIn("  ", p["text"])
        self.assertEqual(harness.http("GET", self.notify.url(
            "/v1/templates/nothing.email/preview"))[0], 404)
        self.assertEqual(harness.http("GET", self.notify.url(
            "/v1/templates/received.fax/preview"))[0], 400)

    def test_04_receipts(self):
        sms_id, code = self.sms_id, self.sms_code
        self.assertEqual(self.receipt({"id": sms_id, "status": "delivered"},
                                      secret="forged")[0], 401)
        self.assertEqual(self.receipt({"id": sms_id, "status": "delivered"},
                                      ts=int(time.time()) - 3600)[0], 401)
        self.assertEqual(self.receipt({"id": sms_id, "status": "delivered"}, sig="00" * 32)[0], 401)
        status, _ = harness.http("POST", self.notify.url("/v1/notifications/receipt"),
                                 {"id": sms_id, "status": "delivered"})
        self.assertEqual(status, 401)
        self.assertEqual(self.notifications(code)[0]["state"], "sent")
        self.assertEqual(self.receipt({"id": "sms-999999", "status": "delivered"})[0], 404)
        self.assertEqual(self.receipt({"id": sms_id, "status": "maybe"})[0], 400)
        status, r = self.receipt({"id": sms_id, "status": "delivered"})
        self.assertEqual(status, 200, r)
        self.assertEqual(self.receipt({"id": sms_id, "status": "delivered"})[0], 200)  # replay
        n = self.notifications(code)[0]
        self.assertEqual((n["state"], n["history"][0]["state"]), ("delivered", "delivered"))

    def test_05_sms_down_retries_then_chat(self):
        self.assertEqual(self.sb.http("POST", "/control/sms", {"mode": "down"})[0], 200)
        try:
            phone = new_phone()
            code = self.submit(None, phone)
            n = self.wait_state(code, "received", ("sent", "failed"))
        finally:
            self.sb.http("POST", "/control/sms", {"mode": "ok"})
        self.assertEqual((n["state"], n["channel"]), ("sent", "chat"), n)
        self.assertEqual([(a["channel"], a["state"]) for a in n["history"]],
                         [("sms", "failed")] * 3 + [("chat", "sent")])
        self.assertEqual(n["history"][0]["code"], 503)
        time.sleep(1)
        chat = self.sink("chat", phone=e164(phone))
        self.assertEqual(len(chat), 1, chat)
        self.assertIn(code, chat[0]["text"])
        self.assertEqual(self.sink("sms", to=e164(phone)), [])

    def test_06_every_channel_down_is_a_dead_letter(self):
        self.sb.http("POST", "/control/sms", {"mode": "down"})
        self.sb.http("POST", "/control/chat", {"mode": "down"})
        try:
            code = self.submit(None, new_phone())
            n = self.wait_state(code, "received", ("sent", "failed"))
        finally:
            self.sb.http("POST", "/control/sms", {"mode": "ok"})
            self.sb.http("POST", "/control/chat", {"mode": "ok"})
        self.assertEqual(n["state"], "failed")
        self.assertEqual(len(n["history"]), 6)
        self.assertIn("HTTP 503", n["last_error"])

    def test_07_smtp_unreachable_falls_back_to_sms(self):
        closed = harness.free_port()
        self.restart_notify(MOTCUA_SMTP_URL="smtp://127.0.0.1:%d" % closed)
        try:
            email = "an.%s@example.vn" % uuid.uuid4().hex[:8]
            phone = new_phone()
            code = self.submit(email, phone)
            n = self.wait_state(code, "received", ("sent", "failed"))
        finally:
            self.restart_notify()
        self.assertEqual((n["state"], n["channel"]), ("sent", "sms"), n)
        self.assertEqual([a["channel"] for a in n["history"]], ["email"] * 3 + ["sms"])
        time.sleep(1)
        self.assertEqual(len(self.sink("sms", to=e164(phone))), 1)
        self.assertEqual(self.mails(email, code), [])

    def test_08_sigkill_mid_batch_sends_nothing_twice(self):
        # Slow the e-mail channel so that the batch is still going when notify dies.
        self.restart_notify(MOTCUA_NOTIFY_RATE_EMAIL="4")
        made = []
        for i in range(12):
            email = "kill%d.%s@example.vn" % (i, uuid.uuid4().hex[:6])
            made.append((self.submit(email, new_phone()), email))
        harness.wait_for(lambda: any(self.mails(e, c) for c, e in made), what="first e-mail")
        self.notify.kill()
        self.notify.env = dict(self.env)
        self.notify.start()

        def settled():
            states = [(self.notifications(c) or [{"state": "not yet"}])[0]["state"]
                      for c, _ in made]
            return states if all(s in ("sent", "unknown") for s in states) else None
        states = harness.wait_for(settled, timeout=60, what="every notification settled")
        time.sleep(1)
        for (code, email), state in zip(made, states):
            got = len(self.mails(email, code))
            self.assertLessEqual(got, 1, "e-mail for %s sent %d times" % (code, got))
            if state == "sent":
                self.assertEqual(got, 1, code)
            n = self.notifications(code)[0]
            self.assertEqual(len(n["history"]), 1, n)  # never attempted again
        self.assertGreaterEqual(states.count("sent"), 1)

    def test_09_preferences_choose_the_channel(self):
        # Phone only, written the national way: chat first, then SMS.
        phone = new_phone()
        status, r = self.prefs_put({"phone": phone, "channels": ["chat", "sms"]})
        self.assertEqual(status, 200, r)
        self.assertEqual(r["items"][0]["contact"], e164(phone))
        self.assertEqual((r["items"][0]["kind"], r["items"][0]["channels"],
                          r["items"][0]["opt_out"]), ("phone", ["chat", "sms"], []))
        status, g = self.prefs_get("phone=%2B84" + phone[1:], key=self.officer)
        self.assertEqual(status, 200, g)
        self.assertEqual(g["channels"], ["chat", "sms"])
        code = self.submit(None, phone)
        n = self.wait_state(code, "received", ("sent", "failed"))
        self.assertEqual((n["state"], n["channel"], n["channels"]), ("sent", "chat", ["chat", "sms"]),
                         n)
        # E-mail and phone, preferences on the e-mail only (given in capitals): SMS
        # first, chat opted out.
        email = "Lan.%s@Example.VN" % uuid.uuid4().hex[:8]
        phone2 = new_phone()
        status, r = self.prefs_put({"email": email, "channels": ["sms", "email"],
                                    "opt_out": ["chat"]}, key=self.operator)
        self.assertEqual(status, 200, r)
        self.assertEqual(r["items"][0]["contact"], email.lower())
        status, g = self.prefs_get("email=" + email.lower())
        self.assertEqual((status, g["opt_out"]), (200, ["chat"]), g)
        code2 = self.submit(email.lower(), phone2)
        n2 = self.wait_state(code2, "received", ("sent", "failed"))
        self.assertEqual((n2["channel"], n2["channels"]), ("sms", ["sms", "email"]), n2)
        time.sleep(1)
        self.assertEqual(len(self.sink("chat", phone=e164(phone))), 1)
        self.assertEqual(self.sink("sms", to=e164(phone)), [])
        self.assertEqual(len(self.sink("sms", to=e164(phone2))), 1)
        self.assertEqual(self.mails(email.lower(), code2), [])
        self.assertEqual(self.sink("chat", phone=e164(phone2)), [])

    def test_10_opt_out_and_the_phone_wins(self):
        email = "minh.%s@example.vn" % uuid.uuid4().hex[:8]
        phone = new_phone()
        # The e-mail's preferences would send an e-mail; the phone's win, and its
        # opt-out of e-mail holds whatever the other contact says.
        self.assertEqual(self.prefs_put({"email": email, "channels": ["email", "chat"]})[0], 200)
        status, r = self.prefs_put({"phone": e164(phone), "channels": ["sms"],
                                    "opt_out": ["email"]})
        self.assertEqual(status, 200, r)
        code = self.submit(email, phone)
        n = self.wait_state(code, "received", ("sent", "failed"))
        self.assertEqual((n["state"], n["channel"], n["channels"]), ("sent", "sms", ["sms"]), n)
        # Both contacts at once; everything the applicant has opted out of.
        email2 = "hoa.%s@example.vn" % uuid.uuid4().hex[:8]
        phone2 = new_phone()
        status, r = self.prefs_put({"phone": phone2, "email": email2, "channels": ["chat"],
                                    "opt_out": ["email", "sms"]})
        self.assertEqual(status, 200, r)
        self.assertEqual([i["kind"] for i in r["items"]], ["phone", "email"])
        # Updating replaces: now the applicant wants nothing but e-mail, which has no
        # address here -> nothing to send on.
        status, r = self.prefs_put({"phone": phone2, "channels": ["email"],
                                    "opt_out": ["sms", "chat"]})
        self.assertEqual(status, 200, r)
        code2 = self.submit(None, phone2)
        n2 = self.wait_state(code2, "received", ("sent", "failed"))
        self.assertEqual((n2["state"], n2["channels"], n2["history"]), ("failed", [], []), n2)
        time.sleep(1)
        self.assertEqual(len(self.sink("sms", to=e164(phone))), 1)
        self.assertEqual(self.mails(email, code), [])
        self.assertEqual(self.sink("sms", to=e164(phone2)), [])
        self.assertEqual(self.sink("chat", phone=e164(phone2)), [])
        # Nothing to send on: a retry cannot help.
        status, r = harness.http("POST", self.notify.url("/v1/notifications/%d/retry" % n2["id"]),
                                 headers=bearer(self.operator))
        self.assertEqual((status, r["error"]["code"]), (409, "conflict"), r)

    def test_11_preferences_refused(self):
        phone = new_phone()
        bad = [
            ({"channels": ["sms"]}, "phone"),
            ({"phone": "12ab", "channels": ["sms"]}, "phone"),
            ({"phone": 912345678, "channels": ["sms"]}, "phone"),
            ({"email": "no-at-sign", "channels": ["sms"]}, "email"),
            ({"email": "a b@example.vn", "channels": ["sms"]}, "email"),
            ({"phone": phone}, "channels"),
            ({"phone": phone, "channels": []}, "channels"),
            ({"phone": phone, "channels": ["fax"]}, "channels"),
            ({"phone": phone, "channels": ["sms", "sms"]}, "channels"),
            ({"phone": phone, "channels": "sms"}, "channels"),
            ({"phone": phone, "channels": ["sms"], "opt_out": ["sms"]}, "opt_out"),
            ({"phone": phone, "channels": ["sms"], "opt_out": "chat"}, "opt_out"),
            ({"phone": phone, "channels": ["sms"], "opt_out": ["pigeon"]}, "opt_out"),
        ]
        for body, field in bad:
            status, r = self.prefs_put(body)
            self.assertEqual(status, 400, (body, r))
            self.assertEqual((r["error"]["code"], r["error"]["field"]), ("invalid", field), body)
        status, r = harness.http("PUT", self.notify.url("/v1/notifications/preferences"),
                                 b"not json", dict(bearer(self.portal),
                                                   **{"Content-Type": "application/json"}))
        self.assertEqual(status, 400, r)
        self.assertEqual(self.prefs_get("phone=" + phone)[0], 404)  # nothing was stored
        self.assertEqual(self.prefs_get("phone=abc")[0], 400)
        self.assertEqual(self.prefs_get("")[0], 400)
        self.assertEqual(self.prefs_get("phone=%s&email=a@example.vn" % phone)[0], 400)
        good = {"phone": phone, "channels": ["sms"]}
        self.assertEqual(self.prefs_put(good, key=self.integrator)[0], 403)
        self.assertEqual(self.prefs_get("phone=" + phone, key=self.integrator)[0], 403)
        url = self.notify.url("/v1/notifications/preferences")
        self.assertEqual(harness.http("PUT", url, good)[0], 401)
        self.assertEqual(harness.http("GET", url + "?phone=" + phone)[0], 401)
        self.assertEqual(self.prefs_get("phone=" + phone)[0], 404)

    def test_12_dead_letters_and_retry(self):
        self.sb.http("POST", "/control/sms", {"mode": "down"})
        self.sb.http("POST", "/control/chat", {"mode": "down"})
        try:
            phone = new_phone()
            code = self.submit(None, phone)
            n = self.wait_state(code, "received", ("sent", "failed"))
            self.assertEqual(n["state"], "failed", n)
            # Still down: the dead-letter list has it, newest first, with the reason.
            status, dl = harness.http("GET", self.notify.url(
                "/v1/notifications?state=failed&limit=5"), headers=bearer(self.operator))
            self.assertEqual(status, 200, dl)
            self.assertEqual(dl["items"][0]["id"], n["id"], dl)
            self.assertEqual((dl["limit"], dl["offset"]), (5, 0))
            self.assertGreaterEqual(dl["total"], 2)  # test_06's too
            dead = dl["items"][0]
            self.assertEqual((dead["dossier"], dead["attempts"]), (code, 6))
            self.assertIn("HTTP 503", dead["last_error"])
            ids = [i["id"] for i in dl["items"]]
            status, page2 = harness.http("GET", self.notify.url(
                "/v1/notifications?state=failed&limit=1&offset=1"), headers=bearer(self.operator))
            self.assertEqual((status, page2["items"][0]["id"]), (200, ids[1]), page2)
        finally:
            self.sb.http("POST", "/control/sms", {"mode": "ok"})
            self.sb.http("POST", "/control/chat", {"mode": "ok"})
        # Across dossiers is the operator's; a dossier's list stays the officer's too.
        for query, key, want in (("state=failed", self.officer, 403),
                                 ("state=failed", None, 401),
                                 ("state=lost", self.operator, 400),
                                 ("state=failed&limit=0", self.operator, 400),
                                 ("state=failed&offset=-1", self.operator, 400),
                                 ("", self.operator, 400),
                                 ("dossier=%s&state=failed" % code, self.officer, 200)):
            status, r = harness.http("GET", self.notify.url("/v1/notifications?" + query),
                                     headers=bearer(key) if key else None)
            self.assertEqual(status, want, (query, r))
        retry = self.notify.url("/v1/notifications/%d/retry" % n["id"])
        self.assertEqual(harness.http("POST", retry, headers=bearer(self.officer))[0], 403)
        self.assertEqual(harness.http("POST", retry)[0], 401)
        self.assertEqual(harness.http("POST", self.notify.url("/v1/notifications/x/retry"),
                                      headers=bearer(self.operator))[0], 400)
        self.assertEqual(harness.http("POST", self.notify.url("/v1/notifications/999999/retry"),
                                      headers=bearer(self.operator))[0], 404)
        status, r = harness.http("POST", retry, headers=bearer(self.operator))
        self.assertEqual(status, 200, r)
        self.assertEqual((r["state"], r["round"], r["from_state"]), ("pending", 2, "failed"))
        n = self.wait_state(code, "received", ("sent", "failed"))
        self.assertEqual((n["state"], n["channel"], n["round"]), ("sent", "sms", 2), n)
        self.assertEqual([(a["channel"], a["state"], a["round"]) for a in n["history"][6:]],
                         [("sms", "sent", 2)])
        self.assertEqual([(x["round"], x["from_state"], x["by"]) for x in n["retries"]],
                         [(2, "failed", "operator")])
        self.assertIn("HTTP 503", n["retries"][0]["last_error"])
        # Sent now: not a dead letter any more, and not retried again.
        status, r = harness.http("POST", retry, headers=bearer(self.operator))
        self.assertEqual((status, r["error"]["code"]), (409, "conflict"), r)
        status, dl = harness.http("GET", self.notify.url("/v1/notifications?state=failed"),
                                  headers=bearer(self.operator))
        self.assertNotIn(n["id"], [i["id"] for i in dl["items"]])
        time.sleep(1)
        self.assertEqual(len(self.sink("sms", to=e164(phone))), 1)
        self.assertEqual(self.sink("chat", phone=e164(phone)), [])


if __name__ == "__main__":
    unittest.main()
