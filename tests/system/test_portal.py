"""National-portal synchronisation and the inbound-dossier path, end to end, on the real
services (intake, routing, interconnect, notify), a private PostgreSQL and the sandbox's
national portal (deploy/sandbox/national_portal.py): every status change of a dossier
reaches the portal in order; the portal down, then failing, then up loses nothing and
duplicates nothing; a dossier the portal forgot is sent again by reconciliation; a
dossier submitted on the portal becomes a dossier at intake with its national
reference, and its statuses go back under the national code; forged, stale and
malformed portal dossiers are refused and store nothing; a reference without an API
key is 403; SIGKILL of interconnect in the middle of a push loses nothing.

Run: cd tests/system && /usr/bin/python3 run.py test_portal"""
import hashlib
import hmac
import json
import os
import re
import time
import unittest
import urllib.error
import urllib.request
import uuid

import harness

BIRTH = "1.001193"  # Đăng ký khai sinh: level 4, no fee, three commune steps
TOKEN = "test-portal-token"
SECRET = "test-portal-secret"
with open(os.path.join(harness.ROOT, "deploy", "data", "catalog", "procedures.json")) as f:
    _procs = json.load(f)
PROCEDURE = next(p for p in (_procs if isinstance(_procs, list) else _procs["procedures"])
                 if p["code"] == BIRTH)
STEPS = [st["agency"] for st in PROCEDURE["steps"]]
STAMP = re.compile(r"^\d{14}$")


def sign(ts, raw, secret=SECRET):
    """Written from docs/portal.md: hex HMAC-SHA256 over "<timestamp>.<raw body>"."""
    return hmac.new(secret.encode(), str(ts).encode() + b"." + raw, hashlib.sha256).hexdigest()


def portal_dossier(national=None, procedure=BIRTH):
    """A dossier in the portal's shape (docs/portal.md)."""
    d = {"procedure_code": procedure,
         "applicant": {"type": "citizen", "name": "Lê Văn Cổng", "id_number": "001203009999",
                       "phone": "0912000111", "email": "cong@example.vn",
                       "address": "Thôn 3, xã Tân Lập"},
         "documents": [{"kind": d["kind"], "name": d["name"], "sha256": "c" * 64, "size": 1024}
                       for d in PROCEDURE["documents"]],
         "return_method": "online", "submitted_at": time.strftime("%Y%m%d%H%M%S")}
    if national:
        d["national_code"] = national
    return d


class Suite(harness.Suite):
    @classmethod
    def start(cls):
        cls.pg = harness.Postgres()
        cls.svc = {}
        cls.sandbox = None
        try:
            cls.db = cls.pg.database()
            env = harness.suite_env(cls.db)
            cls.logs = harness.tempfile.mkdtemp(prefix="motcua-portal-")
            inbound = "http://127.0.0.1:%s/v1/portal/dossiers" % env[
                "MOTCUA_INTERCONNECT_HTTP_PORT"]
            cls.sandbox = harness.Sandbox("", {"MOTCUA_PORTAL_TOKEN": TOKEN,
                                               "MOTCUA_PORTAL_SECRET": SECRET,
                                               "MOTCUA_PORTAL_INBOUND_URL": inbound},
                                          log_dir=cls.logs).start()
            env.update(MOTCUA_ROUTING_SWEEP_MS="200", MOTCUA_INTERCONNECT_TICK_MS="200",
                       MOTCUA_INTERCONNECT_BACKOFF_MS="300", MOTCUA_INTERCONNECT_TIMEOUT_MS="2000",
                       MOTCUA_INTERCONNECT_LEASE_MS="3500",
                       MOTCUA_PORTAL_URL=cls.sandbox.base + "/portal/api",
                       MOTCUA_PORTAL_TOKEN=TOKEN, MOTCUA_PORTAL_SECRET=SECRET,
                       MOTCUA_PORTAL_RECONCILE_HOUR="-1")
            cls.svc = {n: harness.Service(n, env, log_dir=cls.logs)
                       for n in ("intake", "routing", "notify", "interconnect")}
            for n in ("intake", "routing", "notify"):
                cls.svc[n].start(wait=False)
            for n in ("intake", "routing", "notify"):
                cls.svc[n].wait_ready()
            cls.integrator = harness.create_api_key(cls.db, "national-portal", "integrator")["key"]
            cls.operator = harness.create_api_key(cls.db, "operator", "operator")["key"]
            cls.citizen = harness.create_api_key(cls.db, "citizen-portal", "citizen_portal")["key"]
            cls.keys = harness.officer_keys(cls.db, sorted(set(STEPS)))
            env["MOTCUA_INTERCONNECT_INTAKE_KEY"] = cls.integrator
            cls.env = env
            cls.svc["interconnect"].start()
        except Exception:
            cls.stop()
            raise
        return cls


