"""The dossier lifecycle end to end, on the real services (intake, routing, interconnect,
notify) and a private PostgreSQL: dossiers of every channel walked through every path —
approve, refuse, reject at intake, withdrawal, supplement, overdue, cross-agency steps
and the liên thông handoff — with the public history, national status codes, due
dates, officers' queues, handoffs, notifications and the statistics report checked
against values this file computes on its own (a working-time calculator written here
from docs/deadlines.md and deploy/data/calendar.csv, and a tally of what the test did).

Time. The test runs at whatever moment it is started (a weekday morning, a Sunday
night). Every due time that depends on "now" is checked against a bracket: the
instants just before and just after the request that made the service compute it
(a due time never moves backwards when the receipt moves forwards), so the check is
exact whatever the hour. Where days must pass (a supplement that takes the applicant
days, a dossier left until it is overdue), the test writes the earlier instant into
routing's tables with SQL: that stands in for the passage of time, and is said so
where it is done.

Bad input on every endpoint of these services is in the BadInput* tests.
Run: cd tests/system && /usr/bin/python3 run.py test_lifecycle"""
import collections
import csv
import datetime
import decimal
import json
import math
import os
import time
import unittest
import uuid

import harness

ROOT = harness.ROOT
VN = datetime.timezone(datetime.timedelta(hours=7))
MINUTE_MS = 60000

CATALOG = os.path.join(ROOT, "deploy", "data", "catalog")
with open(os.path.join(CATALOG, "procedures.json"), encoding="utf-8") as _f:
    PROCEDURES = {p["code"]: p for p in json.load(_f)["procedures"]}
with open(os.path.join(CATALOG, "agencies.json"), encoding="utf-8") as _f:
    AGENCIES = {a["code"]: a for a in json.load(_f)["agencies"]}

# The demo procedures this test walks (what it relies on is checked in setUpClass).
BIRTH = "1.001193"       # Đăng ký khai sinh: level 4, no fee, 1 day, cut-off 15:00, 3 commune steps
CHAIN = "1.012746"       # liên thông khai sinh → thường trú (police) → BHYT (social insurance)
CORRECTION = "1.004859"  # Đăng ký thay đổi, cải chính hộ tịch: level 3, 3 days
TRANSPORT = "1.002861"   # Cấp phù hiệu xe: province one-stop centre → Sở Xây dựng
USED = (BIRTH, CHAIN, CORRECTION, TRANSPORT)

NATIONAL = {"SUBMITTED": 1, "RECEIVED": 2, "REJECTED_AT_INTAKE": 3, "IN_PROGRESS": 4,
            "SUPPLEMENT_REQUESTED": 5, "AWAITING_PAYMENT": 6, "WITHDRAWN": 7, "REFUSED": 8,
            "APPROVED": 9, "RESULT_READY": 9, "RETURNED": 10, "HANDED_OFF": 4}
OUTCOME = {"approve": "approved", "refuse": "refused", "withdraw": "withdrawn",
           "reject": "rejected"}
NOTIFIES = {"receive": "received", "reject": "rejected",
            "request_supplement": "supplement_requested",
            "supplement_received": "supplement_received", "refuse": "refused",
            "result_ready": "result_ready", "return": "returned", "withdraw": "withdrawn"}
OFFICER = "Nguyễn Thị Cán Bộ"


# ====================================================================== working time

class WorkingTime:
    """docs/deadlines.md, written again here from the text (not from common/calendar.c):
    working hours 07:30-11:30 and 13:00-17:00 local (UTC+7), Monday to Friday, minus the
    holidays and plus the make-up days of deploy/data/calendar.csv. It walks day by day,
    which the C code deliberately does not."""
    PERIODS = [(7 * 60 + 30, 11 * 60 + 30), (13 * 60, 17 * 60)]
    DAY_MINUTES = sum(e - s for s, e in PERIODS)

    def __init__(self, path):
        self.holidays, self.workdays = set(), set()
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip() and not line.startswith("#")]
        rows = list(csv.reader(lines))
        assert rows[0] == ["date", "kind", "name"], rows[0]
        for date, kind, _name in rows[1:]:
            assert kind in ("holiday", "workday"), kind
            (self.holidays if kind == "holiday" else self.workdays).add(
                datetime.date.fromisoformat(date))

    def working_day(self, d):
        if d in self.holidays:
            return False
        return d in self.workdays or d.weekday() < 5

    @staticmethod
    def midnight(d):
        return int(datetime.datetime(d.year, d.month, d.day, tzinfo=VN).timestamp() * 1000)

    @staticmethod
    def date_of(ms):
        return datetime.datetime.fromtimestamp(ms / 1000, VN).date()

    def periods(self, d):
        if not self.working_day(d):
            return []
        m = self.midnight(d)
        return [(m + s * MINUTE_MS, m + e * MINUTE_MS) for s, e in self.PERIODS]

    def add(self, start, amount):
        """The instant after `amount` ms of working time from `start` (>= 0 only)."""
        assert amount >= 0, amount
        d, left = self.date_of(start), amount
        for _ in range(20000):
            for s, e in self.periods(d):
                s = max(s, start)
                if s >= e:
                    continue
                if left <= e - s:  # a result at a period's end stays there
                    return s + left
                left -= e - s
            d += datetime.timedelta(days=1)
        raise AssertionError("working time too far away")

    def between(self, a, b):
        """Working ms in [a, b), negative if b < a."""
        if b < a:
            return -self.between(b, a)
        total, d = 0, self.date_of(a)
        while self.midnight(d) < b:
            for s, e in self.periods(d):
                s, e = max(s, a), min(e, b)
                total += max(0, e - s)
            d += datetime.timedelta(days=1)
        return total

    def due(self, received, days, cutoff=None):
        """Due instant of a dossier received at `received` (ms) for `days` working days;
        cutoff "HH:MM" or None (the end of the working day)."""
        d = self.date_of(received)
        since_midnight = received - self.midnight(d)
        before = (cutoff is None or
                  since_midnight < (int(cutoff[:2]) * 60 + int(cutoff[3:])) * MINUTE_MS)
        if self.working_day(d) and before:
            start = received
        else:
            d += datetime.timedelta(days=1)
            while not self.working_day(d):
                d += datetime.timedelta(days=1)
            start = self.periods(d)[0][0]
        return self.add(start, round(days * self.DAY_MINUTES * MINUTE_MS))

    def last_working_morning(self, before_ms, days_back):
        """09:30 of the latest working day at least `days_back` days before before_ms."""
        d = self.date_of(before_ms) - datetime.timedelta(days=days_back)
        while not self.working_day(d):
            d -= datetime.timedelta(days=1)
        return self.midnight(d) + (9 * 60 + 30) * MINUTE_MS


CAL = WorkingTime(os.path.join(ROOT, "deploy", "data", "calendar.csv"))


def ms(text):
    """Unix ms of an ISO 8601 time as the API writes it."""
    return int(round(datetime.datetime.fromisoformat(text).timestamp() * 1000))


def iso(m):
    return datetime.datetime.fromtimestamp(m / 1000, VN).isoformat(timespec="milliseconds")


def now_ms():
    return int(time.time() * 1000)


def above(a, b):
    """True if agency a is b or one of b's ancestors."""
    while b:
        if a == b:
            return True
        b = AGENCIES[b]["parent"]
    return False


def bearer(key):
    return {"Authorization": "Bearer " + key}


# ====================================================================== the suite

def check_catalog():
    """What the walks below rely on in the demo catalog; a clear failure if it changes."""
    internal = [a for a in PROCEDURES[BIRTH]["steps"] if not AGENCIES[a["agency"]]["external"]]
    birth = PROCEDURES[BIRTH]
    assert (birth["level"], birth["fee"], birth["days"], birth["cutoff"], len(internal)) == \
        (4, 0, 1, "15:00", 3), "1.001193 changed"
    s0, s1, s2 = [st["agency"] for st in birth["steps"]]
    assert s2 == birth["agency"] and not above(s0, s1) and not above(s1, s2), "1.001193 steps"
    chain = [AGENCIES[st["agency"]]["external"] for st in PROCEDURES[CHAIN]["steps"]]
    assert chain[:3] == [False] * 3 and chain[3] and PROCEDURES[CHAIN]["fee"] == 0, "1.012746"
    corr = PROCEDURES[CORRECTION]
    assert corr["level"] == 3 and len(corr["steps"]) == 3 and "online" in corr["return_methods"]
    a0, a1, a2 = [st["agency"] for st in PROCEDURES[TRANSPORT]["steps"]]
    assert AGENCIES[a1]["parent"] == a2 and not above(a0, a1) and not above(a0, a2), "1.002861"
    assert all(p["days"] >= 1 for p in PROCEDURES.values()), "no procedure under a day"


