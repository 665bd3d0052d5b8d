"""motcuactl keys (create, list, revoke, demo) against a real PostgreSQL.

Each test gets a database of its own in one private cluster. What the tool stored is
checked behind its back with psql and Python's hashlib: the table holds the SHA-256 of
each key and never its text; `list` never shows a key or a hash; `demo` writes one
officer key per agency of the catalog that is not external, an integrator and an
operator, to a 0600 file, keeps that file while its keys stay valid and renews it
(revoking the old keys) when they do not. Exit codes: 2 for a bad command line, 1
when the database cannot be reached or the agencies file is unusable.
"""
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

import harness

CTL = os.path.join(harness.BIN, "motcuactl")
AGENCIES = os.path.join(harness.ROOT, "deploy", "data", "catalog", "agencies.json")
KEY_RE = re.compile(r"mck_[0-9a-f]{64}")
DEAD_URL = "postgresql://motcua@127.0.0.1:1/none?connect_timeout=2"


def sha256_hex(key):
    return hashlib.sha256(key.encode()).hexdigest()


def expected_demo(path=AGENCIES):
    """The demo keys the catalog calls for, computed here independently."""
    with open(path, encoding="utf-8") as f:
        agencies = json.load(f)["agencies"]
    want = {"officer-" + a["code"]: (a["code"], ["officer"])
            for a in agencies if not a["external"]}
    want["demo-integrator"] = (None, ["citizen_portal", "integrator"])
    want["demo-operator"] = (None, ["operator"])
    return want


class KeysTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def setUp(self):
        self.url = self.pg.database()
        self.tmp = tempfile.mkdtemp(prefix="motcua-keys-")
        self.out = os.path.join(self.tmp, "var", "demo-keys.json")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---------------------------------------------------------------- helpers

    def ctl(self, *args, url=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOTCUA_")}
        env["MOTCUA_DATABASE_URL"] = url or self.url
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        return subprocess.run([CTL, *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=60)

    def ok(self, *args):
        r = self.ctl(*args)
        self.assertEqual(r.returncode, 0, "%s\n%s" % (r.stdout, r.stderr))
        return r.stdout

    def sql(self, statement):
        return self.pg.sql(statement, url=self.url)

    def create(self, name, scopes, agency=None):
        args = ["keys", "create", "--name", name, "--scopes", scopes, "--json"]
        if agency:
            args += ["--agency", agency]
        return json.loads(self.ok(*args))

    def demo(self, agencies=AGENCIES):
        return self.ok("keys", "demo", "--agencies", agencies, "--out", self.out)

    def demo_file(self):
        with open(self.out, encoding="utf-8") as f:
            return json.load(f)

    # ---------------------------------------------------------------- create / list / revoke

    def test_create_stores_only_the_hash(self):
        out = self.ok("keys", "create", "--name", "Nguyễn Văn An (Sở Tư pháp)", "--scopes",
                      "officer", "--agency", "000.00.10.H99")
        keys = KEY_RE.findall(out)
        self.assertEqual(len(keys), 1, out)
        self.assertIn("shown only this once", out)
        key = keys[0]
        row = self.sql("SELECT name, agency_code, array_to_string(scopes, ','), "
                       "encode(hash, 'hex'), revoked_at IS NULL FROM keys.api_keys")
        self.assertEqual(row.split("|"), ["Nguyễn Văn An (Sở Tư pháp)", "000.00.10.H99",
                                          "officer", sha256_hex(key), "t"])
        # The key text is nowhere in the database.
        dump = self.sql("SELECT string_agg(t::text, ' ') FROM keys.api_keys t")
        self.assertNotIn(key, dump)
        self.assertNotIn(key[4:], dump)

    def test_create_json_and_list(self):
        a = self.create("portal", "integrator,citizen_portal")
        b = self.create("officer-a", "officer,operator", agency="000.00.11.H99")
        for doc in (a, b):
            self.assertRegex(doc["key"], KEY_RE)
            self.assertIsInstance(doc["id"], int)
        self.assertEqual(a["scopes"], ["citizen_portal", "integrator"])
        self.assertIsNone(a["agency"])
        self.assertEqual(b["agency"], "000.00.11.H99")
        self.assertNotEqual(a["key"], b["key"])

        table = self.ok("keys", "list")
        doc = json.loads(self.ok("keys", "list", "--json"))
        for text in (table, json.dumps(doc)):
            for k in (a["key"], b["key"]):
                self.assertNotIn(k, text)
                self.assertNotIn(k[4:], text)
                self.assertNotIn(sha256_hex(k), text)
        self.assertIsNone(KEY_RE.search(table))
        self.assertRegex(table, r"ID\s+NAME\s+AGENCY\s+SCOPES\s+CREATED\s+REVOKED")
        self.assertIn("000.00.11.H99", table)
        items = doc["keys"]
        self.assertEqual([k["name"] for k in items], ["portal", "officer-a"])
        self.assertEqual(set(items[0]), {"id", "name", "agency", "scopes", "created_at",
                                         "revoked_at"})
        self.assertEqual(items[1]["scopes"], ["officer", "operator"])
        self.assertIsNone(items[0]["revoked_at"])

    def test_list_empty_database(self):
        self.assertIn("no API keys", self.ok("keys", "list"))
        self.assertEqual(json.loads(self.ok("keys", "list", "--json")), {"keys": []})

    def test_revoke(self):
        a = self.create("to-revoke", "operator")
        out = self.ok("keys", "revoke", str(a["id"]))
        self.assertIn("revoked key %d" % a["id"], out)
        self.assertIn("30 s", out)
        self.assertEqual(self.sql("SELECT revoked_at IS NOT NULL FROM keys.api_keys"), "t")
        first = self.sql("SELECT revoked_at FROM keys.api_keys")
        # Again: nothing changes, and it says so.
        self.assertIn("already revoked", self.ok("keys", "revoke", str(a["id"])))
        self.assertEqual(self.sql("SELECT revoked_at FROM keys.api_keys"), first)
        listed = json.loads(self.ok("keys", "list", "--json"))["keys"]
        self.assertIsNotNone(listed[0]["revoked_at"])
        row = self.ok("keys", "list").splitlines()[1]
        self.assertFalse(row.rstrip().endswith(" -"), row)  # the REVOKED column is filled
        # No such key: could not be done.
        r = self.ctl("keys", "revoke", "999999")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("no key 999999", r.stderr)

    def test_bad_arguments_exit_2(self):
        cases = [
            ["keys", "create", "--scopes", "operator"],                      # no name
            ["keys", "create", "--name", "x"],                               # no scopes
            ["keys", "create", "--name", "x", "--scopes", "root"],           # unknown scope
            ["keys", "create", "--name", "x", "--scopes", "officer,"],       # empty scope
            ["keys", "create", "--name", "x", "--scopes", "officer"],        # officer, no agency
            ["keys", "create", "--name", "x", "--scopes", "operator", "--agency", "A"],
            ["keys", "create", "--name", "x", "--scopes", "officer", "--agency", "a b"],
            ["keys", "create", "--name", "x" * 64, "--scopes", "operator"],  # name too long
            ["keys", "create", "--name", "a\tb", "--scopes", "operator"],   # control character
            ["keys", "create", "--name", "x", "--scopes", "operator", "extra"],
            ["keys", "create", "--name"],                                    # option without value
            ["keys", "list", "--name", "x"],                                 # option of another command
            ["keys", "list", "extra"],
            ["keys", "revoke"],
            ["keys", "revoke", "abc"],
            ["keys", "revoke", "0"],
            ["keys", "revoke", "1", "2"],
            ["keys", "demo", "--json"],
            ["keys", "demo", "--out", ""],
            ["keys"],
            ["keys", "rotate"],
        ]
        for args in cases:
            # A dead database proves the arguments are checked before connecting.
            r = self.ctl(*args, url=DEAD_URL)
            self.assertEqual(r.returncode, 2, "%s: %s%s" % (args, r.stdout, r.stderr))
            self.assertIn("usage", r.stderr, args)
        self.assertEqual(self.sql("SELECT to_regclass('keys.api_keys') IS NULL"), "t")

    def test_database_unreachable_exit_1(self):
        for args in (["keys", "list"], ["keys", "create", "--name", "x", "--scopes", "operator"],
                     ["keys", "revoke", "1"],
                     ["keys", "demo", "--agencies", AGENCIES, "--out", self.out]):
            r = self.ctl(*args, url=DEAD_URL)
            self.assertEqual(r.returncode, 1, "%s: %s" % (args, r.stderr))
            self.assertIn("cannot connect to the database", r.stderr)
        self.assertFalse(os.path.exists(self.out))

    # ---------------------------------------------------------------- demo

    def check_demo(self, want):
        """The file matches `want` and every key in it is active in the database."""
        mode = stat.S_IMODE(os.stat(self.out).st_mode)
        self.assertEqual(mode, 0o600)
        doc = self.demo_file()
        self.assertEqual(len(doc), len(want))
        for entry in doc:
            self.assertEqual(set(entry), {"name", "agency", "scopes", "key"})
            agency, scopes = want[entry["name"]]
            self.assertEqual(entry["agency"], agency, entry["name"])
            self.assertEqual(sorted(entry["scopes"]), scopes, entry["name"])
            self.assertRegex(entry["key"], "^" + KEY_RE.pattern + "$")
        self.assertEqual(len({e["key"] for e in doc}), len(doc))
        rows = self.sql("SELECT name, coalesce(agency_code, ''), array_to_string(scopes, ','), "
                        "encode(hash, 'hex') FROM keys.api_keys WHERE revoked_at IS NULL")
        active = {}
        for line in rows.splitlines():
            name, agency, scopes, digest = line.split("|")
            active[digest] = (name, agency or None, sorted(scopes.split(",")))
        for entry in doc:
            self.assertEqual(active.get(sha256_hex(entry["key"])),
                             (entry["name"], entry["agency"], sorted(entry["scopes"])))
        self.assertEqual(len(active), len(doc))  # no other active key with a demo name
        return doc

    def test_demo_creates_then_keeps(self):
        want = expected_demo()
        self.assertGreater(len(want), 20)
        out = self.demo()
        self.assertIn(self.out, out)
        first = self.check_demo(want)
        with open(self.out, "rb") as f:
            raw = f.read()
        # Again: the same file, no new keys.
        self.assertIn("kept", self.demo())
        with open(self.out, "rb") as f:
            self.assertEqual(f.read(), raw)
        self.assertEqual(self.sql("SELECT count(*) FROM keys.api_keys"), str(len(first)))
        # The list shows the demo keys, never their text.
        listed = self.ok("keys", "list")
        self.assertIn("officer-000.00.10.H99", listed)
        self.assertIsNone(KEY_RE.search(listed))

    def test_demo_renews_when_a_key_is_revoked(self):
        want = expected_demo()
        self.demo()
        old = {e["name"]: e["key"] for e in self.demo_file()}
        key_id = self.sql("SELECT id FROM keys.api_keys WHERE name = 'demo-operator'")
        self.ok("keys", "revoke", key_id)
        out = self.demo()
        self.assertNotIn("kept", out)
        self.assertIn("revoked", out)
        new = {e["name"]: e["key"] for e in self.check_demo(want)}
        self.assertEqual(set(new), set(old))
        self.assertTrue(all(new[n] != old[n] for n in new))  # every demo key is new
        # Every old key is revoked now, not only the one that was.
        revoked = set(self.sql("SELECT encode(hash, 'hex') FROM keys.api_keys "
                               "WHERE revoked_at IS NOT NULL").split())
        self.assertEqual(revoked, {sha256_hex(k) for k in old.values()})

    def test_demo_renews_when_the_file_is_damaged_or_stale(self):
        self.demo()
        doc = self.demo_file()
        # One entry missing.
        with open(self.out, "w") as f:
            json.dump(doc[:-1], f)
        self.assertNotIn("kept", self.demo())
        self.check_demo(expected_demo())
        # Not JSON at all.
        with open(self.out, "w") as f:
            f.write("not json")
        self.assertNotIn("kept", self.demo())
        self.check_demo(expected_demo())
        # A catalog with other agencies: the set of keys follows it.
        small = os.path.join(self.tmp, "agencies.json")
        with open(small, "w", encoding="utf-8") as f:
            json.dump({"version": "t", "agencies": [
                {"code": "T.1", "name": "Tỉnh", "kind": "province", "parent": None,
                 "external": False},
                {"code": "T.2", "name": "Công an", "kind": "police", "parent": "T.1",
                 "external": True}]}, f, ensure_ascii=False)
        self.assertNotIn("kept", self.demo(small))
        doc = self.check_demo(expected_demo(small))
        self.assertEqual(sorted(e["name"] for e in doc),
                         ["demo-integrator", "demo-operator", "officer-T.1"])
        self.assertIn("kept", self.demo(small))

    def test_demo_keeps_other_keys(self):
        mine = self.create("my-officer", "officer", agency="000.00.10.H99")
        self.demo()
        key_id = self.sql("SELECT id FROM keys.api_keys WHERE name = 'demo-integrator'")
        self.ok("keys", "revoke", key_id)
        self.demo()
        self.assertEqual(self.sql("SELECT revoked_at IS NULL FROM keys.api_keys WHERE id = %d"
                                  % mine["id"]), "t")

    def test_demo_bad_agencies_file_exit_1(self):
        bad = os.path.join(self.tmp, "bad.json")
        for content in ("not json", '{"agencies": 3}', '{"agencies": [{"code": "x y", '
                        '"external": false}]}', '{"agencies": [{"code": "A"}]}'):
            with open(bad, "w") as f:
                f.write(content)
            r = self.ctl("keys", "demo", "--agencies", bad, "--out", self.out)
            self.assertEqual(r.returncode, 1, content)
            self.assertIn(bad, r.stderr)
        r = self.ctl("keys", "demo", "--agencies", os.path.join(self.tmp, "none.json"),
                     "--out", self.out)
        self.assertEqual(r.returncode, 1)
        self.assertFalse(os.path.exists(self.out))
        # The file is read before the database is touched.
        self.assertEqual(self.sql("SELECT to_regclass('keys.api_keys') IS NULL"), "t")


if __name__ == "__main__":
    unittest.main()