setUpModule, tearDownModule = Suite.module_hooks()


class Portal(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.s = Suite
        cls.intake, cls.routing = Suite.svc["intake"], Suite.svc["routing"]
        cls.interconnect = Suite.svc["interconnect"]

    def tearDown(self):
        self.control(mode="ok", fail_next=0)

    # ------------------------------------------------------------ helpers

    def sql(self, q):
        return self.s.pg.sql(q, self.s.db)

    def bearer(self, key):
        return {"Authorization": "Bearer " + key}

    def control(self, **fields):
        status, _, body = self.s.sandbox.http("POST", "/control/portal", fields)
        self.assertEqual(status, 200, body)
        return body

    def submit(self, **extra):
        body = {"procedure": BIRTH, "channel": "online",
                "applicant": {"name": "Trần Thị Bình", "id_number": "001203004567",
                              "phone": "0912345678", "address": "Số 5 phố Hàng Bạc"},
                "documents": [{"kind": d["kind"], "name": d["name"]}
                              for d in PROCEDURE["documents"]],
                "return_method": "counter"}
        body.update(extra)
        return body

    def new_dossier(self):
        status, a = harness.http("POST", self.intake.url("/v1/dossiers"), self.submit(),
                                 dict(self.bearer(self.s.citizen),
                                      **{"Idempotency-Key": str(uuid.uuid4())}))
        self.assertEqual(status, 201, a)
        harness.wait_for(lambda: harness.case(self.routing, self.s.operator, a["code"]),
                         what="the case of " + a["code"])
        return a["code"]

    def act(self, code, action, agency):
        status, body = harness.http("POST", self.routing.url("/v1/dossiers/%s/actions" % code),
                                    {"action": action, "officer": "Nguyễn Văn A"},
                                    self.bearer(self.s.keys[agency]))
        self.assertEqual(status, 200, (action, agency, body))
        return body

    def walk(self, code, actions):
        for action, step in actions:
            self.act(code, action, STEPS[step])

    def rows(self, dossier):
        status, body = harness.http("GET", self.interconnect.url("/v1/portal/sync?dossier="
                                                                 + dossier),
                                    headers=self.bearer(self.s.operator))
        self.assertEqual(status, 200, body)
        return sorted(body["items"], key=lambda r: r["seq"])

    def wait_acked(self, dossier, last_status=None, count=None, timeout=40):
        def done():
            rows = self.rows(dossier)
            ok = rows and all(r["state"] == "acked" for r in rows) and \
                (last_status is None or rows[-1]["status"] == last_status) and \
                (count is None or len(rows) >= count)
            return rows if ok else None
        return harness.wait_for(done, timeout=timeout, what="%s's statuses acknowledged"
                                % dossier)

    def pushes(self, code):
        status, _, body = self.s.sandbox.http("GET", "/portal/pushes?code=" + code)
        self.assertEqual(status, 200, body)
        return body["pushes"]

    def held(self, code):
        status, _, body = self.s.sandbox.http(
            "GET", "/portal/api/dossiers?code=" + code, headers=self.bearer(TOKEN))
        self.assertEqual(status, 200, body)
        return body["dossiers"][0] if body["dossiers"] else None

    def assert_in_order_once(self, code, rows):
        """The portal got each of our rows exactly once, in seq order."""
        got = self.pushes(code)
        self.assertEqual([p["seq"] for p in got], list(range(1, len(got) + 1)), got)
        self.assertEqual([p["seq"] for p in got], [r["seq"] for r in rows])
        self.assertEqual([p["status"] for p in got], [r["status"] for r in rows])
        self.assertEqual(len({p["sync_id"] for p in got}), len(got), "no duplicates")
        self.assertEqual([p["sync_id"] for p in got], [r["id"] for r in rows])
        return got

    def portal_submit(self, **fields):
        status, _, body = self.s.sandbox.http("POST", "/portal/control/submit", fields)
        self.assertEqual(status, 200, body)
        return body["status"], body["answer"]

    def inbound(self, national):
        out = self.sql("SELECT id, state, coalesce(local_code, ''), coalesce(last_error, '')"
                       " FROM interconnect.inbound WHERE system = 'national_portal'"
                       " AND ref_id = '%s'" % national)
        return out.split("|") if out else None

    # ------------------------------------------------------------ status sync

    def test_a_statuses_in_order(self):
        code = self.new_dossier()
        self.walk(code, [("receive", 0), ("forward", 0), ("forward", 1), ("approve", 2),
                         ("result_ready", 2), ("return", 2)])
        rows = self.wait_acked(code, last_status=10)
        self.assertEqual(rows[0]["status"], 1)  # submitted online
        self.assertIn(2, [r["status"] for r in rows])  # received
        self.assertIn(4, [r["status"] for r in rows])  # in progress
        self.assertIn(9, [r["status"] for r in rows])  # resolved
        got = self.assert_in_order_once(code, rows)
        first = got[0]
        self.assertEqual((first["code"], first["local_code"], first["national_code"]),
                         (code, code, None))
        self.assertEqual(first["state"], "SUBMITTED")
        for p in got:
            self.assertRegex(p["updated_at"], STAMP)
            self.assertTrue(p["due_at"] is None or STAMP.match(p["due_at"]), p)
        self.assertEqual(got[-1]["state"], "RETURNED")
        self.assertEqual(self.held(code)["status"], 10)
        # The list endpoint: scopes and filters.
        status, _ = harness.http("GET", self.interconnect.url("/v1/portal/sync"))
        self.assertEqual(status, 401)
        status, body = harness.http("GET", self.interconnect.url("/v1/portal/sync?state=nope"),
                                    headers=self.bearer(self.s.operator))
        self.assertEqual((status, body["error"]["field"]), (400, "state"))
        status, body = harness.http("GET", self.interconnect.url(
            "/v1/portal/sync?state=acked&dossier=" + code), headers=self.bearer(self.s.integrator))
        self.assertEqual((status, len(body["items"]), body["enabled"]), (200, len(rows), True))

    def test_b_portal_down_then_failing_then_up(self):
        self.control(mode="down")
        code = self.new_dossier()
        self.walk(code, [("receive", 0), ("forward", 0)])
        harness.wait_for(lambda: (lambda r: r if r and r[0]["tries"] >= 2 and
                                  "503" in (r[0]["last_error"] or "") else None)(self.rows(code)),
                         what="retries while the portal is down")
        rows = self.rows(code)
        self.assertGreaterEqual(len(rows), 3)
        self.assertTrue(all(r["state"] == "pending" for r in rows))
        # Only the head of the dossier is ever tried.
        self.assertTrue(all(r["tries"] == 0 for r in rows[1:]), rows)
        self.assertEqual(self.pushes(code), [])
        failed = self.control()["failed"]
        self.control(mode="ok", fail_next=2)
        self.walk(code, [("forward", 1)])
        rows = self.wait_acked(code, count=len(rows) + 1)
        self.assertEqual(self.control()["failed"], failed + 2)
        self.assert_in_order_once(code, rows)
        time.sleep(1)
        self.assert_in_order_once(code, self.rows(code))

    def test_c_reconcile_resends_what_the_portal_forgot(self):
        kept = self.new_dossier()
        forgotten = self.new_dossier()
        self.walk(forgotten, [("receive", 0)])
        self.wait_acked(kept, count=1)
        rows = self.wait_acked(forgotten, last_status=4)
        status, _, body = self.s.sandbox.http("POST", "/control/portal/forget",
                                              {"code": forgotten})
        self.assertEqual((status, body["forgotten"]), (200, True))
        self.assertIsNone(self.held(forgotten))
        # Operators only.
        status, _ = harness.http("POST", self.interconnect.url("/v1/portal/reconcile"), {})
        self.assertEqual(status, 401)
        status, _ = harness.http("POST", self.interconnect.url("/v1/portal/reconcile"), {},
                                 self.bearer(self.s.integrator))
        self.assertEqual(status, 403)
        status, run = harness.http("POST", self.interconnect.url("/v1/portal/reconcile"), {},
                                   self.bearer(self.s.operator))
        self.assertEqual(status, 202, run)
        done = harness.wait_for(lambda: self.sql(
            "SELECT checked, resent, coalesce(error, '') FROM interconnect.portal_reconcile"
            " WHERE id = %d AND finished_at IS NOT NULL" % run["id"]),
            what="the reconciliation to end")
        checked, resent, error = done.split("|")
        self.assertEqual(error, "")
        self.assertGreaterEqual(int(checked), 2)
        self.assertGreaterEqual(int(resent), 1)
        after = self.wait_acked(forgotten, count=len(rows) + 1)
        self.assertEqual(after[-1]["cause"], "reconcile")
        self.assertEqual(after[-1]["status"], rows[-1]["status"])
        self.assertEqual(self.held(forgotten)["status"], rows[-1]["status"])
        self.assertEqual(self.held(forgotten)["seq"], len(rows) + 1)
        # What the portal held rightly is not sent again.
        self.assertEqual([r["cause"] for r in self.rows(kept)], ["change"])
        self.assertIn("portal reconcile %d done" % run["id"], self.interconnect.log())

    # ------------------------------------------------------------ dossiers from the portal

    def test_d_portal_dossier_becomes_a_dossier(self):
        national = "G22.99-%s-%07d" % (time.strftime("%Y%m%d"), int(time.time() * 1000) % 10 ** 7)
        status, answer = self.portal_submit(dossier=portal_dossier(national))
        self.assertEqual(status, 202, answer)
        self.assertEqual((answer["national_code"], answer["repeated"]), (national, False))
        again, answer2 = self.portal_submit(dossier=portal_dossier(national))
        self.assertEqual((again, answer2["inbound_id"], answer2["repeated"]),
                         (202, answer["inbound_id"], True))
        row = harness.wait_for(lambda: (lambda r: r if r and r[1] == "submitted" else None)(
            self.inbound(national)), what="the portal dossier opened at intake")
        local = row[2]
        self.assertTrue(local)
        status, view = harness.http("GET", self.intake.url("/v1/dossiers/" + local),
                                    headers=self.bearer(self.s.integrator))
        self.assertEqual(status, 200, view)
        self.assertEqual(view["reference"], {"system": "national_portal", "id": national})
        self.assertEqual((view["channel"], view["procedure"]), ("online", BIRTH))
        self.assertEqual(self.sql("SELECT count(*) FROM intake.dossiers WHERE"
                                  " reference->>'id' = '%s'" % national), "1")
        harness.wait_for(lambda: harness.case(self.routing, self.s.operator, local),
                         what="the case of " + local)
        self.walk(local, [("receive", 0)])
        rows = self.wait_acked(local, last_status=4)
        got = self.assert_in_order_once(national, rows)
        self.assertTrue(all(p["code"] == national and p["national_code"] == national and
                            p["local_code"] == local for p in got), got)
        self.assertEqual([r["national_code"] for r in rows], [national] * len(rows))
        self.assertEqual(self.held(national)["status"], 4)
        # The sync list finds it by the national code too.
        self.assertEqual(len(self.rows(national)), len(rows))

    def test_e_portal_dossier_refused_by_intake(self):
        national = "G22.99-REFUSED-%d" % (int(time.time() * 1000) % 10 ** 8)
        status, answer = self.portal_submit(dossier=portal_dossier(national, "9.999999"))
        self.assertEqual(status, 202, answer)
        row = harness.wait_for(lambda: (lambda r: r if r and r[1] == "refused" else None)(
            self.inbound(national)), what="intake to refuse it")
        self.assertIn("no such procedure", row[3])
        self.assertEqual(row[2], "")
        got = harness.wait_for(lambda: self.pushes(national), what="status 3 at the portal")
        self.assertEqual([(p["status"], p["state"]) for p in got], [(3, "REJECTED_AT_INTAKE")])
        self.assertIn("no such procedure", got[0]["content"])

    def test_f_forged_stale_malformed(self):
        national = "G22.99-BAD-%d" % (int(time.time() * 1000) % 10 ** 8)
        status, _ = self.portal_submit(dossier=portal_dossier(national), sign="bad")
        self.assertEqual(status, 401)
        status, _ = self.portal_submit(dossier=portal_dossier(national),
                                       timestamp=int(time.time()) - 3600)
        self.assertEqual(status, 401)
        # Signed with another secret, or not signed at all.
        raw = json.dumps(portal_dossier(national)).encode()
        url = self.interconnect.url("/v1/portal/dossiers")
        ts = int(time.time())
        for headers in ({"X-Timestamp": str(ts), "X-Signature": sign(ts, raw, "wrong")}, {}):
            req = urllib.request.Request(url, data=raw, method="POST", headers=dict(
                {"Content-Type": "application/json"}, **headers))
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=10)
            self.assertEqual(e.exception.code, 401)
        # Well signed but malformed: 400 naming the member.
        bad = portal_dossier(national)
        del bad["applicant"]
        status, answer = self.portal_submit(dossier=dict(bad, national_code=national))
        self.assertEqual((status, answer["error"]["field"]), (400, "applicant"))
        status, answer = self.portal_submit(dossier=dict(portal_dossier(),
                                                         national_code="bad code!"))
        self.assertEqual((status, answer["error"]["field"]), (400, "national_code"))
        status, answer = self.portal_submit(raw="{not json")
        self.assertEqual(status, 400)
        self.assertIsNone(self.inbound(national))
        self.assertEqual(self.sql("SELECT count(*) FROM interconnect.inbound WHERE ref_id IN"
                                  " ('%s', 'bad code!')" % national), "0")
        self.assertIn("portal dossier refused", self.interconnect.log())

    def test_g_reference_needs_an_api_key(self):
        ref = {"system": "national_portal", "id": "G22.99-REF-%s" % uuid.uuid4().hex[:10]}
        url = self.intake.url("/v1/dossiers")
        status, body = harness.http("POST", url, self.submit(reference=ref),
                                    {"Idempotency-Key": str(uuid.uuid4())})
        self.assertEqual((status, body["error"]["code"]), (401, "unauthorized"))
        # The citizen portal online, the receiving desk's officer at the desk: both may
        # submit, neither with a reference.
        for key, channel in ((self.s.citizen, "online"), (self.s.keys[STEPS[0]], "direct")):
            status, body = harness.http("POST", url, self.submit(reference=ref, channel=channel),
                                        dict(self.bearer(key),
                                             **{"Idempotency-Key": str(uuid.uuid4())}))
            self.assertEqual((status, body["error"]["code"], body["error"]["field"]),
                             (403, "forbidden", "reference"))
        for bad, field in (({"system": "elsewhere", "id": "x"}, "reference.system"),
                           ({"system": "national_portal"}, "reference.id"),
                           ({"system": "province:H98", "id": "a b"}, "reference.id"),
                           ("G22", "reference")):
            status, body = harness.http("POST", url, self.submit(reference=bad),
                                        self.bearer(self.s.integrator))
            self.assertEqual((status, body["error"]["field"]), (400, field), bad)
        self.assertEqual(self.sql("SELECT count(*) FROM intake.dossiers WHERE"
                                  " reference->>'id' = '%s'" % ref["id"]), "0")
        status, a = harness.http("POST", url, self.submit(reference=ref),
                                 dict(self.bearer(self.s.integrator),
                                      **{"Idempotency-Key": str(uuid.uuid4())}))
        self.assertEqual(status, 201, a)
        status, view = harness.http("GET", self.intake.url("/v1/dossiers/%s?token=%s"
                                                           % (a["code"], a["lookup_token"])))
        self.assertEqual((status, view["reference"]), (200, ref))
        status, body = harness.http("POST", url, self.submit(reference=ref),
                                    dict(self.bearer(self.s.operator),
                                         **{"Idempotency-Key": str(uuid.uuid4())}))
        self.assertEqual((status, body["error"]["code"]), (409, "conflict"))
        # A dossier without a reference shows none.
        code = self.new_dossier()
        status, view = harness.http("GET", self.intake.url("/v1/dossiers/" + code),
                                    headers=self.bearer(self.s.operator))
        self.assertNotIn("reference", view)
        # Routing carries it on every status (this dossier never went through
        # interconnect's inbound path): the portal is told under the national code.
        self.act(a["code"], "receive", STEPS[0])
        rows = self.wait_acked(a["code"], last_status=4)
        self.assertEqual([(r["payload"]["code"], r["payload"]["local_code"], r["national_code"])
                          for r in rows], [(ref["id"], a["code"], ref["id"])] * len(rows))
        self.assertEqual(self.sql("SELECT count(*) FROM interconnect.inbound WHERE ref_id = '%s'"
                                  % ref["id"]), "0")

    # ------------------------------------------------------------ crash

    def test_h_sigkill_mid_push(self):
        code = self.new_dossier()
        self.wait_acked(code, count=1)
        self.control(mode="slow", delay_ms=1500)
        attempts = self.control()["attempts"]
        self.walk(code, [("receive", 0)])
        harness.wait_for(lambda: self.control()["attempts"] > attempts,
                         what="a push in flight")
        self.interconnect.kill()
        self.walk(code, [("forward", 0), ("forward", 1)])  # while interconnect is down
        self.control(mode="ok")
        self.interconnect.start()
        rows = self.wait_acked(code, count=5, timeout=60)
        self.assertEqual(rows[1]["status"], 2)
        self.assert_in_order_once(code, rows)
        self.assertEqual(self.held(code)["seq"], len(rows))


if __name__ == "__main__":
    unittest.main()
