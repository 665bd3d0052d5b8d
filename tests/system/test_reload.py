"""The calendar and the catalog are reloaded without downtime on SIGHUP; a bad file on
reload is logged and the data in force is kept."""
import json
import os
import shutil
import signal
import tempfile
import unittest

import harness


class ReloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres()
        cls.data = tempfile.mkdtemp(prefix="motcua-data-")
        shutil.copytree(os.path.join(harness.ROOT, "deploy", "data"), cls.data, dirs_exist_ok=True)
        env = harness.suite_env(cls.pg.database())
        env["MOTCUA_DATA_DIR"] = cls.data
        cls.intake = harness.Service("intake", env).start()

    @classmethod
    def tearDownClass(cls):
        cls.intake.terminate()
        cls.pg.stop()
        shutil.rmtree(cls.data, ignore_errors=True)

    def procedures_file(self):
        return os.path.join(self.data, "catalog", "procedures.json")

    def procedure(self, code):
        status, body = harness.http("GET", self.intake.url("/v1/procedures/" + code))
        self.assertEqual(status, 200, body)
        return body

    def hup_and_wait_for(self, text):
        before = self.intake.log().count(text)
        self.intake.proc.send_signal(signal.SIGHUP)
        harness.wait_for(lambda: self.intake.log().count(text) > before, timeout=20,
                         what="log line %r" % text)

    def test_catalog_reload_changes_and_keeps(self):
        with open(self.procedures_file(), encoding="utf-8") as f:
            doc = json.load(f)
        original = doc["procedures"][0]["name"]
        code = doc["procedures"][0]["code"]
        self.assertEqual(self.procedure(code)["name"], original)
        doc["version"] = "2026.2"
        doc["procedures"][0]["name"] = original + " (sửa đổi)"
        with open(self.procedures_file(), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
        self.intake.proc.send_signal(signal.SIGHUP)
        # A reload still running from an earlier signal finishes first, then this one.
        got = harness.wait_for(lambda: (lambda p: p if p["version"] == "2026.2" else None)(
            self.procedure(code)), timeout=20, what="the new catalog")
        self.assertEqual(got["name"], original + " (sửa đổi)")
        # A broken file: logged, and the catalog in force stays.
        with open(self.procedures_file(), "w", encoding="utf-8") as f:
            f.write('{"version": "2026.3", "procedures": [{"code": "x"')
        self.hup_and_wait_for("reload: catalog kept as it was")
        self.assertEqual(self.procedure(code)["name"], original + " (sửa đổi)")
        status, _ = harness.http("GET", self.intake.url("/healthz"))
        self.assertEqual(status, 200)

    def test_calendar_reload(self):
        due = lambda: harness.http("GET", self.intake.url(
            "/v1/calendar/due?from=2027-01-05T09:00:00%2B07:00&days=1"))[1]["due_at"]
        self.assertEqual(due(), "2027-01-06T09:00:00+07:00")
        path = os.path.join(self.data, "calendar.csv")
        with open(path, "a", encoding="utf-8") as f:
            f.write("2027-01-06,holiday,Ngày nghỉ thử nghiệm\n")
        self.hup_and_wait_for("reload: calendar")
        self.assertEqual(due(), "2027-01-07T09:00:00+07:00")
        with open(path, "a", encoding="utf-8") as f:
            f.write("not a date,holiday,x\n")
        self.hup_and_wait_for("reload: calendar kept as it was")
        self.assertEqual(due(), "2027-01-07T09:00:00+07:00")


if __name__ == "__main__":
    unittest.main()