class Suite:
    """One PostgreSQL, the four services, the keys: shared by every class here."""
    started = False

    @classmethod
    def start(cls):
        if cls.started:
            return cls
        cls.pg = harness.Postgres()
        try:
            cls.db = cls.pg.database()
            cls.env = harness.suite_env(cls.db)
            cls.env["MOTCUA_ROUTING_SWEEP_MS"] = "200"
            cls.svc = {}
            harness.start_services(cls.svc, ("intake", "routing", "interconnect", "notify"),
                                   cls.env)
            # An officer key per agency that does a step of the procedures walked here
            # (external agencies have no officer queue), read from the catalog.
            needed = sorted({st["agency"] for code in USED for st in PROCEDURES[code]["steps"]
                             if not AGENCIES[st["agency"]]["external"]})
            cls.keys = harness.officer_keys(cls.db, needed)
            # An officer of an agency that has nothing to do with these dossiers.
            related = set(needed)
            for a in needed:
                while AGENCIES[a]["parent"]:
                    a = AGENCIES[a]["parent"]
                    related.add(a)
            cls.stranger_agency = next(a for a in sorted(AGENCIES) if a not in related
                                       and not AGENCIES[a]["external"])
            cls.stranger = harness.create_api_key(cls.db, "officer-stranger", "officer",
                                                  cls.stranger_agency)["key"]
            cls.operator = harness.create_api_key(cls.db, "test-operator", "operator")["key"]
            cls.integrator = harness.create_api_key(cls.db, "test-integrator", "integrator")["key"]
            cls.portal = harness.create_api_key(cls.db, "test-portal", "citizen_portal")["key"]
        except Exception:
            cls.stop()
            raise
        cls.made = collections.OrderedDict()  # every dossier created: code -> record
        cls.started = True
        return cls

    @classmethod
    def stop(cls):
        """Stop everything; what went wrong in the services on the way (a sanitizer
        report, an error logged, an unclean exit)."""
        problems = harness.stop_services(getattr(cls, "svc", {}))
        cls.pg.stop()
        cls.started = False
        return problems


def tearDownModule():
    if Suite.started:
        problems = Suite.stop()
        if problems:
            raise AssertionError("the services: " + "; ".join(problems))


