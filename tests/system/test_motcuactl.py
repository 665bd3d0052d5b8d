"""motcuactl, the operator CLI, against a real PostgreSQL and two real bus peers.

Two bus-peer processes run as routing and intake. We push malformed frames at
routing's ROUTER with ZeroMQ (an undecodable envelope, a one-frame message, an
envelope of a type this build does not know) so that it records dead letters, and
leave intake with envelopes for notify, which does not run, so that its outbox has a
backlog. Then: status (table and JSON, /readyz up and down), dead-letters list, show
(decoded envelope, hex dump) and replay (an unknown type comes back as a new dead
letter, the first one marked replayed; an undecodable one is refused), migrate on an
empty database, and the exit codes: 2 for every bad argument, 1 when the database
cannot be reached.
"""
import json
import os
import subprocess
import unittest
import uuid

import zmq

import harness
from test_bus_crash import unknown_envelope

# The bus tables are common/sql/NNN_*.sql: however many there are, all are applied.
BUS_MIGRATIONS = len([f for f in os.listdir(os.path.join(harness.ROOT, "common", "sql"))
                      if f.endswith(".sql")])

CTL = os.path.join(harness.BIN, "motcuactl")
GARBAGE = b"\xff\xff\xff\x00not protobuf"
ONE_FRAME = b"just one frame"


class MotcuactlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres()
        cls.services = []
        try:
            cls.db = cls.pg.database()
            cls.env = harness.suite_env(cls.db)
            peer = os.path.join(harness.BIN, "bus-peer")
            for name in ("routing", "intake"):
                svc = harness.Service(name, cls.env, binary=peer, args=[name])
                cls.services.append(svc)
                svc.start()
            cls.routing, cls.intake = cls.services
            cls.garbage_id, cls.unknown_id = str(uuid.uuid4()), str(uuid.uuid4())
            replies = cls.push([[cls.garbage_id.encode(), GARBAGE], [ONE_FRAME],
                                [cls.unknown_id.encode(), unknown_envelope(cls.unknown_id)]],
                               answers=2)
            assert len(replies) == 2, replies
            harness.wait_for(lambda: cls.routing_dead() >= 3, timeout=30,
                             what="three dead letters in routing")
            # A backlog: six probes for notify, which is not running.
            status, body = harness.http(
                "POST", cls.intake.url("/probe/send?to=notify&streams=2&per_stream=3&chunk=10"))
            assert status == 200, body
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for svc in cls.services:
            if svc.proc and svc.proc.poll() is None:
                svc.terminate()
        cls.pg.stop()

    # ---------------------------------------------------------------- helpers

    @classmethod
    def push(cls, messages, answers):
        """Send raw multipart messages to routing's bus; return the replies."""
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 10000)
        sock.connect(cls.env["MOTCUA_ROUTING_BUS"])
        try:
            for frames in messages:
                sock.send_multipart(frames)
            return [sock.recv() for _ in range(answers)]
        finally:
            sock.close()

    @classmethod
    def routing_dead(cls):
        return int(cls.pg.sql("SELECT count(*) FROM routing.dead_letters", cls.db))

    def sql(self, statement, url=None):
        return self.pg.sql(statement, url or self.db)

    def ctl(self, *args, expect=0, env=None):
        p = subprocess.run([CTL, *args], env=env or self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            self.assertNotIn(bad, p.stderr, "sanitizer report for %s" % (args,))
        if expect is not None:
            self.assertEqual(p.returncode, expect, "motcuactl %s\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(args), p.stdout, p.stderr))
        return p

    def ctl_json(self, *args):
        return json.loads(self.ctl(*args, "--json").stdout)

    def dead_id(self, message_id, replayed=False):
        return int(self.sql("SELECT id FROM routing.dead_letters WHERE message_id = '%s' AND "
                            "replayed_at IS %s NULL ORDER BY id LIMIT 1"
                            % (message_id, "NOT" if replayed else "")))

    # ---------------------------------------------------------------- status

    def test_status_json(self):
        doc = self.ctl_json("status")
        by_name = {s["service"]: s for s in doc["services"]}
        self.assertEqual([s["service"] for s in doc["services"]], harness.SERVICES)
        for name in ("routing", "intake"):
            self.assertEqual(by_name[name]["http"]["state"], "up", by_name[name])
            self.assertEqual(by_name[name]["http"]["status"], 200)
            self.assertTrue(by_name[name]["schema"])
        for name in ("interconnect", "payment", "postal", "notify"):
            http = by_name[name]["http"]
            self.assertEqual(http["state"], "down", http)
            self.assertTrue(http["error"], http)
            self.assertIn(self.env["MOTCUA_%s_HTTP_PORT" % name.upper()], http["url"])
            self.assertFalse(by_name[name]["schema"])
            self.assertIsNone(by_name[name]["outbox"])
            self.assertIsNone(by_name[name]["dead_letters"])

        routing = by_name["routing"]
        self.assertEqual(routing["dead_letters"], int(self.sql(
            "SELECT count(*) FROM routing.dead_letters WHERE replayed_at IS NULL")))
        self.assertGreaterEqual(routing["dead_letters"], 3)
        self.assertEqual(routing["inbox_last_hour"],
                         int(self.sql("SELECT count(*) FROM routing.inbox")))
        self.assertGreaterEqual(routing["inbox_last_hour"], 1, "the unknown type is in the inbox")

        outbox = by_name["intake"]["outbox"]
        self.assertEqual(outbox["pending"], 6, outbox)
        self.assertEqual([(d["destination"], d["pending"]) for d in outbox["by_destination"]],
                         [("notify", 6)])
        self.assertGreater(outbox["oldest_age_s"], 0)
        self.assertEqual(by_name["intake"]["dead_letters"], 0)

    def test_status_table_and_no_http(self):
        out = self.ctl("status").stdout
        lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
        self.assertRegex(lines["routing"], r"^routing\s+up\s")
        self.assertRegex(lines["notify"], r"^notify\s+down \(")
        self.assertIn("no bus tables (never started, not migrated): interconnect, payment, "
                      "postal, notify", out)
        self.assertRegex(out, r"\n\s+intake\s+notify\s+6\s+\d", "backlog by destination")

        doc = self.ctl_json("status", "--no-http")
        self.assertTrue(all(s["http"] is None for s in doc["services"]), doc)

    # ---------------------------------------------------------------- dead letters

    def test_dead_letters_list(self):
        rows = self.ctl_json("dead-letters", "list", "routing")["dead_letters"]
        by_msg = {r["message_id"]: r for r in rows}
        self.assertIn("undecodable", by_msg[self.garbage_id]["reason"])
        self.assertIsNone(by_msg[self.garbage_id]["type"])
        unknown = by_msg[self.unknown_id]
        self.assertEqual(unknown["type"], "FutureThing")
        self.assertEqual(unknown["dossier_code"], "stream-x")
        self.assertIn("no handler for type FutureThing", unknown["reason"])
        self.assertIn(None, by_msg, "the one-frame message has no message id")
        self.assertTrue(all(r["service"] == "routing" and r["time"] for r in rows))
        ids = [r["id"] for r in rows]
        self.assertEqual(ids, sorted(ids, reverse=True), "newest first")

        self.assertEqual(len(self.ctl_json("dead-letters", "list", "--limit", "1")["dead_letters"]),
                         1)
        everywhere = self.ctl_json("dead-letters", "list")["dead_letters"]
        self.assertTrue({self.garbage_id, self.unknown_id} <= {r["message_id"] for r in everywhere})

        table = self.ctl("dead-letters", "list", "routing").stdout
        header = table.splitlines()[0].split()
        self.assertEqual(header[:4], ["SERVICE", "ID", "TIME", "MESSAGE"])
        self.assertIn("REASON", header)
        self.assertIn(self.unknown_id, table)
        self.assertIn("FutureThing", table)
        # One line per dead letter: the database's multi-line messages are flattened.
        self.assertEqual(len(table.strip().splitlines()), 1 + len(rows))

        p = self.ctl("dead-letters", "list", "notify", expect=1)
        self.assertIn("notify has no bus tables", p.stderr)

    def test_dead_letters_show(self):
        unknown = self.dead_id(self.unknown_id)
        out = self.ctl("dead-letters", "show", "routing", str(unknown)).stdout
        self.assertIn("dead letter %d of routing" % unknown, out)
        self.assertIn("envelope\n", out)
        self.assertRegex(out, r"type\s+FutureThing")
        self.assertRegex(out, r"dossier\s+stream-x")
        self.assertRegex(out, r"source\s+intake")
        self.assertRegex(out, r"schema version\s+2")
        self.assertRegex(out, r"body\s+unknown to this build: field 150")

        doc = self.ctl_json("dead-letters", "show", "routing", str(unknown))
        self.assertEqual(doc["id"], unknown)
        self.assertEqual(doc["message_id"], self.unknown_id)
        env = doc["envelope"]
        self.assertEqual(env["message_id"], self.unknown_id)
        self.assertEqual(env["type"], "FutureThing")
        self.assertEqual(env["unknown_fields"], [150])
        self.assertEqual(env["schema_version"], 2)
        self.assertNotIn("payload_head_hex", doc)

        garbage = self.dead_id(self.garbage_id)
        out = self.ctl("dead-letters", "show", "routing", str(garbage)).stdout
        self.assertIn("payload is not a motcua.v1.Envelope; %d bytes:" % len(GARBAGE), out)
        self.assertIn("00000000  ff ff ff 00 6e 6f 74 20", out)
        doc = self.ctl_json("dead-letters", "show", "routing", str(garbage))
        self.assertIsNone(doc["envelope"])
        self.assertEqual(doc["payload_head_hex"], GARBAGE.hex())
        self.assertEqual(doc["payload_bytes"], len(GARBAGE))

        one = int(self.sql("SELECT id FROM routing.dead_letters WHERE message_id IS NULL "
                           "ORDER BY id LIMIT 1"))
        out = self.ctl("dead-letters", "show", "routing", str(one)).stdout
        self.assertIn("|just one frame|", out)

        p = self.ctl("dead-letters", "show", "routing", "999999", expect=1)
        self.assertIn("no dead letter 999999 in routing", p.stderr)

    def test_replay_unknown_type_comes_back_as_a_new_dead_letter(self):
        # A dead letter of our own, so that the other tests' rows stay as they are.
        mid = str(uuid.uuid4())
        self.push([[mid.encode(), unknown_envelope(mid)]], answers=1)
        first = harness.wait_for(lambda: self.sql(
            "SELECT id FROM routing.dead_letters WHERE message_id = '%s'" % mid), timeout=30,
            what="the dead letter")
        self.assertEqual(self.sql("SELECT count(*) FROM routing.inbox WHERE message_id = '%s'"
                                  % mid), "1")

        out = self.ctl("dead-letters", "replay", "routing", first).stdout
        self.assertIn("replayed dead letter %s of routing: message %s (FutureThing, dossier "
                      "stream-x)" % (first, mid), out)
        self.assertIn("removed from routing.inbox: 1 row\n", out)
        self.assertIn("dead letter %s marked replayed" % first, out)

        def rows():
            listed = self.ctl_json("dead-letters", "list", "routing", "--limit", "1000")
            mine = [r for r in listed["dead_letters"] if r["message_id"] == mid]
            return sorted(mine, key=lambda r: r["id"]) if len(mine) == 2 else None

        old, new = harness.wait_for(rows, timeout=30, what="the replayed envelope dead again")
        self.assertEqual(old["id"], int(first))
        self.assertIsNotNone(old["replayed_at"])
        self.assertIsNone(new["replayed_at"])
        self.assertIn("no handler for type FutureThing", new["reason"])
        self.assertEqual(self.sql("SELECT count(*) FROM routing.inbox WHERE message_id = '%s'"
                                  % mid), "1")
        harness.wait_for(lambda: self.sql(
            "SELECT delivered_at IS NOT NULL FROM routing.outbox WHERE id = '%s'" % mid) == "t",
            timeout=30, what="the replay acknowledged")
        self.assertEqual(self.sql("SELECT destination, type, dossier_code FROM routing.outbox "
                                  "WHERE id = '%s'" % mid), "routing|FutureThing|stream-x")

        # The same dead letter cannot be replayed twice ...
        p = self.ctl("dead-letters", "replay", "routing", first, expect=1)
        self.assertIn("already replayed", p.stderr)
        # ... but its successor can, though the outbox still holds the delivered copy.
        self.ctl("dead-letters", "replay", "routing", str(new["id"]))
        harness.wait_for(lambda: self.sql(
            "SELECT count(*) FROM routing.dead_letters WHERE message_id = '%s'" % mid) == "3",
            timeout=30, what="a third dead letter after the second replay")
        self.assertEqual(self.sql("SELECT count(*) FROM routing.dead_letters WHERE message_id = "
                                  "'%s' AND replayed_at IS NULL" % mid), "1")
        self.assertEqual(self.routing.proc.poll(), None, "routing still runs")

    def test_replay_refuses_what_cannot_be_replayed(self):
        garbage = self.dead_id(self.garbage_id)
        p = self.ctl("dead-letters", "replay", "routing", str(garbage), expect=1)
        self.assertIn("not a decodable Envelope: it cannot be replayed", p.stderr)
        self.assertEqual(p.stdout, "")
        self.assertEqual(self.sql("SELECT replayed_at IS NULL FROM routing.dead_letters "
                                  "WHERE id = %d" % garbage), "t", "left as it was")
        self.assertEqual(self.sql("SELECT count(*) FROM routing.outbox WHERE id::text = '%s'"
                                  % self.garbage_id), "0")

        one = self.sql("SELECT id FROM routing.dead_letters WHERE message_id IS NULL "
                       "ORDER BY id LIMIT 1")
        self.ctl("dead-letters", "replay", "routing", one, expect=1)
        p = self.ctl("dead-letters", "replay", "routing", "999999", expect=1)
        self.assertIn("no dead letter 999999 in routing", p.stderr)
        p = self.ctl("dead-letters", "replay", "payment", "1", expect=1)
        self.assertIn("payment has no bus tables", p.stderr)

    # ---------------------------------------------------------------- migrate

    def test_migrate_creates_bus_tables(self):
        url = self.pg.database()
        env = dict(self.env, MOTCUA_DATABASE_URL=url)
        out = self.ctl("migrate", "routing", env=env).stdout
        self.assertRegex(out, r"routing\s+%d migrations? applied" % BUS_MIGRATIONS)
        self.assertNotIn("intake", out)
        out = self.ctl("migrate", env=env).stdout
        self.assertRegex(out, r"routing\s+up to date")
        for name in harness.SERVICES:
            if name != "routing":
                self.assertRegex(out, r"%s\s+%d migrations? applied" % (name, BUS_MIGRATIONS))
            for table in ("outbox", "inbox", "dead_letters"):
                self.assertEqual(self.sql("SELECT to_regclass('%s.%s') IS NOT NULL"
                                          % (name, table), url), "t")
        self.assertIn("each service applies its own schema's migrations when it starts", out)
        doc = json.loads(self.ctl("status", "--no-http", "--json", env=env).stdout)
        for s in doc["services"]:
            self.assertTrue(s["schema"], s)
            self.assertEqual((s["outbox"]["pending"], s["dead_letters"], s["inbox_last_hour"]),
                             (0, 0, 0))
        self.assertEqual(self.ctl("dead-letters", "list", env=env).stdout, "no dead letters\n")

    # ---------------------------------------------------------------- command line

    def test_bad_arguments_exit_2_with_usage(self):
        cases = [
            [],
            ["frobnicate"],
            ["dead-letters"],
            ["dead-letters", "frob"],
            ["dead-letters", "list", "nosuch"],
            ["dead-letters", "list", "routing", "extra"],
            ["dead-letters", "list", "--limit", "0"],
            ["dead-letters", "list", "--limit", "ten"],
            ["dead-letters", "list", "--limit"],
            ["dead-letters", "show", "routing"],
            ["dead-letters", "show", "routing", "abc"],
            ["dead-letters", "show", "routing", "0"],
            ["dead-letters", "show", "nosuch", "1"],
            ["dead-letters", "replay", "routing", "1", "2"],
            ["dead-letters", "replay", "routing", "1", "--json"],
            ["status", "extra"],
            ["status", "--limit", "5"],
            ["status", "--frobnicate"],
            ["-x", "status"],
            ["migrate", "nosuch"],
            ["help", "nosuch"],
            ["--database", "postgresql://motcua@[unclosed", "status"],
        ]
        for args in cases:
            with self.subTest(args=args):
                p = self.ctl(*args, expect=2)
                self.assertIn("usage", p.stderr)
                self.assertTrue(p.stderr.startswith("motcuactl: "), p.stderr)
                self.assertEqual(p.stdout, "")
        # A bad port in the environment is a bad argument too.
        p = self.ctl("status", expect=2, env=dict(self.env, MOTCUA_NOTIFY_HTTP_PORT="http"))
        self.assertIn("MOTCUA_NOTIFY_HTTP_PORT", p.stderr)

    def test_database_unreachable_exits_1(self):
        url = "postgresql://motcua:s3cret@127.0.0.1:%d/motcua" % harness.free_port()
        for args in (["--database", url, "status"], ["dead-letters", "list", "--database", url],
                     ["--database=" + url, "dead-letters", "replay", "routing", "1"],
                     ["--database", url, "migrate"]):
            with self.subTest(args=args):
                p = self.ctl(*args, expect=1)
                self.assertIn("motcuactl: cannot connect to the database motcua@127.0.0.1:", p.stderr)
                self.assertNotIn("s3cret", p.stderr)
                self.assertEqual(p.stdout, "")
        env = dict(self.env, MOTCUA_DATABASE_URL=url)
        self.ctl("status", "--no-http", expect=1, env=env)
        # A bad argument is reported as such even when the database is down.
        self.ctl("dead-letters", "show", "routing", "x", expect=2, env=env)

    def test_help(self):
        out = self.ctl("help").stdout
        for name in ("status", "dead-letters list", "dead-letters show", "dead-letters replay",
                     "migrate", "help"):
            self.assertIn("\n  %s " % name, out)
        self.assertIn("MOTCUA_DATABASE_URL", out)
        out = self.ctl("help", "dead-letters", "replay").stdout
        self.assertEqual(out.splitlines()[0],
                         "usage: motcuactl [--database URL] dead-letters replay SERVICE ID")
        self.assertIn("dead-letters show SERVICE ID", self.ctl("help", "dead-letters").stdout)
        self.assertIn("dead-letters show SERVICE ID", self.ctl("dead-letters", "--help").stdout)
        self.assertIn("usage: motcuactl [--database URL] status",
                      self.ctl("status", "--help").stdout)


if __name__ == "__main__":
    unittest.main()
