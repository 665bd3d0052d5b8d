"""The one-stop statistics report (GET /v1/stats, motcuactl stats) over dossiers imported
from a legacy system (motcuactl import), on a real PostgreSQL and a real routing.

A few hundred legacy dossiers are generated here, spread over agencies, channels,
service levels, outcomes and dates, with the edge cases written out: resolved early,
on the due day, at the due second, one second late, around local midnight (UTC+7
against UTC dates), open and overdue, open and within time, paused, carried over from
before the period, resolved at the very start or end of the period, received after
it. They are imported, then every figure of the report is compared with values that
this file computes from the generated records on its own, following
docs/statistics.md: for a past quarter (province, a three-level subtree, one unit),
and for a period that runs past today (overdue is judged at now, not at the period's
end). Plus CSV, motcuactl stats, who may see what (403), bad dates (400), no key (401).

The import itself is tested on a database of its own: a bad line imports nothing and
names its line and field, every error is listed in line order (the first 100), codes
repeated in the file or already present are refused, and importing the same good file
twice fails the second time without changing anything.
"""
import datetime as dt
import decimal
import json
import os
import pty
import random
import shutil
import subprocess
import tempfile
import unittest
import urllib.error
import urllib.request

import harness

CTL = os.path.join(harness.BIN, "motcuactl")
AGENCIES = os.path.join(harness.ROOT, "deploy", "data", "catalog", "agencies.json")
TZ = dt.timezone(dt.timedelta(hours=7))
UTC = dt.timezone.utc

FIELDS = ["received_total", "received_online", "received_direct", "received_postal",
          "carried_over", "resolved_total", "resolved_early", "resolved_on_time",
          "resolved_late", "in_progress_total", "in_progress_on_time", "in_progress_overdue",
          "withdrawn", "refused", "on_time_rate", "online_rate", "level3", "level4"]

# The quarter the report is checked on, and the subtree: a department, its unit, and
# that unit's branch (three levels).
FROM, TO = dt.date(2025, 4, 1), dt.date(2025, 6, 30)
DEPT = "000.00.12.H99"


def load_agencies():
    with open(AGENCIES, encoding="utf-8") as f:
        return {a["code"]: a["parent"] for a in json.load(f)["agencies"]}


def subtree(parents, root):
    out, stack = set(), [root]
    while stack:
        code = stack.pop()
        out.add(code)
        stack.extend(c for c, p in parents.items() if p == code)
    return out


def local(y, m, d, h=0, mi=0, s=0):
    return dt.datetime(y, m, d, h, mi, s, tzinfo=TZ)


def start_of(day):
    return dt.datetime(day.year, day.month, day.day, tzinfo=TZ)


# ---------------------------------------------------------------- the legacy file

