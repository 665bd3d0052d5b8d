"""The first vertical slice on the real services: intake stores a dossier and emits
DossierSubmitted, routing opens the case and announces its status, intake's public
view shows it. Plus the six services' health endpoints, who may submit (the keys and
their scopes), bad input, idempotency, dossier-code uniqueness, and crashes of intake
and routing."""
import concurrent.futures
import re
import time
import unittest
import uuid

import harness

GOOD = {
    "procedure": "1.001193",  # Đăng ký khai sinh, demo catalog
    "channel": "online",
    "applicant": {"name": "Nguyễn Văn A", "id_number": "001203004567", "phone": "0912345678",
                  "email": "a@example.vn", "address": "Phường Hoàn Kiếm, Hà Nội"},
    "documents": [{"kind": "to_khai_khai_sinh", "name": "Tờ khai đăng ký khai sinh",
                   "sha256": "a" * 64, "size": 1024},
                  {"kind": "giay_chung_sinh", "name": "Giấy chứng sinh"}],
    "return_method": "counter",
}
CODE = re.compile(r"^000\.01\.31\.H99-\d{8}-\d{7}$")  # the desk of the first step
DESK, OTHER = "000.01.31.H99", "000.00.10.H99"  # the receiving agency of GOOD, and another


class SliceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres()
        cls.db = cls.pg.database()
        cls.env = harness.suite_env(cls.db)
        cls.svc = {}
        harness.start_services(cls.svc, harness.SERVICES, cls.env)
        cls.intake, cls.routing = cls.svc["intake"], cls.svc["routing"]
        cls.portal = harness.create_api_key(cls.db, "slice-portal", "citizen_portal")["key"]
        cls.operator = harness.create_api_key(cls.db, "slice-operator", "operator")["key"]

    @classmethod
    def tearDownClass(cls):
        for s in cls.svc.values():
            if s.proc and s.proc.poll() is None:
                s.terminate()
        cls.pg.stop()

    def submit(self, body=None, key=None, svc=None, auth=""):
        """POST /v1/dossiers with Idempotency-Key `key`, as the API key `auth` (the
        citizen portal's by default, None: no key)."""
        headers = {"Idempotency-Key": key} if key else {}
        auth = self.portal if auth == "" else auth
        if auth:
            headers["Authorization"] = "Bearer " + auth
        return harness.http("POST", (svc or self.intake).url("/v1/dossiers"),
                            GOOD if body is None else body, headers)

    def lookup(self, code, token):
        return harness.http("GET", self.intake.url("/v1/dossiers/%s?token=%s" % (code, token)))

    def count(self, table):
        return int(self.pg.sql("SELECT count(*) FROM " + table, self.db))

    def wait_routed(self, answer):
        def routed():
            status, view = self.lookup(answer["code"], answer["lookup_token"])
            return view if status == 200 and view["routed"] else None
        return harness.wait_for(routed, timeout=30, what="routing to open the case")

    # ------------------------------------------------------------------ health

    def test_health_endpoints_of_all_six(self):
        for name, s in self.svc.items():
            status, body = harness.http("GET", s.url("/healthz"))
            self.assertEqual((status, body["status"], body["service"]), (200, "alive", name))
            status, body = harness.http("GET", s.url("/readyz"))
            self.assertEqual(status, 200, body)
            self.assertEqual(body["status"], "ready")
            self.assertGreater(body["database"]["connected"], 0)
            self.assertTrue(body["bus"]["bound"])
            self.assertEqual(len(body["bus"]["peers"]), 6)
            status, text = harness.http("GET", s.url("/metrics"))
            self.assertEqual(status, 200)
            self.assertIn('motcua_bus_outbox_pending{service="%s"}' % name, text)
            self.assertIn("# TYPE motcua_http_requests_total counter", text)

    # ------------------------------------------------------------------ the slice

    def test_submit_then_case_opened_and_visible(self):
        status, answer = self.submit()
        self.assertEqual(status, 201, answer)
        self.assertRegex(answer["code"], CODE)
        self.assertEqual(answer["status"], "SUBMITTED")
        self.assertEqual(len(answer["lookup_token"]), 32)
        view = self.wait_routed(answer)
        self.assertEqual(view["status"], "SUBMITTED")
        self.assertEqual(view["national_status"], 1)
        self.assertEqual([h["note"] for h in view["history"]],
                         ["received by intake", "submitted online; waiting for the one-stop desk"])
        status, case = harness.http("GET", self.routing.url("/v1/cases/" + answer["code"]),
                                    headers={"Authorization": "Bearer " + self.operator})
        self.assertEqual((status, case["state"], case["procedure"]), (200, "SUBMITTED", "1.001193"))

    def test_lookup_needs_the_token(self):
        status, answer = self.submit()
        self.assertEqual(status, 201)
        status, body = harness.http("GET", self.intake.url("/v1/dossiers/" + answer["code"]))
        self.assertEqual((status, body["error"]["code"]), (401, "unauthorized"))
        status, body = self.lookup(answer["code"], "0" * 32)
        self.assertEqual(status, 404)
        status, body = self.lookup("no-such-code", answer["lookup_token"])
        self.assertEqual(status, 404)
        status, body = self.lookup("bad%20code", "x")
        self.assertEqual((status, body["error"]["field"]), (400, "code"))

    # ------------------------------------------------------------------ who may submit

    def test_a_submission_needs_a_key(self):
        before = self.count("intake.dossiers")
        for body in (GOOD, dict(GOOD, channel="direct"), dict(GOOD, channel="postal"), b"not json"):
            status, answer = self.submit(body, auth=None)
            self.assertEqual((status, answer["error"]["code"]), (401, "unauthorized"), body)
        status, answer = self.submit(auth="mck_" + "0" * 64)  # well formed, unknown
        self.assertEqual((status, answer["error"]["code"]), (401, "unauthorized"))
        status, answer = self.submit(auth="not-a-key")
        self.assertEqual((status, answer["error"]["code"]), (401, "unauthorized"))
        self.assertEqual(self.count("intake.dossiers"), before)

    def test_which_key_submits_on_which_channel(self):
        key = lambda name, scopes, agency=None: harness.create_api_key(  # noqa: E731
            self.db, "slice-" + name, scopes, agency)["key"]
        desk, other = key("desk", "officer", DESK), key("other", "officer", OTHER)
        integrator = key("integrator", "integrator")
        both = key("portal-and-other-desk", "citizen_portal,officer", OTHER)
        direct, postal = dict(GOOD, channel="direct"), dict(GOOD, channel="postal")
        accepted = [  # (body, key): 201
            (GOOD, self.portal), (GOOD, integrator), (GOOD, self.operator), (GOOD, both),
            (direct, desk), (direct, integrator), (direct, self.operator),
            (dict(direct, agency=DESK), desk),
            (postal, desk), (postal, integrator), (postal, self.operator),
        ]
        refused = [  # (body, key, field): 403 forbidden
            (GOOD, desk, "channel"),                    # an officer does not submit online
            (direct, self.portal, "channel"),           # the portal is not at the desk
            (postal, self.portal, "channel"),
            (direct, other, "agency"),                  # the desk is the first step's
            (postal, other, "agency"),
            (direct, both, "agency"),
            (dict(direct, agency=DESK), other, "agency"),
            (dict(direct, agency=OTHER), desk, "agency"),  # another agency named
            (dict(GOOD, reference={"system": "national_portal", "id": "X-1"}), self.portal,
             "reference"),
            (dict(direct, reference={"system": "national_portal", "id": "X-2"}), desk,
             "reference"),
        ]
        for body, auth in accepted:
            status, answer = self.submit(body, auth=auth)
            self.assertEqual(status, 201, (body.get("channel"), body.get("agency"), answer))
            self.assertRegex(answer["code"], CODE)
        before = self.count("intake.dossiers"), self.count("intake.outbox")
        for body, auth, field in refused:
            status, answer = self.submit(body, auth=auth)
            self.assertEqual((status, answer["error"]["code"], answer["error"]["field"]),
                             (403, "forbidden", field), (body.get("channel"), answer))
            self.assertTrue(answer["error"]["message"])
        # The key is checked before the catalog's rules: an officer of another desk is
        # refused as such even for a dossier the catalog would refuse.
        status, answer = self.submit(dict(direct, documents=[]), auth=other)
        self.assertEqual((status, answer["error"]["field"]), (403, "agency"))
        status, answer = self.submit(dict(direct, documents=[]), auth=desk)
        self.assertEqual((status, answer["error"]["field"]), (422, "documents"))
        self.assertEqual((self.count("intake.dossiers"), self.count("intake.outbox")), before)

    def test_a_replay_is_for_the_receiving_desk_only(self):
        # The same body and Idempotency-Key from an officer of another desk is not
        # answered with the stored dossier (its lookup token).
        desk = harness.create_api_key(self.db, "slice-replay-desk", "officer", DESK)["key"]
        other = harness.create_api_key(self.db, "slice-replay-other", "officer", OTHER)["key"]
        body, key = dict(GOOD, channel="direct"), str(uuid.uuid4())
        s1, a1 = self.submit(body, key=key, auth=desk)
        s2, a2 = self.submit(body, key=key, auth=other)
        s3, a3 = self.submit(body, key=key, auth=self.operator)
        self.assertEqual(s1, 201, a1)
        self.assertEqual((s2, a2["error"]["code"], a2["error"]["field"]),
                         (403, "forbidden", "agency"))
        self.assertNotIn(a1["lookup_token"], str(a2))
        self.assertEqual((s3, a3), (201, a1))

    # ------------------------------------------------------------------ bad input

    def test_bad_submissions_answer_4xx_and_store_nothing(self):
        def without(key):
            return {k: v for k, v in GOOD.items() if k != key}

        def applicant(**kw):
            return dict(GOOD, applicant=dict(GOOD["applicant"], **kw))
        cases = [
            (b"not json", 400, None),
            (b"[1,2,3]", 400, None),
            (without("procedure"), 400, "procedure"),
            (dict(GOOD, procedure="có dấu"), 400, "procedure"),
            (dict(GOOD, procedure=12), 400, "procedure"),
            (dict(GOOD, channel="fax"), 400, "channel"),
            (without("applicant"), 400, "applicant"),
            (applicant(name=""), 400, "applicant.name"),
            (applicant(id_number="12ab"), 400, "applicant.id_number"),
            (applicant(phone="12345"), 400, "applicant.phone"),
            (applicant(email="not-an-email"), 400, "applicant.email"),
            (dict(GOOD, documents="many"), 400, "documents"),
            (dict(GOOD, documents=[{"kind": "x"}]), 400, "documents[0]"),
            (dict(GOOD, documents=GOOD["documents"][:1]), 422, "documents"),
            (dict(GOOD, procedure="9.999999"), 422, "procedure"),
            (dict(GOOD, agency="000.99.99.H99"), 422, "agency"),
            (dict(GOOD, procedure="1.004194", documents=[]), 422, "documents"),
            (dict(GOOD, documents=[{"kind": "x", "name": "y", "sha256": "zz"}]), 400, "documents[0]"),
            (dict(GOOD, documents=[{"kind": "x", "name": "y", "size": -1}]), 400, "documents[0]"),
            (dict(GOOD, return_method="pigeon"), 400, "return_method"),
            (dict(GOOD, return_method="post"), 422, "delivery_address"),
            (dict(GOOD, agency="bad agency!"), 400, "agency"),
        ]
        before = self.count("intake.dossiers"), self.count("intake.outbox")
        for body, status, field in cases:
            got, answer = self.submit(body)
            self.assertEqual(got, status, (body, answer))
            self.assertIn("error", answer)
            self.assertEqual(answer["error"]["field"], field, (body, answer))
            self.assertTrue(answer["error"]["message"])
        got, answer = self.submit(dict(GOOD, applicant=dict(GOOD["applicant"], address="x" * 2_000_000)))
        self.assertEqual(got, 413)
        got, answer = self.submit(GOOD, key="k" * 200)
        self.assertEqual((got, answer["error"]["field"]), (400, "Idempotency-Key"))
        self.assertEqual((self.count("intake.dossiers"), self.count("intake.outbox")), before)
        status, body = harness.http("GET", self.intake.url("/v1/nothing-here"))
        self.assertEqual((status, body["error"]["code"]), (404, "not_found"))
        status, body = harness.http("DELETE", self.intake.url("/v1/dossiers"))
        self.assertEqual(status, 405)

    # ------------------------------------------------------------------ idempotency

    def test_idempotency_key_replays_and_conflicts(self):
        key = str(uuid.uuid4())
        s1, a1 = self.submit(key=key)
        s2, a2 = self.submit(key=key)
        self.assertEqual((s1, s2), (201, 201))
        self.assertEqual(a1, a2)
        s3, a3 = self.submit(dict(GOOD, channel="direct"), key=key, auth=self.operator)
        self.assertEqual((s3, a3["error"]["code"]), (409, "idempotency_conflict"))
        # Concurrent repeats of one new key create one dossier.
        key = str(uuid.uuid4())
        before = self.count("intake.dossiers")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: self.submit(key=key), range(8)))
        self.assertEqual({s for s, _ in answers}, {201})
        self.assertEqual(len({a["code"] for _, a in answers}), 1)
        self.assertEqual(self.count("intake.dossiers"), before + 1)

    def test_codes_unique_and_contiguous_under_concurrency(self):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: self.submit(), range(200)))
        self.assertEqual({s for s, _ in answers}, {201})
        codes = [a["code"] for _, a in answers]
        self.assertEqual(len(set(codes)), 200)
        seqs = sorted(int(c.rsplit("-", 1)[1]) for c in codes)
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + 200)), "no gaps, no repeats")

    # ------------------------------------------------------------------ crashes

    def test_routing_down_then_back_nothing_lost(self):
        self.routing.kill()
        answers = [self.submit()[1] for _ in range(5)]
        for a in answers:
            status, view = self.lookup(a["code"], a["lookup_token"])
            self.assertEqual((status, view["routed"]), (200, False))
        self.routing.start()
        for a in answers:
            self.assertEqual(self.wait_routed(a)["status"], "SUBMITTED")

    def test_intake_killed_under_load_loses_nothing(self):
        accepted = []

        def post(_):
            try:
                status, a = self.submit()
                if status == 201:
                    accepted.append(a)
            except OSError:
                pass  # the connection died with the process: not accepted
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(post, i) for i in range(150)]
            time.sleep(0.5)
            self.intake.kill()
            concurrent.futures.wait(futures)
        self.intake.start()
        self.assertGreater(len(accepted), 0)
        for a in accepted:  # every 201 was durable, and its case opens
            self.wait_routed(a)
        status, a = self.submit()
        self.assertEqual(status, 201)
        codes = self.pg.sql("SELECT count(*) = count(DISTINCT code) FROM intake.dossiers", self.db)
        self.assertEqual(codes, "t")
        # An online case opens with one event, and nothing else happens to these (at the
        # desk or by post, other tests' dossiers are received on the spot: more events).
        cases = self.pg.sql("SELECT count(*) FROM routing.cases c JOIN routing.case_events e"
                            " USING (code) WHERE c.channel = 'online' GROUP BY code"
                            " HAVING count(*) > 1", self.db)
        self.assertEqual(cases, "", "no case opened twice")

    def test_sigterm_stops_cleanly(self):
        # Two of the six stop on SIGTERM with status 0 and a closed loop, then start again.
        for name in ("notify", "postal"):
            s = self.svc[name]
            self.assertEqual(s.terminate(), 0, s.log())
            self.assertIn('msg="stopped"', s.log())
            s.start()


if __name__ == "__main__":
    unittest.main()