class Base(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        check_catalog()
        s = Suite.start()
        cls.s = s
        cls.intake, cls.routing = s.svc["intake"], s.svc["routing"]
        cls.interconnect, cls.notify = s.svc["interconnect"], s.svc["notify"]

    # ------------------------------------------------------------------ requests

    def body(self, procedure, channel, **extra):
        p = PROCEDURES[procedure]
        body = {
            "procedure": procedure,
            "channel": channel,
            "applicant": {"name": "Trần Thị Bình", "id_number": "001203004567",
                          "phone": "0912345678", "email": "binh@example.vn",
                          "address": "Số 5 phố Hàng Bạc, phường Đông Hưng"},
            "documents": [{"kind": d["kind"], "name": d["name"], "sha256": "b" * 64,
                           "size": 2048} for d in p["documents"]],
            "return_method": "counter",
        }
        if channel == "postal":
            body["return_method"] = "post"
            body["delivery_address"] = "Số 5 phố Hàng Bạc, phường Đông Hưng"
        body.update(extra)
        return body

    def submitter(self, procedure, channel, agency=None):
        """The key a dossier is submitted with: online, the citizen portal's; at the desk,
        an officer's of the receiving agency (the first step's unless named); by post,
        the integrator's (postal intake's)."""
        if channel == "online":
            return self.s.portal
        if channel == "direct":
            return self.s.keys[agency or PROCEDURES[procedure]["steps"][0]["agency"]]
        return self.s.integrator

    def submit(self, procedure, channel, **extra):
        """Submit a valid dossier; wait until routing opened its case; the record kept."""
        t0 = now_ms()
        key = self.submitter(procedure, channel, extra.get("agency"))
        status, a = harness.http("POST", self.intake.url("/v1/dossiers"),
                                 self.body(procedure, channel, **extra),
                                 dict(bearer(key), **{"Idempotency-Key": str(uuid.uuid4())}))
        self.assertEqual(status, 201, a)
        rec = self.record(a, procedure, channel)
        self.assert_bracket(t0, ms(a["received_at"]), now_ms(), "received_at")
        return rec

    def record(self, answer, procedure, channel):
        p = PROCEDURES[procedure]
        code = answer["code"]
        rec = {"code": code, "token": answer["lookup_token"], "procedure": procedure,
               "channel": channel, "level": p["level"], "agency": p["agency"],
               "steps": [st["agency"] for st in p["steps"]], "received_at": answer["received_at"],
               "outcome": None, "forced_overdue": False, "notify": [],
               "step": 0, "state": "SUBMITTED", "paused": None, "resolved": None,
               # intake's due time: from the receipt, with the procedure's cut-off
               "due": CAL.due(ms(answer["received_at"]), p["days"], p["cutoff"])}
        self.s.made[code] = rec
        # Online dossiers wait for the desk; at the desk or by post they are received.
        first = "SUBMITTED" if channel == "online" else "RECEIVED"
        self.assertEqual((answer["status"], answer["national_status"]), (first, NATIONAL[first]))
        self.assertEqual(answer["fee"], p["fee"])
        if channel == "online":
            rec["history"] = ["SUBMITTED", "SUBMITTED"]
            rec["events"] = [(None, "SUBMITTED")]
        else:
            rec["history"] = ["RECEIVED", "RECEIVED", "IN_PROGRESS"]
            rec["events"] = [(None, "RECEIVED"), ("RECEIVED", "IN_PROGRESS")]
            rec["notify"] = ["received"]
            rec["state"] = "IN_PROGRESS"
        self.wait_history(code)
        return rec

    def lookup(self, code, token=None):
        rec = self.s.made[code]
        status, view = harness.http("GET", self.intake.url(
            "/v1/dossiers/%s?token=%s" % (code, token or rec["token"])))
        self.assertEqual(status, 200, view)
        return view

    def wait_history(self, code):
        """Wait until the public view shows exactly the states this test expects, in order."""
        rec = self.s.made[code]

        def seen():
            view = self.lookup(code)
            states = [h["state"] for h in view["history"]]
            return view if states == rec["history"] and view["status"] == rec["state"] else None
        try:
            view = harness.wait_for(seen, timeout=10, interval=0.03, what="history")
        except AssertionError:
            view = self.lookup(code)
            self.assertEqual([h["state"] for h in view["history"]], rec["history"],
                             "public history of %s" % code)
            raise
        self.assertEqual(view["national_status"], NATIONAL[rec["state"]],
                         "national_status of %s in %s" % (code, rec["state"]))
        return view

    def case(self, code, key=None):
        status, c = harness.http("GET", self.routing.url("/v1/cases/" + code),
                                 headers=bearer(key or self.s.operator))
        self.assertEqual(status, 200, c)
        return c

    def act(self, code, action, agency=None, note=None, key=None, expect=200, field=None,
            **extra):
        """POST an officer action as the officer of `agency`; on success, follow the
        public view until it shows the new states."""
        body = {"action": action, "officer": OFFICER}
        if note is not None:
            body["note"] = note
        body.update(extra)
        t0 = now_ms()
        status, r = harness.http("POST", self.routing.url("/v1/dossiers/%s/actions" % code),
                                 body, bearer(key or self.s.keys[agency]))
        t1 = now_ms()
        self.assertEqual(status, expect, (action, agency, r))
        if expect != 200:
            self.assertIn("error", r)
            if field:
                self.assertEqual(r["error"]["field"], field, r)
            if expect == 409 and "state" in r:  # refused by the state machine
                self.assertEqual(r["state"], self.s.made[code]["state"], r)
                self.assertEqual(r["error"]["code"], "conflict", r)
            elif expect == 409:  # refused by the workflow: only these two say no state
                self.assertIn("step", r["error"]["message"], r)
            return r
        return self.applied(code, action, r, t0, t1)

    def applied(self, code, action, r, t0, t1):
        """Book a successful action (answer r, sent between t0 and t1) in the record: its
        states, notification, and what the clock does, with the due time this file
        expects (checked against routing's); follow the public view."""
        rec = self.s.made[code]
        before = rec["state"]
        p = PROCEDURES[rec["procedure"]]
        if action == "receive":  # the clock starts now
            low, high = CAL.due(t0, p["days"], p["cutoff"]), CAL.due(t1, p["days"], p["cutoff"])
            rec["due"] = self.booked_due(code, low, high, "due after the receipt")
        elif action == "request_supplement":
            rec["paused"] = (t0, t1)
        elif action == "supplement_received":
            # new due = resume + what was left at the pause; later pause, less left
            (p0, p1), due = rec["paused"], rec["due"]
            low, high = CAL.add(t0, CAL.between(p1, due)), CAL.add(t1, CAL.between(p0, due))
            rec["due"] = self.booked_due(code, low, high, "due after the supplement")
            rec["paused"] = None
        if action in OUTCOME:
            rec["resolved"] = (t0, t1)
            rec["paused"] = None
        if action == "receive":
            new = ["RECEIVED", "IN_PROGRESS"]
        elif action == "forward":
            new = [r["state"]]
            rec["step"] += 1
        else:
            new = [r["state"]]
        self.assertEqual(r["national_status"], NATIONAL[r["state"]], r)
        self.assertEqual(r["step"]["index"], rec["step"], r)
        self.assertEqual(r["step"]["agency"], rec["steps"][rec["step"]], r)
        rec["history"] += new
        frm = before
        for st in new:
            rec["events"].append((frm, st))
            frm = st
        rec["state"] = new[-1]
        if action in OUTCOME:
            rec["outcome"] = OUTCOME[action]
        if action in NOTIFIES:
            rec["notify"].append(NOTIFIES[action])
        self.wait_history(code)
        return r

    def booked_due(self, code, low, high, what):
        due = ms(self.case(code)["due_at"])
        self.assert_bracket(low, due, high, "%s of %s" % (what, code))
        return due

    def tasks(self, key, expect=200, **params):
        query = "&".join("%s=%s" % kv for kv in params.items())
        status, body = harness.http("GET", self.routing.url("/v1/tasks?" + query),
                                    headers=bearer(key))
        self.assertEqual(status, expect, body)
        return body

    def queued(self, agency, code):
        """The task of `code` in the queue of `agency`'s officer, or None."""
        items = self.tasks(self.s.keys[agency], limit=500)["items"]
        return next((t for t in items if t["code"] == code), None)

    def notifications(self, code):
        status, body = harness.http("GET", self.notify.url("/v1/notifications?dossier=" + code),
                                    headers=bearer(self.s.operator))
        self.assertEqual(status, 200, body)
        return body["items"]

    def check_notifications(self, code):
        """Each notification this test caused, exactly once, and nothing else."""
        want = collections.Counter(self.s.made[code]["notify"])

        def arrived():
            items = self.notifications(code)
            return items if len(items) >= sum(want.values()) else None
        try:
            harness.wait_for(arrived, timeout=10, interval=0.05, what="notifications")
        except AssertionError:
            pass
        got = collections.Counter(n["event"] for n in self.notifications(code))
        self.assertEqual(got, want, "notifications of %s" % code)

    def handoffs(self, code):
        status, body = harness.http("GET", self.interconnect.url("/v1/handoffs?dossier=" + code),
                                    headers=bearer(self.s.operator))
        self.assertEqual(status, 200, body)
        return body["items"]

    def check_events(self, code):
        """routing's events of the case: every transition this test caused, in order."""
        c = self.case(code)
        got = [(e["from"], e["to"]) for e in c["events"]]
        self.assertEqual(got, self.s.made[code]["events"], "routing events of %s" % code)
        for e in c["events"][1:]:
            if e["actor"] != "routing":
                self.assertIn(OFFICER, e["actor"])
                self.assertIn("officer-", e["actor"], "the key's name is recorded")
        return c

    def assert_bracket(self, low, got, high, what):
        self.assertTrue(low <= got <= high, "%s: %s not in [%s, %s]"
                        % (what, iso(got), iso(low), iso(high)))


# ====================================================================== paths

class LifecycleTest(Base):

    def test_01_calendar_due_fixed_dates(self):
        """GET /v1/calendar/due (the submission's code path) on the examples of
        docs/deadlines.md, each also computed by this file's calculator."""
        cases = [
            ("2026-02-13T10:00:00+07:00", "3", None, "2026-02-25T10:00:00+07:00"),
            ("2026-02-13T15:30:00+07:00", "3", "15:00", "2026-02-25T17:00:00+07:00"),
            ("2026-02-13T15:00:00+07:00", "3", "15:00", "2026-02-25T17:00:00+07:00"),
            ("2026-02-13T14:59:00+07:00", "3", "15:00", "2026-02-25T14:59:00+07:00"),
            ("2026-02-13T15:30:00+07:00", "3", None, "2026-02-25T15:30:00+07:00"),
            ("2026-01-08T10:00:00+07:00", "3", None, "2026-01-13T10:00:00+07:00"),
            ("2026-01-05T14:59:00+07:00", "1", "15:00", "2026-01-06T14:59:00+07:00"),
            ("2026-01-05T15:30:00+07:00", "1", "15:00", "2026-01-06T17:00:00+07:00"),
            ("2026-01-11T09:00:00+07:00", "2", None, "2026-01-13T17:00:00+07:00"),
            ("2026-01-12T12:00:00+07:00", "1", None, "2026-01-13T11:30:00+07:00"),
            ("2026-01-12T17:30:00+07:00", "1", None, "2026-01-13T17:00:00+07:00"),
            ("2026-04-24T10:00:00+07:00", "5", None, "2026-05-06T10:00:00+07:00"),
            ("2026-08-21T10:00:00+07:00", "2", None, "2026-08-24T10:00:00+07:00"),
            ("2026-08-22T09:00:00+07:00", "1", None, "2026-08-24T09:00:00+07:00"),
            ("2026-08-28T10:00:00+07:00", "2", None, "2026-09-04T10:00:00+07:00"),
            ("2026-02-02T09:00:00+07:00", "10", None, "2026-02-23T09:00:00+07:00"),
            # the supplement example: 1,230 minutes left, resumed Tue 24 Feb 10:00
            ("2026-02-24T10:00:00+07:00", "2.5625", None, "2026-02-26T16:00:00+07:00"),
            ("2026-02-21T10:00:00+07:00", "2.5625", None, "2026-02-25T13:30:00+07:00"),
            ("2026-02-13T03:00:00Z", "3", None, "2026-02-25T10:00:00+07:00"),  # 10:00 local
            ("2026-11-20T16:00:00+07:00", "0.25", None, "2026-11-23T08:30:00+07:00"),
        ]
        for frm, days, cutoff, want in cases:
            with self.subTest(frm=frm, days=days, cutoff=cutoff):
                q = "from=%s&days=%s" % (frm.replace("+", "%2B"), days)
                if cutoff:
                    q += "&cutoff=" + cutoff
                status, body = harness.http("GET", self.intake.url("/v1/calendar/due?" + q))
                self.assertEqual(status, 200, body)
                self.assertEqual(body["due_at"], want)
                self.assertEqual(CAL.due(ms(frm), float(days), cutoff), ms(want),
                                 "this file's calculator disagrees with docs/deadlines.md")
        # The supplement example of docs/deadlines.md, by the calculator.
        due = CAL.due(ms("2026-02-02T09:00:00+07:00"), 10)
        left = CAL.between(ms("2026-02-11T14:00:00+07:00"), due)
        self.assertEqual(left, 1230 * MINUTE_MS)
        self.assertEqual(iso(CAL.add(ms("2026-02-24T10:00:00+07:00"), left)),
                         "2026-02-26T16:00:00.000+07:00")

    def test_02_approve_path_every_channel(self):
        for channel in ("online", "direct", "postal"):
            with self.subTest(channel=channel):
                self.walk_approve(channel)

    def walk_approve(self, channel):
        p = PROCEDURES[BIRTH]
        s0, s1, s2 = [st["agency"] for st in p["steps"]]
        t0 = now_ms()
        rec = self.submit(BIRTH, channel)
        t1 = now_ms()  # the case is open by now
        code = rec["code"]
        # The first step's own due time counts from the moment the case opened.
        d0 = p["steps"][0]["days"]
        self.assert_bracket(CAL.due(t0, d0), ms(self.case(code)["steps"][0]["due_at"]),
                            CAL.due(t1, d0), "due of step 0")
        view = self.lookup(code)
        self.assertEqual(view["channel"], channel)
        self.assertFalse(view["overdue"])
        # intake's due time: from the receipt, with the procedure's cut-off (exact).
        self.assertAlmostEqual(ms(view["due_at"]), CAL.due(ms(rec["received_at"]), p["days"],
                                                           p["cutoff"]), delta=1)
        self.assertEqual(view["history"][0]["agency"], s0, "received by the first step's desk")
        if channel == "online":
            self.assertEqual(self.case(code)["state"], "SUBMITTED")
            self.assertEqual(self.queued(s0, code)["state"], "SUBMITTED")
            self.act(code, "receive", s1, expect=403, field="agency")  # not the desk
            self.act(code, "forward", s0, expect=409, field="action")
            t0 = now_ms()
            r = self.act(code, "receive", s0)
            t1 = now_ms()
            self.assertEqual((r["state"], r["national_status"]), ("IN_PROGRESS", 4))
            # A valid receipt starts the clock: the due time counts from that moment.
            due = ms(self.case(code)["due_at"])
            self.assert_bracket(CAL.due(t0, p["days"], p["cutoff"]), due,
                                CAL.due(t1, p["days"], p["cutoff"]), "due after receipt")
            self.assertEqual(ms(self.lookup(code)["due_at"]), due, "public due after receipt")
        else:
            self.act(code, "receive", s0, expect=409, field="action")
            self.act(code, "reject", s0, note="x", expect=409, field="action")
        # approve/result_ready before their time; another agency's officer
        self.act(code, "approve", s0, expect=409, field="action")
        self.act(code, "result_ready", s0, expect=409, field="action")
        self.act(code, "forward", s1, expect=403, field="agency")
        self.act(code, "forward", key=self.s.stranger, expect=403, field="agency")
        # forward through every internal step; the task moves between queues
        for i, (frm, to) in enumerate(((s0, s1), (s1, s2)), start=1):
            self.assertIsNotNone(self.queued(frm, code), "in %s's queue before" % frm)
            t0 = now_ms()
            r = self.act(code, "forward", frm)
            t1 = now_ms()
            self.assertEqual((r["state"], r["step"]["index"], r["step"]["agency"]),
                             ("IN_PROGRESS", i, to))
            c = self.case(code)
            step = c["steps"][i]
            self.assertIsNotNone(c["steps"][i - 1]["done_at"])
            self.assert_bracket(CAL.due(t0, p["steps"][i]["days"]), ms(step["due_at"]),
                                CAL.due(t1, p["steps"][i]["days"]), "due of step %d" % i)
            task = self.queued(to, code)
            self.assertIsNotNone(task, "in %s's queue after the forward" % to)
            self.assertEqual((task["step"]["index"], task["step"]["agency"]), (i, to))
            if not above(frm, to):
                self.assertIsNone(self.queued(frm, code), "left %s's queue" % frm)
        self.act(code, "forward", s2, expect=409, field="action")  # the last step
        self.act(code, "approve", s1, expect=403, field="agency")
        r = self.act(code, "approve", s2)
        self.assertEqual((r["state"], r["national_status"]), ("APPROVED", 9))
        self.assertIsNone(self.queued(s2, code), "a resolved case is no task")
        self.act(code, "approve", s2, expect=409, field="action")
        self.assertEqual(self.act(code, "result_ready", s2)["national_status"], 9)
        self.assertEqual(self.act(code, "return", s2)["national_status"], 10)
        for action in ("return", "withdraw", "receive", "forward", "refuse"):
            self.act(code, action, s2, note="x", expect=409, field="action")

        view = self.lookup(code)
        expected = (["SUBMITTED", "SUBMITTED", "RECEIVED"] if channel == "online"
                    else ["RECEIVED", "RECEIVED"])
        expected += ["IN_PROGRESS"] * 3 + ["APPROVED", "RESULT_READY", "RETURNED"]
        self.assertEqual([h["state"] for h in view["history"]], expected)
        self.assertEqual((view["status"], view["national_status"], view["overdue"]),
                         ("RETURNED", 10, False))
        agencies = [h["agency"] for h in view["history"]]
        self.assertEqual(agencies, [s0] * (len(expected) - 5) + [s1, s2, s2, s2, s2],
                         "the agency in charge at each entry: %s" % view["history"])
        times = [ms(h["at"]) for h in view["history"]]
        self.assertEqual(times, sorted(times), "history in time order")
        c = self.check_events(code)
        self.assertEqual((c["state"], c["outcome"]), ("RETURNED", "approved"))
        self.assertIsNotNone(c["resolved_at"])
        self.assertTrue(all(s["done_at"] for s in c["steps"]), c["steps"])
        self.check_notifications(code)

    def test_03_refuse_needs_a_note(self):
        p = PROCEDURES[CORRECTION]
        s0, s1 = p["steps"][0]["agency"], p["steps"][1]["agency"]
        rec = self.submit(CORRECTION, "online")
        code = rec["code"]
        self.act(code, "receive", s0)
        self.act(code, "forward", s0)
        self.act(code, "refuse", s1, expect=422, field="note")
        self.act(code, "refuse", s1, note="", expect=422, field="note")
        note = "Giấy tờ làm căn cứ không hợp lệ"
        r = self.act(code, "refuse", s1, note=note)
        self.assertEqual((r["state"], r["national_status"]), ("REFUSED", 8))
        self.act(code, "refuse", s1, note=note, expect=409, field="action")
        self.act(code, "approve", s1, expect=409, field="action")
        view = self.lookup(code)
        self.assertEqual(view["history"][-1]["note"], note)
        c = self.check_events(code)
        self.assertEqual(c["outcome"], "refused")
        self.assertIsNotNone(c["resolved_at"])
        self.check_notifications(code)
        refused = [n for n in self.notifications(code) if n["event"] == "refused"]
        self.assertEqual(refused[0]["params"].get("note"), note)

    def test_04_reject_at_intake(self):
        s0 = PROCEDURES[BIRTH]["steps"][0]["agency"]
        s1 = PROCEDURES[BIRTH]["steps"][1]["agency"]
        code = self.submit(BIRTH, "online")["code"]
        self.act(code, "reject", s0, expect=422, field="note")
        self.act(code, "reject", s1, note="x", expect=403, field="agency")
        r = self.act(code, "reject", s0, note="Hồ sơ không đúng thẩm quyền")
        self.assertEqual((r["state"], r["national_status"]), ("REJECTED_AT_INTAKE", 3))
        self.assertIsNone(self.queued(s0, code))
        for action in ("receive", "reject", "withdraw", "forward"):
            self.act(code, action, s0, note="x", expect=409, field="action")
        self.assertEqual(self.check_events(code)["outcome"], "rejected")
        self.check_notifications(code)
        # A direct dossier is received at the desk: there is nothing to reject any more.
        direct = self.submit(BIRTH, "direct")["code"]
        self.act(direct, "reject", s0, note="x", expect=409, field="action")
        self.check_notifications(direct)

    def test_05_withdrawal_from_in_progress(self):
        p = PROCEDURES[BIRTH]
        s0, s1 = p["steps"][0]["agency"], p["steps"][1]["agency"]
        code = self.submit(BIRTH, "direct")["code"]
        self.act(code, "forward", s0)
        self.act(code, "withdraw", s1, expect=422, field="note")
        self.act(code, "withdraw", key=self.s.stranger, note="x", expect=403, field="agency")
        # The receiving desk records a withdrawal although the step is elsewhere.
        r = self.act(code, "withdraw", s0, note="Công dân xin rút hồ sơ")
        self.assertEqual((r["state"], r["national_status"]), ("WITHDRAWN", 7))
        self.assertIsNone(self.queued(s1, code))
        self.act(code, "withdraw", s1, note="x", expect=409, field="action")
        self.act(code, "forward", s1, expect=409, field="action")
        c = self.check_events(code)
        self.assertEqual(c["outcome"], "withdrawn")
        self.assertIsNotNone(c["resolved_at"])
        self.check_notifications(code)

    def test_06_withdrawal_from_supplement_requested(self):
        s0 = PROCEDURES[BIRTH]["steps"][0]["agency"]
        code = self.submit(BIRTH, "postal")["code"]
        self.act(code, "request_supplement", s0, expect=422, field="note")
        r = self.act(code, "request_supplement", s0, note="Bổ sung bản chính Giấy chứng sinh")
        self.assertEqual((r["state"], r["national_status"]), ("SUPPLEMENT_REQUESTED", 5))
        self.assertTrue(self.case(code)["paused"])
        task = self.tasks(self.s.keys[s0], state="SUPPLEMENT_REQUESTED")["items"]
        self.assertIn(code, [t["code"] for t in task])
        self.act(code, "request_supplement", s0, note="x", expect=409, field="action")
        self.act(code, "forward", s0, expect=409, field="action")
        r = self.act(code, "withdraw", s0, note="Công dân xin rút hồ sơ")
        self.assertEqual((r["state"], r["national_status"]), ("WITHDRAWN", 7))
        c = self.check_events(code)
        self.assertEqual((c["outcome"], c["paused"]), ("withdrawn", False))
        open_pauses = self.s.pg.sql("SELECT count(*) FROM routing.pauses WHERE code = '%s'"
                                    " AND ended_at IS NULL" % code, self.s.db)
        self.assertEqual(open_pauses, "0", "the pause ends with the withdrawal")
        self.act(code, "supplement_received", s0, expect=409, field="action")
        self.check_notifications(code)

    def test_07_supplement_moves_the_due_time_by_the_paused_working_time(self):
        p = PROCEDURES[CORRECTION]
        s0, s1 = p["steps"][0]["agency"], p["steps"][1]["agency"]
        code = self.submit(CORRECTION, "online")["code"]
        self.act(code, "receive", s0)
        self.act(code, "forward", s0)
        c = self.case(code)
        old_due, old_step_due = ms(c["due_at"]), ms(c["steps"][1]["due_at"])
        self.act(code, "supplement_received", s1, expect=409, field="action")
        self.act(code, "request_supplement", s1, note="", expect=422, field="note")
        self.act(code, "request_supplement", s1, note="Bổ sung giấy tờ làm căn cứ cải chính")
        c = self.case(code)
        self.assertTrue(c["paused"])
        self.assertFalse(c["overdue"])
        # The applicant takes days to bring the documents. Days cannot pass in a test:
        # the start of the pause is written back to 09:30 of a working day at least three
        # days ago, which stands in for that time having passed since the request.
        paused = CAL.last_working_morning(now_ms(), 3)
        self.s.pg.sql("UPDATE routing.cases SET paused_at = to_timestamp(%d / 1000.0)"
                      " WHERE code = '%s'" % (paused, code), self.s.db)
        self.s.pg.sql("UPDATE routing.pauses SET started_at = to_timestamp(%d / 1000.0)"
                      " WHERE code = '%s' AND ended_at IS NULL" % (paused, code), self.s.db)
        self.s.made[code]["paused"] = (paused, paused)
        t0 = now_ms()
        r = self.act(code, "supplement_received", s1)
        t1 = now_ms()
        self.assertEqual((r["state"], r["national_status"]), ("IN_PROGRESS", 4))
        c = self.case(code)
        self.assertFalse(c["paused"])
        new_due, new_step_due = ms(c["due_at"]), ms(c["steps"][1]["due_at"])
        left = CAL.between(paused, old_due)
        self.assert_bracket(CAL.add(t0, left), new_due, CAL.add(t1, left),
                            "due after the supplement (%d working minutes left)"
                            % (left // MINUTE_MS))
        step_left = CAL.between(paused, old_step_due)
        self.assert_bracket(CAL.add(t0, step_left), new_step_due, CAL.add(t1, step_left),
                            "step due after the supplement")
        # Said the other way: the due time moved by exactly the working time paused.
        moved = CAL.between(old_due, new_due)
        self.assertGreater(moved, 0)
        self.assert_bracket(CAL.between(paused, t0), moved, CAL.between(paused, t1),
                            "working time the due moved by")
        self.assertEqual(ms(self.lookup(code)["due_at"]), new_due, "public due time")
        ended = self.s.pg.sql("SELECT count(*) FROM routing.pauses WHERE code = '%s'"
                              " AND kind = 'supplement' AND ended_at IS NOT NULL" % code, self.s.db)
        self.assertEqual(ended, "1")
        self.check_events(code)
        self.check_notifications(code)

    def test_08_cross_agency_steps_move_between_queues(self):
        p = PROCEDURES[TRANSPORT]
        a0, a1, a2 = [st["agency"] for st in p["steps"]]
        code = self.submit(TRANSPORT, "direct")["code"]
        self.assertEqual(self.queued(a0, code)["step"]["index"], 0)
        self.assertIsNone(self.queued(a1, code))
        self.assertIsNone(self.queued(a2, code))
        for who in (self.s.keys[a1], self.s.keys[a2], self.s.stranger):
            self.act(code, "forward", key=who, expect=403, field="agency")
        self.act(code, "forward", a0)
        self.assertIsNone(self.queued(a0, code), "no longer in the one-stop centre's queue")
        self.assertEqual(self.queued(a1, code)["step"]["agency"], a1)
        self.assertIsNotNone(self.queued(a2, code), "the department sees its unit's queue")
        self.act(code, "forward", a0, expect=403, field="agency")
        self.tasks(self.s.keys[a1], expect=403, agency=a0)
        self.assertIn(code, [t["code"] for t in self.tasks(self.s.keys[a2], agency=a1)["items"]])
        # The department (above the unit) acts on its unit's step.
        self.act(code, "forward", a2)
        self.act(code, "approve", a1, expect=403, field="agency")
        self.assertEqual(self.act(code, "approve", a2)["state"], "APPROVED")
        self.check_events(code)
        self.check_notifications(code)

    def test_09_lien_thong_chain_reaches_handed_off(self):
        p = PROCEDURES[CHAIN]
        steps = [st["agency"] for st in p["steps"]]
        police = next(i for i, a in enumerate(steps) if AGENCIES[a]["external"])
        code = self.submit(CHAIN, "online")["code"]
        self.act(code, "receive", steps[0])
        for i in range(police - 1):
            self.act(code, "forward", steps[i])
        t0 = now_ms()
        r = self.act(code, "forward", steps[police - 1])
        t1 = now_ms()
        self.assertEqual((r["state"], r["national_status"]), ("HANDED_OFF", 4))
        self.assertEqual((r["step"]["index"], r["step"]["agency"]), (police, steps[police]))

        def recorded():
            return self.handoffs(code) or None
        items = harness.wait_for(recorded, timeout=10, interval=0.05, what="handoff")
        self.assertEqual(len(items), 1, items)
        h = items[0]
        self.assertEqual((h["dossier"], h["procedure"], h["step"], h["agency"], h["state"]),
                         (code, CHAIN, police, steps[police], "requested"))
        self.assertEqual(h["step_name"], p["steps"][police]["name"])
        days = p["steps"][police]["days"]
        self.assert_bracket(CAL.due(t0, days), ms(h["due_at"]), CAL.due(t1, days),
                            "handoff due")
        self.assertIsNone(self.queued(steps[police - 1], code),
                          "the police step is in no queue of the commune")
        ops = self.tasks(self.s.operator, state="HANDED_OFF")["items"]
        self.assertIn(code, [t["code"] for t in ops])
        self.assertEqual({t["state"] for t in ops}, {"HANDED_OFF"})
        # The whole queue, oldest due first.
        queue = self.tasks(self.s.operator, limit=500)
        dues = [ms(t["due_at"]) for t in queue["items"]]
        self.assertEqual(dues, sorted(dues), "oldest due first")
        self.assertEqual(queue["total"], len(queue["items"]))
        # The receiving desk's agency carries a case whose step is outside motcua, but the
        # state machine does not forward a handed-off dossier.
        self.act(code, "forward", steps[police - 1], expect=409, field="action")
        self.check_events(code)
        self.check_notifications(code)
        self.assertEqual(len(self.handoffs(code)), 1)

    def force_due_into_past(self, code):
        """Days cannot pass in a test: the case's due time is set one hour into the past
        in routing's table, which stands in for the time having run out. Returns it."""
        out = self.s.pg.sql("UPDATE routing.cases SET due_at = now() - interval '1 hour'"
                            " WHERE code = '%s' RETURNING (extract(epoch FROM due_at)"
                            " * 1000)::bigint" % code, self.s.db)
        rec = self.s.made[code]
        rec["forced_overdue"] = True
        rec["due"] = int(out.splitlines()[0])
        return rec["due"]

    def check_apology(self, code, t0, t1, forced):
        """The one apology letter of a case the sweep found overdue; returns it."""
        rec = self.s.made[code]
        p = PROCEDURES[rec["procedure"]]
        c = self.case(code)
        self.assertTrue(c["overdue"])
        self.assertEqual(len(c["apologies"]), 1, c["apologies"])
        ap = c["apologies"][0]
        self.assertAlmostEqual(ms(ap["due_at"]), forced, delta=1,
                               msg="the apology names the missed due time")
        extra = max(1, math.ceil(p["days"] * 0.5))
        appointment = ms(ap["appointment_at"])
        self.assert_bracket(CAL.due(t0, extra), appointment, CAL.due(t1, extra),
                            "new appointment (%s working days from now)" % extra)
        step = p["steps"][c["step"]]
        self.assertEqual(ap["agency"], step["agency"])
        self.assertIn(step["name"], ap["reason"])
        self.assertIn(AGENCIES[step["agency"]]["name"], ap["reason"])
        rec["history"].append(rec["state"])  # the apology, in the public history
        rec["events"].append((rec["state"], rec["state"]))
        rec["notify"].append("overdue_apology")
        view = self.wait_history(code)
        self.assertTrue(view["overdue"])
        self.assertEqual(ms(view["appointment_at"]), appointment)
        self.assertEqual(view["history"][-1]["note"], ap["reason"])
        self.assertTrue(self.queued(step["agency"], code)["overdue"])
        self.check_notifications(code)
        n = [x for x in self.notifications(code) if x["event"] == "overdue_apology"][0]
        self.assertEqual(ms(n["params"]["appointment_at"]) // 1000, appointment // 1000)
        return ap

    def test_10_overdue_sweep_apologises_once(self):
        s0 = PROCEDURES[BIRTH]["steps"][0]["agency"]
        c0 = PROCEDURES[CORRECTION]["steps"][0]["agency"]
        a = self.submit(BIRTH, "direct")["code"]           # overdue, stays open
        b = self.submit(CORRECTION, "postal")["code"]      # overdue, then resolved late
        c = self.submit(BIRTH, "direct")["code"]           # clock stopped, then the due passed
        d = self.submit(CORRECTION, "online")["code"]      # clock stopped within time
        self.act(c, "request_supplement", s0, note="Bổ sung tờ khai")
        self.act(d, "receive", c0)
        self.act(d, "request_supplement", c0, note="Bổ sung giấy tờ làm căn cứ")
        # d: asked for the supplement two hours ago, its due time passed an hour ago while
        # the clock stood (SQL again standing in for the time).
        out = self.s.pg.sql("UPDATE routing.cases SET paused_at = now() - interval '2 hours'"
                            " WHERE code = '%s' RETURNING (extract(epoch FROM paused_at)"
                            " * 1000)::bigint" % d, self.s.db)
        self.s.made[d]["paused"] = (int(out.splitlines()[0]),) * 2
        t0 = now_ms()
        forced = {code: self.force_due_into_past(code) for code in (a, b, c, d)}

        def marked():
            return all(self.case(x)["apologies"] for x in (a, b)) or None
        harness.wait_for(marked, timeout=10, interval=0.05, what="the overdue sweep")
        t1 = now_ms()
        self.assertLess(t1 - t0, 3000, "the sweep (every 200 ms) took %d ms" % (t1 - t0))
        for code in (a, b):
            self.check_apology(code, t0, t1, forced[code])
        # The case knows which step is late: a's first step, its due time passed too.
        self.s.pg.sql("UPDATE routing.case_steps SET due_at = now() - interval '1 minute'"
                      " WHERE code = '%s' AND idx = 0" % a, self.s.db)
        self.assertEqual([st["late"] for st in self.case(a)["steps"]], [True, False, False])
        for code in (c, d):  # a standing clock gets no apology from the sweep
            self.assertEqual(self.case(code)["apologies"], [], "a stopped clock is not swept")
        self.assertFalse(self.case(d)["overdue"], "stopped within time: not overdue")
        self.assertFalse(self.lookup(d)["overdue"])
        self.assertFalse(self.queued(c0, d)["overdue"])
        # Five more sweeps: nothing is done twice.
        time.sleep(1.0)
        for code in (a, b):
            k = self.case(code)
            self.assertEqual(len(k["apologies"]), 1, "one apology letter")
            self.check_events(code)
            self.check_notifications(code)
            self.wait_history(code)
        for code in (c, d):
            self.assertEqual(self.case(code)["apologies"], [])
        # b is resolved after its (original) due time: late; c is withdrawn.
        pb = PROCEDURES[CORRECTION]["steps"]
        self.act(b, "forward", pb[0]["agency"])
        self.act(b, "forward", pb[1]["agency"])
        self.act(b, "approve", pb[2]["agency"])
        k = self.case(b)
        self.assertGreater(ms(k["resolved_at"]), ms(k["due_at"]))
        self.assertAlmostEqual(ms(k["due_at"]), forced[b], delta=1,
                               msg="the apology's appointment does not replace the due time")
        self.assertFalse(self.lookup(b)["overdue"], "a resolved dossier is not overdue")
        self.act(c, "withdraw", s0, note="Công dân xin rút hồ sơ")
        for code in (a, b, c, d):
            self.check_events(code)
            self.check_notifications(code)

    def test_12_clock_stopped_after_the_due_time_stays_overdue(self):
        """An overdue dossier (apology sent) whose clock then stops for a supplement is
        still overdue: docs/statistics.md counts it so ("a case whose clock stopped after
        its due time had passed stays overdue") and says the officers' queue uses the
        same rule; the public lookup should not take the overdue flag back either."""
        s0 = PROCEDURES[BIRTH]["steps"][0]["agency"]
        e = self.submit(BIRTH, "direct")["code"]
        t0 = now_ms()
        forced = self.force_due_into_past(e)
        harness.wait_for(lambda: self.case(e)["apologies"] or None, timeout=10, interval=0.05,
                         what="the overdue sweep")
        self.check_apology(e, t0, now_ms(), forced)
        self.act(e, "request_supplement", s0, note="Bổ sung bản chính Giấy chứng sinh")
        self.check_events(e)
        self.check_notifications(e)
        problems = []
        if not self.case(e)["overdue"]:
            problems.append("GET /v1/cases says overdue: false (case_open.c case_show: "
                            "'overdue' requires paused_at IS NULL)")
        if not self.queued(s0, e)["overdue"]:
            problems.append("GET /v1/tasks says overdue: false (tasks.c: due_at < now() AND "
                            "paused_at IS NULL)")
        if not self.lookup(e)["overdue"]:
            problems.append("the public lookup says overdue: false (the request_supplement "
                            "DossierStatusChanged carries overdue=0, status_view.c stores it, "
                            "and lookup.c's fallback leaves SUPPLEMENT_REQUESTED out)")
        self.assertEqual(problems, [], "BUG: a dossier whose clock stopped after its due time "
                         "(apology already sent) is overdue in the statistics report "
                         "(docs/statistics.md) but not in: " + "; ".join(problems))

    def test_13_concurrent_officers_one_transition(self):
        """Eight officers press the same button at once: one transition happens."""
        import concurrent.futures
        p = PROCEDURES[BIRTH]
        s0, s1, s2 = [st["agency"] for st in p["steps"]]
        code = self.submit(BIRTH, "direct")["code"]
        url = self.routing.url("/v1/dossiers/%s/actions" % code)

        def race(action, agency):
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                return list(pool.map(lambda _: harness.http(
                    "POST", url, {"action": action, "officer": OFFICER},
                    bearer(self.s.keys[agency])), range(8)))
        t0 = now_ms()
        answers = race("forward", s0)
        t1 = now_ms()
        ok = [r for status, r in answers if status == 200]
        self.assertEqual(len(ok), 1, answers)
        # the others found the step at the next agency already
        self.assertEqual(sorted(status for status, _ in answers), [200] + [403] * 7, answers)
        self.applied(code, "forward", ok[0], t0, t1)
        self.act(code, "forward", s1)
        t0 = now_ms()
        answers = race("approve", s2)
        t1 = now_ms()
        ok = [r for status, r in answers if status == 200]
        self.assertEqual(len(ok), 1, answers)
        for status, r in answers:
            if status != 200:
                self.assertEqual((status, r.get("state")), (409, "APPROVED"), r)
        self.applied(code, "approve", ok[0], t0, t1)
        self.check_events(code)
        self.check_notifications(code)

    def test_11_notifications_once_per_event(self):
        """received, supplement_requested and refused on one dossier, once each; and no
        dossier of this file has any notification twice or one it should not have."""
        p = PROCEDURES[CORRECTION]
        s0 = p["steps"][0]["agency"]
        code = self.submit(CORRECTION, "direct")["code"]
        self.act(code, "request_supplement", s0, note="Bổ sung giấy tờ")
        self.act(code, "supplement_received", s0)
        self.act(code, "refuse", s0, note="Không đủ điều kiện")
        self.check_notifications(code)
        for other in list(self.s.made):
            with self.subTest(dossier=other):
                self.check_notifications(other)


# ====================================================================== bad input

class BadInputTest(Base):
    """Bad input on every endpoint of intake, routing, interconnect and notify."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rec = None

    def a_case(self):
        if not BadInputTest.rec:
            BadInputTest.rec = self.submit(BIRTH, "direct")
        return BadInputTest.rec

    def assert_error(self, status, body, want_status, field=None, code=None, what=None):
        self.assertEqual(status, want_status, (what, body))
        self.assertIsInstance(body, dict, (what, body))
        self.assertIn("error", body, what)
        self.assertTrue(body["error"]["message"], what)
        if field is not None:
            self.assertEqual(body["error"]["field"], field, (what, body))
        if code is not None:
            self.assertEqual(body["error"]["code"], code, (what, body))

    def test_actions(self):
        rec = self.a_case()
        code = rec["code"]
        s0 = rec["steps"][0]
        url = self.routing.url("/v1/dossiers/%s/actions" % code)
        key = bearer(self.s.keys[s0])
        good = {"action": "forward", "officer": OFFICER}
        auth_cases = [
            ({}, 401, "unauthorized"),
            ({"Authorization": "Bearer nope"}, 401, "unauthorized"),
            ({"Authorization": "Basic " + self.s.keys[s0]}, 401, "unauthorized"),
            (bearer("mck_" + "0" * 64), 401, "unauthorized"),
            (bearer(self.s.integrator), 403, "forbidden"),
            (bearer(self.s.operator), 403, "forbidden"),
            (bearer(self.s.portal), 403, "forbidden"),
            (bearer(self.s.stranger), 403, "forbidden"),
        ]
        for headers, status, err in auth_cases:
            with self.subTest(headers=headers):
                got, body = harness.http("POST", url, good, headers)
                self.assert_error(got, body, status, code=err, what=headers)
        bodies = [
            (b"not json", 400, None),
            (b"{\"action\": \"forward\",}", 400, None),
            (b"[\"forward\"]", 400, None),
            (b"\"forward\"", 400, None),
            (b"{\"action\": \"forward\", \"action\": \"approve\"}", 400, None),
            ({}, 400, "action"),
            ({"action": 3}, 400, "action"),
            ({"action": None}, 400, "action"),
            ({"action": ["forward"]}, 400, "action"),
            ({"action": "fly"}, 400, "action"),
            ({"action": "FORWARD"}, 400, "action"),
            ({"action": "start"}, 400, "action"),            # the bus's, not an officer's
            ({"action": "hand_off"}, 400, "action"),
            ({"action": "payment_settled"}, 400, "action"),
            ({"action": "forward", "note": 5}, 400, "note"),
            ({"action": "forward", "note": {"x": 1}}, 400, "note"),
            ({"action": "forward", "note": "x" * 2001}, 400, "note"),
            ({"action": "forward", "officer": 7}, 400, "officer"),
            ({"action": "forward", "officer": ""}, 400, "officer"),
            ({"action": "forward", "officer": "x" * 201}, 400, "officer"),
        ]
        for body, status, field in bodies:
            with self.subTest(body=body):
                got, answer = harness.http("POST", url, body, key)
                self.assert_error(got, answer, status, field=field, what=body)
        got, answer = harness.http("POST", url, dict(good, note="x" * 2_000_000), key)
        self.assert_error(got, answer, 413, what="oversized")
        got, answer = harness.http("POST", self.routing.url("/v1/dossiers/%s/actions"
                                                            % ("X" * 65)), good, key)
        self.assert_error(got, answer, 400, field="code")
        got, answer = harness.http("POST", self.routing.url(
            "/v1/dossiers/000.01.31.H99-20260101-9999999/actions"), good, key)
        self.assert_error(got, answer, 404, field="code")
        # Nothing of this moved the case.
        c = self.case(code)
        self.assertEqual((c["state"], c["step"]), ("IN_PROGRESS", 0))
        self.assertEqual(len(c["events"]), 2, c["events"])

    def test_submission(self):
        url = self.intake.url("/v1/dossiers")
        good = self.body(BIRTH, "online")
        level2 = next(c for c, p in sorted(PROCEDURES.items()) if p["level"] == 2)
        only_counter = next(c for c, p in sorted(PROCEDURES.items())
                            if p["return_methods"] == ["counter"] and p["level"] > 2)
        cases = [
            (b"{", 400, None),
            (b"", 400, None),
            (b"null", 400, None),
            (dict(good, procedure=1001193), 400, "procedure"),
            (dict(good, procedure=["1.001193"]), 400, "procedure"),
            (dict(good, channel=2), 400, "channel"),
            (dict(good, channel="email"), 400, "channel"),
            (dict(good, applicant="Trần Thị Bình"), 400, "applicant"),
            (dict(good, applicant=dict(good["applicant"], name=42)), 400, "applicant.name"),
            (dict(good, applicant=dict(good["applicant"], phone=912345678)), 400,
             "applicant.phone"),
            (dict(good, documents={"kind": "x"}), 400, "documents"),
            (dict(good, documents=["to_khai_khai_sinh"]), 400, "documents[0]"),
            (dict(good, documents=[dict(good["documents"][0], size="2048")]), 400,
             "documents[0]"),
            (dict(good, documents=[dict(good["documents"][0], size=1.5)]), 400, "documents[0]"),
            (dict(good, return_method=1), 400, "return_method"),
            (dict(good, delivery_address=12), 400, "delivery_address"),
            (dict(good, procedure="1.999999"), 422, "procedure"),
            (dict(good, procedure="x-unknown"), 422, "procedure"),
            (self.body(level2, "online"), 422, "channel"),
            (self.body(only_counter, "direct", return_method="online"), 422, "return_method"),
            (dict(good, documents=good["documents"][1:]), 422, "documents"),
            (dict(good, agency="000.99.99.H99"), 422, "agency"),
            (dict(good, agency="G09.99.31"), 422, "agency"),   # police: outside motcua
        ]
        before = self.s.pg.sql("SELECT count(*) FROM intake.dossiers", self.s.db)
        for body, status, field in cases:
            with self.subTest(body=body if isinstance(body, bytes) else
                              {k: v for k, v in body.items() if k != "applicant"}):
                got, answer = harness.http("POST", url, body, bearer(self.s.operator))
                self.assert_error(got, answer, status, field=field, what=body)
        got, answer = harness.http("POST", url, dict(good, note="x" * 2_000_000),
                                   bearer(self.s.operator))
        self.assert_error(got, answer, 413, what="oversized")
        # Who may submit (test_slice has every case): no key is 401; the citizen portal
        # does not submit at the desk, an officer only at their own agency's desk (403).
        got, answer = harness.http("POST", url, good)
        self.assert_error(got, answer, 401, code="unauthorized")
        direct = dict(good, channel="direct")
        got, answer = harness.http("POST", url, direct, bearer(self.s.portal))
        self.assert_error(got, answer, 403, field="channel", code="forbidden")
        got, answer = harness.http("POST", url, direct, bearer(self.s.stranger))
        self.assert_error(got, answer, 403, field="agency", code="forbidden")
        self.assertEqual(self.s.pg.sql("SELECT count(*) FROM intake.dossiers", self.s.db), before,
                         "nothing stored")
        # Idempotency-Key: a replay answers the same; a different body under it is 409.
        key = dict(bearer(self.s.portal), **{"Idempotency-Key": "lifecycle-" + uuid.uuid4().hex})
        s1, a1 = harness.http("POST", url, good, key)
        self.assertEqual(s1, 201, a1)
        self.record(a1, BIRTH, "online")
        s2, a2 = harness.http("POST", url, good, key)
        self.assertEqual((s2, a2), (201, a1))
        direct = dict(key, Authorization="Bearer " + self.s.operator)
        got, answer = harness.http("POST", url, dict(good, channel="direct"), direct)
        self.assert_error(got, answer, 409, field="Idempotency-Key", code="idempotency_conflict")
        got, answer = harness.http("POST", url, dict(good, procedure="1.999999"), key)
        self.assert_error(got, answer, 409, field="Idempotency-Key", code="idempotency_conflict")
        self.assertEqual(int(self.s.pg.sql("SELECT count(*) FROM intake.dossiers", self.s.db)),
                         int(before) + 1)

    def test_lookup_receipt_and_case(self):
        rec = self.a_case()
        code, token = rec["code"], rec["token"]
        lookup = self.intake.url("/v1/dossiers/" + code)
        status, body = harness.http("GET", lookup)
        self.assert_error(status, body, 401, code="unauthorized")
        status, body = harness.http("GET", lookup + "?token=" + "0" * 32)
        self.assert_error(status, body, 404)
        status, body = harness.http("GET", lookup + "?token=" + token,
                                    headers=bearer("mck_" + "1" * 64))
        self.assert_error(status, body, 401, what="a bad key is refused even with a token")
        status, body = harness.http("GET", lookup, headers=bearer(self.s.keys[rec["steps"][0]]))
        self.assertEqual((status, body.get("code")), (200, code), body)
        status, body = harness.http("GET", self.intake.url("/v1/dossiers/a%20b?token=x"))
        self.assert_error(status, body, 400, field="code")
        receipt = self.intake.url("/v1/dossiers/%s/receipt" % code)
        status, html = harness.http("GET", receipt + "?token=" + token)
        self.assertEqual(status, 200)
        self.assertIn(code, html)
        status, body = harness.http("GET", receipt + "?token=" + "0" * 32)
        self.assert_error(status, body, 404)
        status, body = harness.http("GET", receipt)
        self.assertEqual(status, 401, body)
        case = self.routing.url("/v1/cases/" + code)
        for headers, want in (({}, 401), (bearer("mck_" + "2" * 64), 401),
                              ({"Authorization": "Bearer"}, 401), (bearer(self.s.portal), 403)):
            status, body = harness.http("GET", case, headers=headers)
            self.assert_error(status, body, want, what=headers)
        status, body = harness.http("GET", self.routing.url("/v1/cases/NO-SUCH-CODE"),
                                    headers=bearer(self.s.operator))
        self.assert_error(status, body, 404)
        status, body = harness.http("GET", self.routing.url("/v1/cases/" + "X" * 65),
                                    headers=bearer(self.s.operator))
        self.assert_error(status, body, 400, field="code")

    def test_tasks_query(self):
        s0 = PROCEDURES[BIRTH]["steps"][0]["agency"]
        key = self.s.keys[s0]
        url = self.routing.url("/v1/tasks")
        for headers, want in (({}, 401), (bearer("mck_" + "3" * 64), 401),
                              (bearer(self.s.integrator), 403), (bearer(self.s.portal), 403)):
            status, body = harness.http("GET", url, headers=headers)
            self.assert_error(status, body, want, what=headers)
        bad = [("state=APPROVED", "state"), ("state=bogus", "state"), ("state=", "state"),
               ("limit=0", "limit"), ("limit=501", "limit"), ("limit=abc", "limit"),
               ("limit=", "limit"), ("limit=10x", "limit"), ("offset=-1", "offset"),
               ("offset=x", "offset"), ("agency=", "agency"), ("agency=" + "A" * 33, "agency")]
        for query, field in bad:
            with self.subTest(query=query):
                status, body = harness.http("GET", url + "?" + query, headers=bearer(key))
                self.assert_error(status, body, 400, field=field, what=query)
        # another agency's queue, or one that does not exist: not yours
        for agency in (self.s.stranger_agency, "000.00.00.H99", "NO.SUCH"):
            status, body = harness.http("GET", url + "?agency=" + agency, headers=bearer(key))
            self.assert_error(status, body, 403, field="agency", what=agency)
        status, body = harness.http("GET", url + "?limit=1&offset=0&state=IN_PROGRESS",
                                    headers=bearer(key))
        self.assertEqual(status, 200, body)
        self.assertLessEqual(len(body["items"]), 1)

    def test_catalog_and_calendar_queries(self):
        bad = [
            ("/v1/procedures?level=1", 400, "level"), ("/v1/procedures?level=5", 400, "level"),
            ("/v1/procedures?level=x", 400, "level"), ("/v1/procedures?level=", 400, "level"),
            ("/v1/procedures?limit=0", 400, "limit"), ("/v1/procedures?limit=201", 400, "limit"),
            ("/v1/procedures?limit=-1", 400, "limit"), ("/v1/procedures?offset=-1", 400, "offset"),
            ("/v1/procedures?offset=1e3", 400, "offset"), ("/v1/procedures?agency=", 400, "agency"),
            ("/v1/procedures?agency=" + "A" * 33, 400, "agency"),
            ("/v1/procedures?q=" + "a" * 201, 400, "q"),
            ("/v1/procedures/9.999999", 404, "code"),
            ("/v1/procedures/" + "9" * 33, 400, "code"),
            ("/v1/agencies?parent=", 400, "parent"),
            ("/v1/calendar/due", 400, "from"),
            ("/v1/calendar/due?days=3", 400, "from"),
            ("/v1/calendar/due?from=yesterday&days=3", 400, "from"),
            ("/v1/calendar/due?from=2026-02-30T10:00:00%2B07:00&days=3", 400, "from"),
            ("/v1/calendar/due?from=2026-02-13T25:00:00%2B07:00&days=3", 400, "from"),
            ("/v1/calendar/due?from=2026-02-13T10:00:00%2B07:00X&days=3", 400, "from"),
            ("/v1/calendar/due?from=2026-02-13T10:00:00%2B07:00", 400, "days"),
            ("/v1/calendar/due?from=2026-02-13T10:00:00%2B07:00&days=", 400, "days"),
            ("/v1/calendar/due?from=2026-02-13T10:00:00%2B07:00&days=-1", 400, "days"),
            ("/v1/calendar/due?from=2026-02-13T10:00:00%2B07:00&days=abc", 400, "days"),
            ("/v1/calendar/due?from=2026-02-13T10:00:00%2B07:00&days=3651", 400, "days"),
            ("/v1/calendar/due?from=2026-02-13T10:00:00%2B07:00&days=nan", 400, "days"),
        ]
        for path, status, field in bad:
            with self.subTest(path=path):
                got, body = harness.http("GET", self.intake.url(path))
                self.assert_error(got, body, status, field=field, what=path)
        # A cut-off that is not HH:MM must be refused, not read as "no cut-off".
        for cutoff in ("25:00", "3pm", "15:0x", "15:00:00"):
            with self.subTest(cutoff=cutoff):
                path = "/v1/calendar/due?from=2026-02-13T10:00:00%2B07:00&days=3&cutoff=" + cutoff
                got, body = harness.http("GET", self.intake.url(path))
                self.assertEqual(got, 400, "BUG: cutoff=%s answered %s %s: a cut-off that is "
                                 "not HH:MM is taken as no cut-off instead of refused"
                                 % (cutoff, got, body))
                self.assertEqual(body["error"]["field"], "cutoff")
        got, body = harness.http("GET", self.intake.url("/v1/procedures?q=dang%20ky%20khai%20sinh"))
        self.assertEqual(got, 200, body)
        self.assertIn(BIRTH, [p["code"] for p in body["items"]])

    def test_handoffs_and_notifications_queries(self):
        for path, field in (("/v1/handoffs?state=lost", "state"),
                            ("/v1/handoffs?dossier=", "dossier"),
                            ("/v1/handoffs?dossier=" + "X" * 65, "dossier")):
            got, body = harness.http("GET", self.interconnect.url(path),
                                     headers=bearer(self.s.operator))
            self.assert_error(got, body, 400, field=field, what=path)
        for path in ("/v1/notifications", "/v1/notifications?dossier=",
                     "/v1/notifications?dossier=" + "X" * 65):
            got, body = harness.http("GET", self.notify.url(path), headers=bearer(self.s.operator))
            self.assert_error(got, body, 400, field="dossier", what=path)

    def test_handoffs_and_notifications_need_a_key(self):
        """These lists name applicants' dossiers, the reasons of refusals and the
        agencies they went to: like every officer and operator endpoint they should
        refuse a request without a key (docs/security.md: every caller that is not an
        anonymous citizen holds a key)."""
        code = self.a_case()["code"]
        for svc, path in ((self.interconnect, "/v1/handoffs?dossier=" + code),
                          (self.notify, "/v1/notifications?dossier=" + code)):
            for headers in ({}, bearer("mck_" + "4" * 64)):
                with self.subTest(path=path, headers=headers):
                    got, body = harness.http("GET", svc.url(path), headers=headers)
                    self.assertEqual(got, 401, "BUG: %s answers %s to a request without a valid "
                                     "API key (%s): the list is public" % (path, got, body))


# ====================================================================== statistics

class StatisticsTest(Base):
    """GET /v1/stats on routing against a tally of what the other tests of this file did
    (it runs after them: unittest takes the classes of a module in name order). The
    definitions are those of docs/statistics.md and of the issue: a dossier counts for
    the agency that resolves its procedure (and the agencies above it); rejected at
    intake is not a received dossier; received = new (online / direct / postal) +
    carried over; resolved (approved, refused, withdrawn) early when resolved on a
    local date before the due date, on time up to the due time, late after it; open
    ones in progress, overdue when their running clock passed the due time; level3 and
    level4 count the dossiers received online for procedures of that level; the rates
    are percentages with one decimal (null when there is nothing to divide)."""

    FIELDS = ["received_total", "received_online", "received_direct", "received_postal",
              "carried_over", "resolved_total", "resolved_early", "resolved_on_time",
              "resolved_late", "in_progress_total", "in_progress_on_time",
              "in_progress_overdue", "withdrawn", "refused", "on_time_rate", "online_rate",
              "level3", "level4"]

    def expected(self, root, tref):
        """The report for the agency subtree of `root`, today, judged at `tref`, from the
        test's own records: channel, level, outcome, the due time this file expects for
        each dossier (checked against routing's when it was set), when the clock stopped,
        and when the dossier was resolved (routing's resolved_at, checked to lie between
        the instants around the resolving request)."""
        recs = [r for r in self.s.made.values()
                if above(root, r["agency"]) and r["outcome"] != "rejected"]
        timeliness = collections.Counter()
        overdue = 0
        for r in recs:
            if r["outcome"]:
                c = self.case(r["code"])
                resolved = ms(c["resolved_at"])
                self.assert_bracket(r["resolved"][0], resolved, r["resolved"][1],
                                    "resolved_at of %s" % r["code"])
                self.assertAlmostEqual(ms(c["due_at"]), r["due"], delta=1, msg=r["code"])
                if resolved > r["due"]:
                    timeliness["late"] += 1
                elif CAL.date_of(resolved) < CAL.date_of(r["due"]):
                    timeliness["early"] += 1
                else:
                    timeliness["on_time"] += 1
            elif r["due"] < tref:
                # a clock that stopped while within time is not overdue
                stopped_in_time = r["paused"] is not None and r["paused"][1] < r["due"]
                if r["paused"] is not None and not stopped_in_time:
                    self.assertGreaterEqual(r["paused"][0], r["due"], "ambiguous test data")
                overdue += not stopped_in_time
        resolved = [r for r in recs if r["outcome"]]
        open_ = [r for r in recs if not r["outcome"]]
        by = collections.Counter(r["channel"] for r in recs)

        def rate(num, den):
            if not den:
                return None
            exact = decimal.Decimal(100 * num) / decimal.Decimal(den)
            return float(exact.quantize(decimal.Decimal("0.1"), rounding=decimal.ROUND_HALF_UP))
        return {
            "received_total": len(recs),
            "received_online": by["online"], "received_direct": by["direct"],
            "received_postal": by["postal"], "carried_over": 0,
            "resolved_total": len(resolved),
            "resolved_early": timeliness["early"], "resolved_on_time": timeliness["on_time"],
            "resolved_late": timeliness["late"],
            "in_progress_total": len(open_),
            "in_progress_on_time": len(open_) - overdue,
            "in_progress_overdue": overdue,
            "withdrawn": sum(r["outcome"] == "withdrawn" for r in resolved),
            "refused": sum(r["outcome"] == "refused" for r in resolved),
            "on_time_rate": rate(timeliness["early"] + timeliness["on_time"], len(resolved)),
            "online_rate": rate(by["online"], len(recs)),
            "level3": sum(r["channel"] == "online" and r["level"] == 3 for r in recs),
            "level4": sum(r["channel"] == "online" and r["level"] == 4 for r in recs),
        }

    def stats(self, key, query, expect=200):
        status, body = harness.http("GET", self.routing.url("/v1/stats?" + query),
                                    headers=bearer(key))
        self.assertEqual(status, expect, (query, body))
        return body

    def test_report_matches_what_the_test_did(self):
        today = datetime.datetime.now(VN).date().isoformat()
        status, body = harness.http("GET", self.routing.url(
            "/v1/stats?agency=000.00.00.H99&from=%s&to=%s" % (today, today)),
            headers=bearer(self.s.operator))
        if status == 404 and not (isinstance(body, dict)
                                  and body.get("error", {}).get("field") == "agency"):
            self.skipTest("GET /v1/stats is not there yet (404)")
        if not any(r["forced_overdue"] for r in self.s.made.values()):
            self.skipTest("run with the rest of test_lifecycle: the report is checked "
                          "against the dossiers the other tests create")
        # The period: from the day of the first dossier to today (whole local days), so
        # that a run across midnight still sees everything it did as new in the period.
        first = min(CAL.date_of(ms(r["received_at"])) for r in self.s.made.values())
        period = (first.isoformat(), datetime.datetime.now(VN).date().isoformat())
        # The province, a commune (3 levels: commune, its desk and units) and a department.
        roots = ["000.00.00.H99", PROCEDURES[BIRTH]["agency"],
                 PROCEDURES[TRANSPORT]["agency"]]
        for root in roots:
            with self.subTest(agency=root):
                want = self.expected(root, now_ms())
                got = self.stats(self.s.operator, "agency=%s&from=%s&to=%s" % ((root,) + period))
                self.assertEqual({k: got.get(k) for k in self.FIELDS}, want)
                self.assertEqual(set(got) - set(self.FIELDS), {"agency", "from", "to"})
                self.assertEqual((got["agency"], got["from"], got["to"]), (root,) + period)
                # The same as CSV: a header and one line, same fields, same order.
                status, text = harness.http("GET", self.routing.url(
                    "/v1/stats?agency=%s&from=%s&to=%s&format=csv" % ((root,) + period)),
                    headers=bearer(self.s.operator))
                self.assertEqual(status, 200, text)
                rows = list(csv.reader(text.strip().splitlines()))
                self.assertEqual(rows[0], ["agency", "from", "to"] + self.FIELDS)
                self.assertEqual(len(rows), 2, rows)
                for name, cell in zip(self.FIELDS, rows[1][3:]):
                    self.assertEqual(cell, "" if want[name] is None else
                                     ("%.1f" % want[name] if name.endswith("_rate")
                                      else str(want[name])), name)
        # No agency: the whole province, echoed as null.
        got = self.stats(self.s.operator, "from=%s&to=%s" % period)
        self.assertIsNone(got["agency"])
        self.assertEqual({k: got[k] for k in self.FIELDS},
                         self.expected("000.00.00.H99", now_ms()))
        # The report balances.
        self.assertEqual(got["received_total"], got["resolved_total"] + got["in_progress_total"])
        # An officer sees its own subtree by default; the whole province is not its own.
        commune = PROCEDURES[BIRTH]["agency"]
        got = self.stats(self.s.keys[commune], "from=%s&to=%s" % period)
        self.assertEqual({k: got[k] for k in self.FIELDS}, self.expected(commune, now_ms()))
        self.stats(self.s.keys[commune], "agency=000.00.00.H99&from=%s&to=%s" % period,
                   expect=403)
        # The day before: nothing of this test.
        yesterday = (first - datetime.timedelta(days=1)).isoformat()
        got = self.stats(self.s.operator, "from=%s&to=%s" % (yesterday, yesterday))
        self.assertEqual(got["received_total"], 0, got)
        self.assertIsNone(got["on_time_rate"])
        self.assertIsNone(got["online_rate"])
        print("\n    statistics report, %s..%s, province: %s" % (period + (json.dumps(
            {k: self.stats(self.s.operator, "from=%s&to=%s" % period)[k]
             for k in self.FIELDS}),)))

    def test_bad_queries(self):
        today = datetime.datetime.now(VN).date().isoformat()
        url = self.routing.url("/v1/stats")
        status, body = harness.http("GET", url + "?from=%s&to=%s" % (today, today))
        if status == 404:
            self.skipTest("GET /v1/stats is not there yet (404)")
        self.assertEqual(status, 401, body)
        status, body = harness.http("GET", url + "?from=%s&to=%s" % (today, today),
                                    headers=bearer("mck_" + "5" * 64))
        self.assertEqual(status, 401, body)
        status, body = harness.http("GET", url + "?from=%s&to=%s" % (today, today),
                                    headers=bearer(self.s.portal))
        self.assertEqual(status, 403, body)
        bad = [("to=%s" % today, 400, "from"), ("from=%s" % today, 400, "to"),
               ("from=2026-02-30&to=2026-03-01", 400, "from"),
               ("from=2026-1-1&to=2026-01-02", 400, "from"),
               ("from=2026-03-01&to=2026-02-01", 400, "to"),
               ("from=2026-03-01&to=tomorrow", 400, "to"),
               ("from=2020-01-01&to=2026-01-01", 400, "to"),
               ("from=%s&to=%s&format=xml" % (today, today), 400, "format"),
               ("from=%s&to=%s&agency=" % (today, today), 400, "agency"),
               ("from=%s&to=%s&agency=a,b" % (today, today), 400, "agency"),
               ("from=%s&to=%s&agency=NO.SUCH.AGENCY" % (today, today), 404, "agency")]
        for query, want, field in bad:
            with self.subTest(query=query):
                status, body = harness.http("GET", url + "?" + query,
                                            headers=bearer(self.s.operator))
                self.assertEqual((status, body["error"]["field"]), (want, field), body)
        status, body = harness.http("GET", url + "?from=%s&to=%s&agency=%s" % (
            today, today, self.s.stranger_agency),
            headers=bearer(self.s.keys[PROCEDURES[BIRTH]["agency"]]))
        self.assertEqual((status, body["error"]["field"]), (403, "agency"), body)


if __name__ == "__main__":
    unittest.main()