def fmt_time(t, style):
    """A time as a legacy export may write it; all of these mean the same instant."""
    if t is None:
        return None
    frac = ".%03d" % (t.microsecond // 1000) if t.microsecond else ""
    if style == 0:  # ISO 8601 in UTC
        return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"
    if style == 1:  # ISO 8601, local offset
        return t.astimezone(TZ).strftime("%Y-%m-%dT%H:%M:%S") + frac + "+07:00"
    if style == 2:  # local wall-clock time
        return t.astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S") + frac
    return t.astimezone(dt.timezone(dt.timedelta(hours=-3))).strftime(
        "%Y-%m-%dT%H:%M:%S") + frac + "-0300"  # another zone, compact offset


def record(code, agency, channel, received, due, resolved=None, outcome=None, level=None,
           paused=None):
    return {"code": code, "agency": agency, "channel": channel, "received": received,
            "due": due, "resolved": resolved, "outcome": outcome, "level": level,
            "paused": paused}


def to_line(r, i):
    line = {"code": r["code"], "procedure": "1.00%04d" % (i % 40), "agency": r["agency"],
            "channel": r["channel"], "received_at": fmt_time(r["received"], i % 4),
            "due_at": fmt_time(r["due"], (i + 1) % 4),
            "resolved_at": fmt_time(r["resolved"], (i + 2) % 4), "outcome": r["outcome"]}
    if r["level"] is not None:
        line["level"] = r["level"]
    if i % 7 == 0:
        line["procedure_name"] = "Thủ tục thứ %d" % i
    if i % 11 == 0 and r["resolved"] is None:  # open ones may leave the keys out
        del line["resolved_at"], line["outcome"]
    return line


def write_file(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for i, r in enumerate(records):
            f.write(json.dumps(to_line(r, i), ensure_ascii=False) + "\n")


def edge_cases(dept_leaf, unit):
    """Dossiers at the boundaries of the definitions, around the quarter."""
    t0, t1 = start_of(FROM), start_of(TO + dt.timedelta(days=1))
    # Early or on time is decided on local dates. Due at 06:00 on 10 May (local), which
    # is 23:00 on the 9th in UTC: resolved at 23:30 on the 9th (local) is early, though
    # in UTC both fall on the 9th. Due at 10:00 on the 10th: resolved at 06:30 that day
    # (local) is on time, though in UTC it is still the 9th.
    due_dawn, due = local(2025, 5, 10, 6, 0), local(2025, 5, 10, 10, 0)
    c = [
        record("E-early-evening", unit, "online", local(2025, 5, 2, 9), due_dawn,
               local(2025, 5, 9, 23, 30), "approved", 3),
        record("E-ontime-dawn", unit, "online", local(2025, 5, 2, 9), due,
               local(2025, 5, 10, 6, 30), "approved", 4),
        record("E-ontime-exact", dept_leaf, "direct", local(2025, 5, 2, 9), due, due,
               "approved"),
        record("E-late-1s", dept_leaf, "postal", local(2025, 5, 2, 9), due,
               due + dt.timedelta(seconds=1), "refused"),
        record("E-late-ms", dept_leaf, "online", local(2025, 5, 2, 9), due,
               due + dt.timedelta(milliseconds=250), "approved", 4),
        record("E-no-due", unit, "direct", local(2025, 5, 3, 9), None,
               local(2025, 6, 3, 9), "approved"),
        record("E-withdrawn-early", unit, "online", local(2025, 4, 3, 9),
               local(2025, 4, 20, 17), local(2025, 4, 5, 10), "withdrawn", 3),
        # Carried over: received just before the quarter, still open at its start.
        record("E-carried-open", unit, "direct", t0 - dt.timedelta(seconds=1),
               local(2025, 4, 2, 17)),
        record("E-carried-resolved-at-t0", dept_leaf, "online", local(2025, 3, 20, 9),
               local(2025, 4, 10, 17), t0, "approved", 3),
        record("E-resolved-before", dept_leaf, "online", local(2025, 3, 1, 9),
               local(2025, 3, 20, 17), t0 - dt.timedelta(seconds=1), "approved", 3),
        # New exactly at the start; received at the very end; after the end.
        record("E-new-at-t0", unit, "online", t0, t0 + dt.timedelta(days=3),
               t0 + dt.timedelta(days=1), "approved", 4),
        record("E-new-last-second", unit, "postal", t1 - dt.timedelta(seconds=1),
               t1 + dt.timedelta(days=5)),
        record("E-after", unit, "online", t1, t1 + dt.timedelta(days=5), None, None, 4),
        # Resolved at the very end instant: not in the quarter, in progress at its end,
        # overdue then (its due time had passed).
        record("E-resolved-at-t1", dept_leaf, "direct", local(2025, 6, 1, 9),
               local(2025, 6, 20, 17), t1, "approved"),
        # In progress at the end: due exactly at the end (not overdue), just before it
        # (overdue), paused before its due time passed (not overdue: the clock stands),
        # paused after (overdue).
        record("E-due-at-t1", unit, "online", local(2025, 6, 25, 9), t1, None, None, 3),
        record("E-due-before-t1", unit, "online", local(2025, 6, 25, 9),
               t1 - dt.timedelta(seconds=1), None, None, 3),
        record("E-paused-in-time", dept_leaf, "direct", local(2025, 6, 2, 9),
               local(2025, 6, 12, 17), paused=local(2025, 6, 5, 10)),
        record("E-paused-late", dept_leaf, "direct", local(2025, 6, 2, 9),
               local(2025, 6, 12, 17), paused=local(2025, 6, 14, 10)),
        # Paused only after the period ended: at the end it was running, and late.
        record("E-paused-after-end", dept_leaf, "postal", local(2025, 6, 2, 9),
               local(2025, 6, 12, 17), paused=local(2025, 8, 1, 9)),
    ]
    return c


def generate(agencies, now):
    """A few hundred dossiers, reproducibly."""
    rnd = random.Random(20250401)
    codes = sorted(agencies)
    dept = sorted(subtree(agencies, DEPT))
    records = edge_cases("000.02.12.H99", "000.01.12.H99")
    start, span = local(2024, 11, 1), (local(2025, 8, 15) - local(2024, 11, 1)).total_seconds()
    for i in range(420):
        agency = rnd.choice(dept) if rnd.random() < 0.35 else rnd.choice(codes)
        channel = rnd.choice(["online", "online", "direct", "postal"])
        level = rnd.choice([None, 2, 3, 3, 4])
        received = start + dt.timedelta(seconds=int(rnd.random() * span))
        due = None if rnd.random() < 0.05 else received + dt.timedelta(
            hours=rnd.randint(8, 24 * 25))
        kind = rnd.random()
        resolved = outcome = None
        if kind > 0.06:
            outcome = "approved" if kind < 0.75 else "refused" if kind < 0.88 else "withdrawn"
            # Most are done in time, as in the provinces' reports; a fifth are late.
            allowed = (due - received) if due else dt.timedelta(days=10)
            share = rnd.uniform(0.1, 0.98) if rnd.random() < 0.8 else rnd.uniform(1.01, 1.8)
            resolved = received + allowed * share
            resolved -= dt.timedelta(microseconds=resolved.microsecond)
            if resolved > now - dt.timedelta(minutes=5):
                resolved, outcome = None, None
        records.append(record("LEG-%05d" % i, agency, channel, received, due, resolved,
                              outcome, level))
    # Recent dossiers, for a period that runs past today: overdue is judged at now.
    for i in range(40):
        agency = rnd.choice(dept) if i % 2 else rnd.choice(codes)
        received = now - dt.timedelta(days=20) + dt.timedelta(minutes=rnd.randint(0, 60 * 24 * 19))
        due = received + dt.timedelta(hours=rnd.randint(4, 24 * 12))
        if abs((due - now).total_seconds()) < 600:  # nothing due while the test runs
            due += dt.timedelta(hours=1)
        resolved = outcome = None
        if i % 3 == 0:
            resolved = min(received + dt.timedelta(hours=rnd.randint(1, 200)),
                           now - dt.timedelta(minutes=10))
            outcome = ["approved", "refused", "withdrawn"][i % 9 // 3]
        records.append(record("NOW-%03d" % i, agency, rnd.choice(["online", "direct", "postal"]),
                              received, due, resolved, outcome, rnd.choice([3, 4])))
    return records


# ---------------------------------------------------------------- the expected report

def rate(num, den):
    if den == 0:
        return None
    q = (decimal.Decimal(100 * num) / decimal.Decimal(den)).quantize(
        decimal.Decimal("0.1"), rounding=decimal.ROUND_HALF_UP)
    return float(q)


def expected(records, first, last, scope, now):
    """docs/statistics.md, computed from the generated records alone."""
    t0, t1 = start_of(first), start_of(last + dt.timedelta(days=1))
    tref = min(t1, now)
    n = dict.fromkeys(FIELDS, 0)
    new = 0
    for r in records:
        if r["outcome"] == "rejected" or (scope is not None and r["agency"] not in scope):
            continue
        rec, res, due = r["received"], r["resolved"], r["due"]
        if rec >= t1 or (res is not None and res < t0):
            continue  # not open at any moment of the period
        if rec >= t0:
            new += 1
            n["received_" + r["channel"]] += 1
            if r["channel"] == "online" and r["level"] in (3, 4, None):
                n["level%d" % (r["level"] or 3)] += 1
        else:
            n["carried_over"] += 1
        if res is not None and res < t1:
            n["resolved_total"] += 1
            if due is not None and res > due:
                n["resolved_late"] += 1
            elif due is not None and res.astimezone(TZ).date() < due.astimezone(TZ).date():
                n["resolved_early"] += 1
            else:
                n["resolved_on_time"] += 1
            if r["outcome"] in ("withdrawn", "refused"):
                n[r["outcome"]] += 1
        else:
            n["in_progress_total"] += 1
            p = r["paused"] if res is None else None  # a resolved case's pause is over
            overdue = due is not None and due < tref and (p is None or p > tref or p >= due)
            n["in_progress_overdue" if overdue else "in_progress_on_time"] += 1
    n["received_total"] = n["carried_over"] + new
    n["on_time_rate"] = rate(n["resolved_early"] + n["resolved_on_time"], n["resolved_total"])
    n["online_rate"] = rate(n["received_online"], new)
    return n


# ---------------------------------------------------------------- helpers

def ctl_env(base, **extra):
    env = {k: v for k, v in base.items()}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.update(extra)
    return env


def run_ctl(env, *args, stdin=None):
    return subprocess.run([CTL, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=120, input=stdin)


def get(url, key=None):
    """(status, Content-Type, body text) of a GET."""
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + key} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def no_sanitizer_report(test, text):
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        test.assertNotIn(marker, text)


class StatsReportTest(unittest.TestCase):
    """The report over imported dossiers."""

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres()
        cls.routing = None
        cls.tmp = tempfile.mkdtemp(prefix="motcua-stats-")
        try:
            cls.db = cls.pg.database()
            cls.env = harness.suite_env(cls.db)
            cls.routing = harness.Service("routing", cls.env).start()
            cls.agencies = load_agencies()
            cls.now = dt.datetime.now(UTC)
            cls.records = generate(cls.agencies, cls.now)
            path = os.path.join(cls.tmp, "legacy.jsonl")
            write_file(path, cls.records)
            r = run_ctl(ctl_env(cls.env), "import", path)
            assert r.returncode == 0, r.stdout + r.stderr
            cls.import_out = r.stdout
            # The clock of some open cases stands (supplement asked): routing's own column.
            for rec in cls.records:
                if rec["paused"] is not None:
                    cls.pg.sql("UPDATE routing.cases SET paused_at = '%s' WHERE code = '%s'"
                               % (rec["paused"].isoformat(), rec["code"]), cls.db)
            cls.keys = {}
            for name, scopes, agency in (("operator", "operator", None),
                                         ("integrator", "integrator", None),
                                         ("portal", "citizen_portal", None),
                                         ("officer-dept", "officer", DEPT),
                                         ("officer-unit", "officer", "000.01.12.H99")):
                args = ["keys", "create", "--name", name, "--scopes", scopes, "--json"]
                if agency:
                    args += ["--agency", agency]
                r = run_ctl(ctl_env(cls.env), *args)
                assert r.returncode == 0, r.stderr
                cls.keys[name] = json.loads(r.stdout)["key"]
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.routing and cls.routing.proc and cls.routing.proc.poll() is None:
                status = cls.routing.terminate()
                log = cls.routing.log()
                assert status == 0, log
                for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                    assert marker not in log, log
        finally:
            cls.pg.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def stats(self, key="operator", **query):
        q = "&".join("%s=%s" % (k, v) for k, v in query.items())
        status, ctype, body = get(self.routing.url("/v1/stats?" + q),
                                  self.keys[key] if key else None)
        return status, ctype, body

    def report(self, key="operator", **query):
        status, ctype, body = self.stats(key, **query)
        self.assertEqual(status, 200, body)
        self.assertTrue(ctype.startswith("application/json"), ctype)
        return json.loads(body)

    def check(self, got, want, agency, first, last):
        self.assertEqual(list(got), ["agency", "from", "to"] + FIELDS)
        self.assertEqual((got["agency"], got["from"], got["to"]),
                         (agency, first.isoformat(), last.isoformat()))
        for f in FIELDS:
            self.assertEqual(got[f], want[f], f)
            if f.endswith("_rate"):
                self.assertTrue(got[f] is None or isinstance(got[f], float), f)
            else:
                self.assertIsInstance(got[f], int, f)
        # The columns add up as the one-stop report says.
        self.assertEqual(got["received_total"], got["resolved_total"] + got["in_progress_total"])
        self.assertEqual(got["received_total"], got["carried_over"] + got["received_online"]
                         + got["received_direct"] + got["received_postal"])
        self.assertEqual(got["resolved_total"], got["resolved_early"] + got["resolved_on_time"]
                         + got["resolved_late"])
        self.assertEqual(got["in_progress_total"],
                         got["in_progress_on_time"] + got["in_progress_overdue"])

    # ---------------------------------------------------------------- figures

    def test_import_summary(self):
        n = len(self.records)
        opened = sum(1 for r in self.records if r["outcome"] is None)
        self.assertIn("imported %d dossiers" % n, self.import_out)
        lines = dict(line.split() for line in self.import_out.splitlines()[1:])
        self.assertEqual(int(lines["lines"]), n)
        self.assertEqual(int(lines["imported"]), n)
        self.assertEqual(int(lines["open"]), opened)
        for outcome in ("approved", "refused", "withdrawn"):
            self.assertEqual(int(lines[outcome]),
                             sum(1 for r in self.records if r["outcome"] == outcome))
        self.assertEqual(self.pg.sql("SELECT count(*), count(*) FILTER (WHERE imported) FROM "
                                     "routing.cases", self.db), "%d|%d" % (n, n))
        # States and desks as documented; an open dossier has one step at its agency.
        got = self.pg.sql("SELECT state, coalesce(outcome, '-'), count(*) FROM routing.cases "
                          "WHERE agency_code = resolving_agency GROUP BY 1, 2 ORDER BY 1",
                          self.db)
        want = {"RETURNED|approved", "REFUSED|refused", "WITHDRAWN|withdrawn", "IN_PROGRESS|-"}
        self.assertEqual({"|".join(l.split("|")[:2]) for l in got.splitlines()}, want)
        self.assertEqual(self.pg.sql("SELECT count(*) FROM routing.case_steps", self.db),
                         str(opened))

    def test_quarter_province_subtree_and_unit(self):
        for agency, scope in ((None, None), (DEPT, subtree(self.agencies, DEPT)),
                              ("000.02.12.H99", {"000.02.12.H99"})):
            want = expected(self.records, FROM, TO, scope, self.now)
            query = {"from": FROM.isoformat(), "to": TO.isoformat()}
            if agency:
                query["agency"] = agency
            got = self.report(**query)
            self.check(got, want, agency, FROM, TO)
            if agency in (None, DEPT):
                print("\n/v1/stats %s: %s" % (agency or "province", json.dumps(got)))
        # Enough of everything to mean something.
        want = expected(self.records, FROM, TO, subtree(self.agencies, DEPT), self.now)
        for f in FIELDS:
            if f != "online_rate" and f != "on_time_rate":
                self.assertGreater(want[f], 0, f)

    def test_period_running_past_today(self):
        today = self.now.astimezone(TZ).date()
        first, last = today - dt.timedelta(days=25), today + dt.timedelta(days=5)
        before = dt.datetime.now(UTC)
        got = self.report(**{"from": first.isoformat(), "to": last.isoformat()})
        after = dt.datetime.now(UTC)
        want = expected(self.records, first, last, None, before)
        self.assertEqual(want, expected(self.records, first, last, None, after))
        self.check(got, want, None, first, last)
        # Had overdue been judged at the period's end, more would be overdue.
        at_end = expected(self.records, first, last, None, start_of(last) + dt.timedelta(days=1))
        self.assertGreater(at_end["in_progress_overdue"], got["in_progress_overdue"])
        self.assertGreater(got["in_progress_on_time"], 0)

    def test_empty_period_rates_null(self):
        got = self.report(**{"from": "2019-01-01", "to": "2019-12-31"})
        self.check(got, dict.fromkeys(FIELDS, 0) | {"on_time_rate": None, "online_rate": None},
                   None, dt.date(2019, 1, 1), dt.date(2019, 12, 31))

    def test_csv(self):
        status, ctype, body = self.stats(**{"from": FROM.isoformat(), "to": TO.isoformat(),
                                            "agency": DEPT, "format": "csv"})
        self.assertEqual(status, 200, body)
        self.assertEqual(ctype, "text/csv; charset=utf-8")
        lines = body.splitlines()
        self.assertEqual(len(lines), 2)
        header, values = lines[0].split(","), lines[1].split(",")
        self.assertEqual(header, ["agency", "from", "to"] + FIELDS)
        want = expected(self.records, FROM, TO, subtree(self.agencies, DEPT), self.now)
        self.assertEqual(values[:3], [DEPT, FROM.isoformat(), TO.isoformat()])
        for f, v in zip(FIELDS, values[3:]):
            if want[f] is None:
                self.assertEqual(v, "", f)
            elif f.endswith("_rate"):
                self.assertEqual(v, "%.1f" % want[f], f)
            else:
                self.assertEqual(v, str(want[f]), f)
        # Nothing to divide by: empty cells.
        status, _, body = self.stats(**{"from": "2019-01-01", "to": "2019-01-31",
                                        "format": "csv"})
        self.assertEqual(body.splitlines()[1], ",2019-01-01,2019-01-31," + ",".join(
            "" if f.endswith("_rate") else "0" for f in FIELDS))

    # ---------------------------------------------------------------- who sees what

    def test_officer_sees_its_subtree_only(self):
        dept = subtree(self.agencies, DEPT)
        q = {"from": FROM.isoformat(), "to": TO.isoformat()}
        # Its own agency by default, and any agency below it.
        got = self.report("officer-dept", **q)
        self.check(got, expected(self.records, FROM, TO, dept, self.now), DEPT, FROM, TO)
        got = self.report("officer-dept", agency="000.02.12.H99", **q)
        self.check(got, expected(self.records, FROM, TO, {"000.02.12.H99"}, self.now),
                   "000.02.12.H99", FROM, TO)
        got = self.report("officer-unit", **q)
        self.check(got, expected(self.records, FROM, TO, subtree(self.agencies, "000.01.12.H99"),
                                 self.now), "000.01.12.H99", FROM, TO)
        # Not above it, not beside it, not an agency that does not exist.
        for key, agency in (("officer-unit", DEPT), ("officer-dept", "000.00.00.H99"),
                            ("officer-dept", "000.00.10.H99"), ("officer-dept", "NO.SUCH")):
            status, _, body = self.stats(key, agency=agency, **q)
            self.assertEqual(status, 403, (key, agency, body))
            self.assertEqual(json.loads(body)["error"]["field"], "agency")
        # Integrators see the province; a citizen portal's key sees nothing.
        got = self.report("integrator", **q)
        self.check(got, expected(self.records, FROM, TO, None, self.now), None, FROM, TO)
        status, _, body = self.stats("portal", **q)
        self.assertEqual(status, 403, body)

    def test_no_key_401(self):
        q = "/v1/stats?from=2025-04-01&to=2025-06-30"
        status, _, body = get(self.routing.url(q))
        self.assertEqual(status, 401, body)
        status, _, body = get(self.routing.url(q), "mck_" + "0" * 64)
        self.assertEqual(status, 401, body)

    def test_bad_query_400(self):
        cases = [
            ({"to": "2025-06-30"}, "from"),
            ({"from": "2025-04-01"}, "to"),
            ({"from": "2025-4-01", "to": "2025-06-30"}, "from"),
            ({"from": "20250401", "to": "2025-06-30"}, "from"),
            ({"from": "2025-04-01T00:00", "to": "2025-06-30"}, "from"),
            ({"from": "2025-02-29", "to": "2025-06-30"}, "from"),
            ({"from": "2025-04-01", "to": "2025-06-31"}, "to"),
            ({"from": "2025-04-01", "to": "2025-13-01"}, "to"),
            ({"from": "2025-04-01", "to": ""}, "to"),
            ({"from": "2025-04-01", "to": "2025-03-31"}, "to"),
            ({"from": "2020-01-01", "to": "2025-01-01"}, "to"),  # 5 years and a day
            ({"from": "2025-04-01", "to": "2025-06-30", "format": "xml"}, "format"),
            ({"from": "2025-04-01", "to": "2025-06-30", "agency": "a%20b"}, "agency"),
            ({"from": "2025-04-01", "to": "2025-06-30", "agency": ""}, "agency"),
        ]
        for query, field in cases:
            status, ctype, body = self.stats(**query)
            self.assertEqual(status, 400, (query, body))
            self.assertEqual(json.loads(body)["error"]["field"], field, query)
        # The longest period allowed, and the shortest.
        self.assertEqual(self.stats(**{"from": "2020-01-01", "to": "2024-12-31"})[0], 200)
        self.assertEqual(self.stats(**{"from": "2024-02-29", "to": "2029-02-28"})[0], 200)
        self.assertEqual(self.stats(**{"from": "2025-05-10", "to": "2025-05-10"})[0], 200)
        # An operator asking for an agency that does not exist.
        status, _, body = self.stats(**{"from": "2025-04-01", "to": "2025-06-30",
                                        "agency": "NO.SUCH"})
        self.assertEqual(status, 404, body)
        self.assertEqual(json.loads(body)["error"]["field"], "agency")

    # ---------------------------------------------------------------- motcuactl stats

    def test_motcuactl_stats(self):
        env = ctl_env(self.env, MOTCUA_API_KEY=self.keys["operator"])
        want = expected(self.records, FROM, TO, subtree(self.agencies, DEPT), self.now)
        r = run_ctl(env, "stats", "--from", FROM.isoformat(), "--to", TO.isoformat(),
                    "--agency", DEPT)
        self.assertEqual(r.returncode, 0, r.stderr)
        no_sanitizer_report(self, r.stderr)
        self.assertIn("Agency %s, 2025-04-01 to 2025-06-30" % DEPT, r.stdout)
        rows = {}
        for line in r.stdout.splitlines():
            label, _, value = line.rstrip().rpartition("  ")
            rows[label.strip()] = value.strip()
        self.assertEqual(rows["Received"], str(want["received_total"]))
        self.assertEqual(rows["carried over from before the period"], str(want["carried_over"]))
        self.assertEqual(rows["late"], str(want["resolved_late"]))
        self.assertEqual(rows["overdue"], str(want["in_progress_overdue"]))
        self.assertEqual(rows["Resolved early or on time"], "%.1f%%" % want["on_time_rate"])
        self.assertEqual(rows["New online, service level 4"], str(want["level4"]))
        # --csv is routing's CSV as it is; --json its JSON; --key instead of the variable.
        r = run_ctl(ctl_env(self.env), "stats", "--from", FROM.isoformat(), "--to",
                    TO.isoformat(), "--agency", DEPT, "--csv", "--key", self.keys["operator"])
        self.assertEqual(r.returncode, 0, r.stderr)
        _, _, body = self.stats(**{"from": FROM.isoformat(), "to": TO.isoformat(),
                                   "agency": DEPT, "format": "csv"})
        self.assertEqual(r.stdout.replace("\r\n", "\n"), body.replace("\r\n", "\n"))
        r = run_ctl(env, "stats", "--from", FROM.isoformat(), "--to", TO.isoformat(), "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.check(json.loads(r.stdout), expected(self.records, FROM, TO, None, self.now), None,
                   FROM, TO)
        # Refusals: routing's words; 400 is a bad command line (2), the rest 1.
        r = run_ctl(env, "stats", "--from", "2025-04-01", "--to", "2025-02-30")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("to is a date", r.stderr)
        officer = ctl_env(self.env, MOTCUA_API_KEY=self.keys["officer-unit"])
        r = run_ctl(officer, "stats", "--from", "2025-04-01", "--to", "2025-06-30", "--agency",
                    DEPT)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("HTTP 403", r.stderr)
        bad_key = ctl_env(self.env, MOTCUA_API_KEY="mck_" + "1" * 64)
        r = run_ctl(bad_key, "stats", "--from", "2025-04-01", "--to", "2025-06-30")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("HTTP 401", r.stderr)
        # Checked before asking anyone.
        no_key = {k: v for k, v in ctl_env(self.env).items() if k != "MOTCUA_API_KEY"}
        for args in (["stats", "--from", "2025-04-01", "--to", "2025-06-30"],
                     ["stats", "--from", "2025-04-01"],
                     ["stats", "--to", "2025-04-01", "--key", self.keys["operator"]],
                     ["stats", "--from", "2025-04-01", "--to", "2025-06-30", "--key", "x"],
                     ["stats", "--from", "2025-04-01", "--to", "2025-06-30", "--csv", "--json",
                      "--key", self.keys["operator"]],
                     ["stats", "extra", "--from", "2025-04-01", "--to", "2025-06-30"],
                     ["keys", "list", "--from", "2025-04-01"]):
            r = run_ctl(no_key, *args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn("usage", r.stderr, args)
        down = ctl_env(self.env, MOTCUA_API_KEY=self.keys["operator"],
                       MOTCUA_ROUTING_HTTP_PORT=str(harness.free_port()))
        r = run_ctl(down, "stats", "--from", "2025-04-01", "--to", "2025-06-30")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("routing did not answer", r.stderr)


class ImportTest(unittest.TestCase):
    """motcuactl import: everything or nothing, every bad line named."""

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres()
        cls.routing = None
        cls.tmp = tempfile.mkdtemp(prefix="motcua-import-")
        try:
            cls.db = cls.pg.database()
            cls.env = harness.suite_env(cls.db)
            # Routing creates its tables and loads the agency tree; then it may go.
            cls.routing = harness.Service("routing", cls.env).start()
            status = cls.routing.terminate()
            assert status == 0, cls.routing.log()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.pg.sql("TRUNCATE routing.cases CASCADE", self.db)

    def good(self, n, prefix="G"):
        base = local(2024, 3, 1, 8)
        out = []
        for i in range(n):
            rec = base + dt.timedelta(hours=i)
            line = {"code": "%s-%05d" % (prefix, i), "procedure": "2.000%03d" % (i % 50),
                    "agency": ["000.00.10.H99", "000.01.31.H99", "G09.99"][i % 3],
                    "channel": ["online", "direct", "postal"][i % 3],
                    "received_at": fmt_time(rec, i % 3),
                    "due_at": fmt_time(rec + dt.timedelta(days=5), 1),
                    "resolved_at": None, "outcome": None}
            if i % 4:
                line["resolved_at"] = fmt_time(rec + dt.timedelta(days=i % 9), 2)
                line["outcome"] = ["approved", "refused", "withdrawn"][i % 3]
            out.append(line)
        return out

    def write(self, lines, name="f.jsonl"):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            for line in lines:
                f.write((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False))
                        + "\n")
        return path

    def run_import(self, path):
        r = run_ctl(ctl_env(self.env), "import", path)
        no_sanitizer_report(self, r.stderr)
        return r

    def table(self):
        return self.pg.sql("SELECT count(*), coalesce(md5(string_agg(c::text, '|' ORDER BY code)),"
                           " '') FROM routing.cases c", self.db)

    def test_good_file_all_in_with_progress(self):
        lines = self.good(2500)
        lines.insert(10, "")  # a blank line is skipped
        path = self.write(lines)
        r = self.run_import(path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.pg.sql("SELECT count(*) FROM routing.cases WHERE imported",
                                     self.db), "2500")
        # Progress: plain lines (stderr is not a terminal), every 1,000 lines.
        self.assertIn("checking %s: 1000 lines, 0 errors\n" % path, r.stderr)
        self.assertIn("checking %s: 2000 lines, 0 errors\n" % path, r.stderr)
        self.assertIn("importing: 1000 of 2500 dossiers\n", r.stderr)
        self.assertIn("importing: 2500 of 2500 dossiers\n", r.stderr)
        self.assertNotIn("\r", r.stderr)
        summary = dict(line.split() for line in r.stdout.splitlines()[1:])
        self.assertEqual(summary["lines"], "2501")
        self.assertEqual(summary["imported"], "2500")
        opened = sum(1 for l in lines if isinstance(l, dict) and l["outcome"] is None)
        self.assertEqual(summary["open"], str(opened))
        self.assertEqual(int(summary["approved"]) + int(summary["refused"])
                         + int(summary["withdrawn"]) + opened, 2500)
        float(summary["seconds"])
        # Times in any of the accepted forms land on the same instant.
        got = self.pg.sql("SELECT to_char(received_at AT TIME ZONE 'Asia/Ho_Chi_Minh', "
                          "'YYYY-MM-DD HH24:MI:SS'), procedure_name, level, channel, state "
                          "FROM routing.cases WHERE code IN ('G-00000', 'G-00001', 'G-00002') "
                          "ORDER BY code", self.db)
        self.assertEqual(got.splitlines(), ["2024-03-01 08:00:00||3|online|IN_PROGRESS",
                                            "2024-03-01 09:00:00||3|direct|REFUSED",
                                            "2024-03-01 10:00:00||3|postal|WITHDRAWN"])

    def test_progress_on_a_terminal_rewrites_one_line(self):
        path = self.write(self.good(1500))
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen([CTL, "import", path], env=ctl_env(self.env),
                                    stdout=subprocess.PIPE, stderr=slave, text=True)
            os.close(slave)
            slave = None
            out = proc.communicate(timeout=120)[0]
            err = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the other side is closed
                    break
                if not chunk:
                    break
                err += chunk
        finally:
            os.close(master)
            if slave is not None:
                os.close(slave)
        err = err.decode()
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("imported 1500 dossiers", out)
        self.assertIn("\rchecking %s: 1000 lines, 0 errors" % path, err.replace("\x1b[K", ""))
        self.assertIn("\rimporting: 1500 of 1500 dossiers", err.replace("\x1b[K", ""))
        # One line per phase on the screen: the counts overwrite each other.
        self.assertEqual(err.replace("\r\n", "\n").count("\n"), 2, repr(err))

    def test_bad_line_imports_nothing_and_names_it(self):
        lines = self.good(40)
        lines[16]["received_at"] = "2025-13-01 08:00:00"  # line 17
        r = self.run_import(self.write(lines))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("line 17: received_at: not a time", r.stderr)
        self.assertIn("1 error in 40 lines: nothing imported", r.stderr)
        self.assertEqual(self.table(), "0|")

    def test_every_error_listed_in_line_order(self):
        lines = self.good(30)
        bad = {
            2: ("not json", "line 2: not JSON"),
            3: ("[1, 2]", "line 3: not a JSON object"),
            4: ({"code": None}, "line 4: code: missing"),
            5: ({"code": 5}, "line 5: code: not a string"),
            6: ({"code": "has space"}, "line 6: code: 1 to 100 bytes"),
            7: ({"agency": "NO.SUCH"}, 'line 7: agency: "NO.SUCH" is not in routing.agencies'),
            8: ({"channel": "fax"}, 'line 8: channel: "fax" is not online, direct or postal'),
            9: ({"received_at": "2025-03-01T08:00:00"}, "line 9: received_at: not a time"),
            10: ({"due_at": "tomorrow"}, "line 10: due_at: not a time"),
            11: ({"resolved_at": "2024-03-20 08:00:00", "outcome": None},
                 "line 11: outcome: missing (resolved_at is set)"),
            12: ({"resolved_at": None, "outcome": "approved"},
                 "line 12: resolved_at: missing (outcome is approved)"),
            13: ({"outcome": "rejected", "resolved_at": "2024-03-20 08:00:00"},
                 'line 13: outcome: "rejected" is not approved'),
            14: ({"level": 5}, "line 14: level: 5 is not 2, 3 or 4"),
            15: ({"recieved_at": "2024-03-01 08:00:00"}, "line 15: recieved_at: unknown field"),
            16: ({"received_at": "2999-01-01 08:00:00"}, "line 16: received_at: in the future"),
            17: ({"resolved_at": "2024-01-01 08:00:00Z", "outcome": "approved"},
                 "line 17: resolved_at: before received_at"),
            18: ({"due_at": "2024-01-01T08:00:00+07:00"}, "line 18: due_at: before received_at"),
            19: ({"code": "G-00000"}, "line 19: code: G-00000 is repeated (first on line 1)"),
            20: ('{"code": "x", "code": "y"}', "line 20: not JSON"),
        }
        for line_no, (change, _) in bad.items():
            if isinstance(change, str):
                lines[line_no - 1] = change
            else:
                lines[line_no - 1] = dict(lines[line_no - 1], **change)
        del lines[17 - 1]["due_at"]  # a dossier without a due time is fine
        r = self.run_import(self.write(lines))
        self.assertEqual(r.returncode, 1, r.stdout)
        errors = [l for l in r.stderr.splitlines() if l.startswith("line ")]
        self.assertEqual(len(errors), len(bad), r.stderr)
        for (line_no, (_, text)), got in zip(sorted(bad.items()), errors):
            self.assertTrue(got.startswith(text), (got, text))
        self.assertIn("%d errors in 30 lines: nothing imported" % len(bad), r.stderr)
        self.assertEqual(self.table(), "0|")

    def test_at_most_100_errors_shown(self):
        lines = self.good(250)
        for line in lines[:130]:
            line["channel"] = "fax"
        r = self.run_import(self.write(lines))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len([l for l in r.stderr.splitlines() if l.startswith("line ")]), 100)
        self.assertIn("line 100: channel", r.stderr)
        self.assertNotIn("line 101: channel", r.stderr)
        self.assertIn("... and 30 more errors", r.stderr)
        self.assertIn("130 errors in 250 lines", r.stderr)
        self.assertEqual(self.table(), "0|")

    def test_duplicate_code_in_file(self):
        lines = self.good(20)
        lines[12]["code"] = lines[4]["code"]
        lines[15]["code"] = lines[4]["code"]
        r = self.run_import(self.write(lines))
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 13: code: G-00004 is repeated (first on line 5)", r.stderr)
        self.assertIn("line 16: code: G-00004 is repeated (first on line 5)", r.stderr)
        self.assertEqual(self.table(), "0|")

    def test_code_already_present(self):
        self.assertEqual(self.run_import(self.write(self.good(10), "a.jsonl")).returncode, 0)
        before = self.table()
        lines = self.good(30, prefix="H")
        lines[21]["code"] = "G-00007"
        r = self.run_import(self.write(lines, "b.jsonl"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 22: code: G-00007 is already in routing.cases", r.stderr)
        self.assertEqual(self.table(), before)

    def test_same_file_twice(self):
        path = self.write(self.good(300))
        r = self.run_import(path)
        self.assertEqual(r.returncode, 0, r.stderr)
        before = self.table()
        events = self.pg.sql("SELECT count(*) FROM routing.case_events", self.db)
        self.assertEqual(before.split("|")[0], "300")
        r = self.run_import(path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 1: code: G-00000 is already in routing.cases", r.stderr)
        self.assertIn("300 errors in 300 lines: nothing imported", r.stderr)
        self.assertEqual(self.table(), before)
        self.assertEqual(self.pg.sql("SELECT count(*) FROM routing.case_events", self.db), events)

    def test_empty_file_and_missing_file(self):
        r = self.run_import(self.write(["", "  "]))
        self.assertEqual(r.returncode, 1)
        self.assertIn("holds no dossiers", r.stderr)
        r = self.run_import(os.path.join(self.tmp, "none.jsonl"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot open", r.stderr)
        r = run_ctl(ctl_env(self.env), "import")
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main()
