"""Two provinces, two complete motcua deployments, one link between them.

Province A (H99, Tỉnh Sông Hồng: deploy/data as shipped) and province B (H98, Tỉnh
Sông Mã: the same data with the two provinces swapped) each run intake, routing and
interconnect with a PostgreSQL cluster of their own, in a network namespace of their
own. The namespaces are joined by one veth pair, the "link" (10.232.N.0/30), over
which the two interconnects speak CURVE (a key pair each, made by `motcuactl curve
keygen`, and an allow-list naming the other). The test process reaches each
deployment's HTTP API over a management veth pair of its own, and each PostgreSQL by
its unix socket, so cutting the link cuts only what passes between the provinces.

What is checked: a dossier for an agency of the other province is handed over (both
ways), opened there with the origin's reference, its statuses flow back in order and
show in the origin's public lookup, and its completion starts the origin's next
step; the other province refusing it comes back as a rejection; the link cut and
restored in the middle of traffic loses nothing and repeats nothing; a stranger's
key is refused and logged, and a peer may not speak for another.

Needs root and iproute2 (network namespaces); skipped otherwise.

Run: cd tests/system && /usr/bin/python3 run.py test_provinces"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import uuid

import harness

CROSS = "2.002901"  # A's procedure whose middle step is done by B's commune
BCODE = "2.000635"     # what B runs for it
DESK = "000.00.01.H99"  # A's one-stop centre (steps 0 and 2 of CROSS)
NAMES = {"H99": "Tỉnh Sông Hồng", "H98": "Tỉnh Sông Mã"}


# A procedure only A's test copy of the catalog has: its middle step asks B for a
# procedure B does not run.
UNKNOWN_THERE = {
    "code": "9.999999", "name": "Thủ tục thử nghiệm liên thông ngoài tỉnh", "field": "Thử nghiệm",
    "agency": DESK, "level": 3, "days": 3, "cutoff": None, "fee": 0,
    "documents": [{"kind": "to_khai_cap_ban_sao_trich_luc", "name": "Tờ khai"}],
    "return_methods": ["counter"],
    "steps": [{"name": "Tiếp nhận hồ sơ", "agency": DESK, "days": 0.5},
              {"name": "Chuyển tỉnh Sông Mã", "agency": "000.00.31.H98", "days": 2,
               "procedure": "9.999998"},
              {"name": "Trả kết quả", "agency": DESK, "days": 0.5}]}



def step_of(case):
    step = case["step"]
    return step["index"] if isinstance(step, dict) else step


def have_netns():
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    name = "mcprobe%d" % os.getpid()
    ok = subprocess.run(["ip", "netns", "add", name], stderr=subprocess.DEVNULL).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
    return ok


def run(*args):
    subprocess.run(list(args), check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def swapped(text):
    """The text with provinces H99 and H98 (codes and names) exchanged."""
    for a, b in (("H99", "\0A"), ("H98", "H99"), ("\0A", "H98"),
                 ("Sông Hồng", "\0B"), ("Sông Mã", "Sông Hồng"), ("\0B", "Sông Mã")):
        text = text.replace(a, b)
    return text


class Net:
    """Namespaces a and b; management links to the test process; the link a <-> b."""

    def __init__(self):
        n = 100 + os.getpid() % 100
        tag = "%x" % (os.getpid() % 0xfffff)
        self.ns = {"a": "mca" + tag, "b": "mcb" + tag}
        self.mgmt = {"a": ("10.231.%d.1" % n, "10.231.%d.2" % n),
                     "b": ("10.231.%d.5" % n, "10.231.%d.6" % n)}
        self.wan = {"a": "10.232.%d.1" % n, "b": "10.232.%d.2" % n}
        self.dev = {"a": "mcwa" + tag, "b": "mcwb" + tag}
        self.made = []
        try:
            for side in "ab":
                ns = self.ns[side]
                run("ip", "netns", "add", ns)
                self.made.append(ns)
                run("ip", "-n", ns, "link", "set", "lo", "up")
                host, inside = self.mgmt[side]
                hdev, ndev = "mcm%s%s" % (side, tag), "mcn%s%s" % (side, tag)
                run("ip", "link", "add", hdev, "type", "veth", "peer", "name", ndev,
                    "netns", ns)
                run("ip", "addr", "add", host + "/30", "dev", hdev)
                run("ip", "link", "set", hdev, "up")
                run("ip", "-n", ns, "addr", "add", inside + "/30", "dev", ndev)
                run("ip", "-n", ns, "link", "set", ndev, "up")
                self.made.append(hdev)
            run("ip", "-n", self.ns["a"], "link", "add", self.dev["a"], "type", "veth", "peer",
                "name", self.dev["b"], "netns", self.ns["b"])
            for side in "ab":
                run("ip", "-n", self.ns[side], "addr", "add", self.wan[side] + "/30", "dev",
                    self.dev[side])
            self.restore()
        except Exception:
            self.destroy()
            raise

    def cut(self):
        for side in "ab":
            run("ip", "-n", self.ns[side], "link", "set", self.dev[side], "down")

    def restore(self):
        for side in "ab":
            run("ip", "-n", self.ns[side], "link", "set", self.dev[side], "up")

    def destroy(self):
        for thing in reversed(self.made):
            if thing.startswith("mcm"):
                subprocess.run(["ip", "link", "del", thing], stderr=subprocess.DEVNULL)
            else:
                subprocess.run(["ip", "netns", "del", thing], stderr=subprocess.DEVNULL)


class NsService(harness.Service):
    """A service run inside a namespace, reached at that namespace's management address."""

    def __init__(self, name, env, ns, host, log_dir):
        super().__init__(name, env, log_dir=log_dir)
        self.ns, self.host = ns, host

    def start(self, wait=True):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, self.binary, *self.args],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def url(self, path):
        return "http://%s:%d%s" % (self.host, self.http_port, path)


class Province:
    """One deployment: its PostgreSQL, data directory, key pair and services."""

    def __init__(self, side, code, other, net, workdir):
        self.side, self.code, self.other = side, code, other
        self.dir = os.path.join(workdir, code)
        os.makedirs(self.dir)
        self.pg = harness.Postgres()
        db = "p" + code.lower()
        self.pg.database(db)
        self.db = self.pg.url.rsplit("/", 1)[0] + "/" + db
        self.socket_url = "postgresql:///%s?host=%s/run&port=%d&user=motcua" % (
            db, self.pg.dir, self.pg.port)
        self.data = os.path.join(self.dir, "data")
        shutil.copytree(os.path.join(harness.ROOT, "deploy", "data"), self.data)
        if code == "H99":
            path = os.path.join(self.data, "catalog", "procedures.json")
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            doc["procedures"].append(UNKNOWN_THERE)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(doc, f, ensure_ascii=False)
        if code == "H98":
            for rel in ("catalog/agencies.json", "catalog/procedures.json",
                        "interconnect/systems.json"):
                path = os.path.join(self.data, rel)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                with open(path, "w", encoding="utf-8") as f:
                    f.write(swapped(text))
        keygen = subprocess.run([os.path.join(harness.BIN, "motcuactl"), "curve", "keygen", code,
                                 os.path.join(self.dir, code), "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                check=True)
        self.public_key = json.loads(keygen.stdout)["public_key"]
        self.cert = os.path.join(self.dir, code + "_secret")
        self.net = net
        self.ns = net.ns[side]
        self.host = net.mgmt[side][1]
        self.link_port = 7190
        self.logs = os.path.join(self.dir, "logs")
        os.makedirs(self.logs)
        self.svc = {}

    def start(self, peer):
        env = harness.suite_env(self.socket_url)
        self.integrator = harness.create_api_key(self.db, "interconnect", "integrator")["key"]
        self.operator = harness.create_api_key(self.db, "operator", "operator")["key"]
        peers = os.path.join(self.dir, "peers.json")
        with open(peers, "w") as f:
            json.dump([{"province": peer.code, "name": NAMES[peer.code],
                        "endpoint": "tcp://%s:%d" % (self.net.wan[peer.side], peer.link_port),
                        "public_key": peer.public_key}], f)
        env.update(MOTCUA_HTTP_HOST="0.0.0.0", MOTCUA_DATA_DIR=self.data,
                   MOTCUA_PROVINCE=self.code, MOTCUA_INTERCONNECT_PEERS=peers,
                   MOTCUA_INTERCONNECT_CERT=self.cert,
                   MOTCUA_INTERCONNECT_LINK_BIND="tcp://%s:%d" % (self.net.wan[self.side],
                                                                 self.link_port),
                   MOTCUA_INTERCONNECT_INTAKE_KEY=self.integrator,
                   MOTCUA_INTERCONNECT_TICK_MS="200", MOTCUA_INTERCONNECT_BACKOFF_MS="300",
                   MOTCUA_INTERCONNECT_EXPIRY_MS="300", MOTCUA_PORTAL_SYNC="off")
        env["MOTCUA_INTERCONNECT_INTAKE_URL"] = "http://127.0.0.1:%s" % env[
            "MOTCUA_INTAKE_HTTP_PORT"]
        self.env = env
        self.svc = {n: NsService(n, env, self.ns, self.host, self.logs)
                    for n in ("intake", "routing", "interconnect")}
        for s in self.svc.values():
            s.start(wait=False)
        for s in self.svc.values():
            s.wait_ready()

    def officer(self, agency):
        if not hasattr(self, "_keys"):
            self._keys = {}
        if agency not in self._keys:
            self._keys[agency] = harness.create_api_key(self.db, "officer-" + agency, "officer",
                                                        agency)["key"]
        return self._keys[agency]

    def sql(self, q):
        return self.pg.sql(q, self.db)

    def url(self, service, path):
        return self.svc[service].url(path)

    def stop(self):
        problems = harness.stop_services(self.svc)
        self.pg.stop()
        return problems


class Provinces(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        if not have_netns():
            raise unittest.SkipTest("network namespaces need root and iproute2")
        cls.work = tempfile.mkdtemp(prefix="motcua-provinces-")
        os.chmod(cls.work, 0o755)
        cls.net = Net()
        cls.a = cls.b = None
        try:
            cls.a = Province("a", "H99", "H98", cls.net, cls.work)
            cls.b = Province("b", "H98", "H99", cls.net, cls.work)
            cls.a.start(cls.b)
            cls.b.start(cls.a)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        problems = []
        for p in (cls.a, cls.b):
            if p:
                problems += ["%s: %s" % (p.code, x) for x in p.stop()]
        cls.net.destroy()
        # A stranger's refused key and a peer's impostor envelope are logged as warnings,
        # not errors: any error in the logs is a failure.
        if problems:
            raise AssertionError("; ".join(problems))

    # ------------------------------------------------------------ helpers

    def act(self, p, code, action, agency, **extra):
        status, body = harness.http("POST", p.url("routing", "/v1/dossiers/%s/actions" % code),
                                    dict({"action": action, "officer": "Lê Thị Hoa"}, **extra),
                                    {"Authorization": "Bearer " + p.officer(agency)})
        self.assertEqual(status, 200, (p.code, action, agency, body))
        return body

    def submit(self, p, procedure=CROSS):
        body = {"procedure": procedure, "channel": "direct",
                "applicant": {"name": "Phạm Văn Cường", "id_number": "036085001234",
                              "phone": "0987654321", "address": "Thôn Đông, xã Tân Lập"},
                "documents": [{"kind": "to_khai_cap_ban_sao_trich_luc",
                               "name": "Tờ khai cấp bản sao trích lục hộ tịch"}],
                "return_method": "counter"}
        status, r = harness.http("POST", p.url("intake", "/v1/dossiers"), body,
                                 {"Idempotency-Key": str(uuid.uuid4()),  # at the centre's desk
                                  "Authorization": "Bearer " + p.officer(self.desk(p))})
        self.assertEqual(status, 201, r)
        return r["code"]

    def desk(self, p):
        return "000.00.01." + p.code

    def hand_over(self, p):
        """Submit CROSS at p's desk and forward it: its middle step goes to the other."""
        code = self.submit(p)
        harness.wait_for(lambda: harness.case(p.svc["routing"], p.operator, code),
                         what="the case of " + code)
        r = self.act(p, code, "forward", self.desk(p))
        self.assertEqual((r["state"], r["step"]["index"]), ("HANDED_OFF", 1), r)
        return code

    def last(self, p, code):
        """The newest handoff of p's dossier code, or {} if none yet."""
        items = self.handoffs(p, code)
        return items[-1] if items else {}

    def handoffs(self, p, code):
        status, body = harness.http("GET", p.url("interconnect", "/v1/handoffs?dossier=" + code),
                                    headers={"Authorization": "Bearer " + p.operator})
        self.assertEqual(status, 200, body)
        return body["items"]

    def remote(self, p, code, timeout=60):
        """The dossier the other province opened for p's dossier code: its code there."""
        def found():
            return self.last(p, code).get("remote_code")
        return harness.wait_for(found, timeout=timeout, what="the other province's dossier")

    def lookup(self, p, code):
        status, body = harness.http("GET", p.url("intake", "/v1/dossiers/" + code),
                                    headers={"Authorization": "Bearer " + p.operator})
        self.assertEqual(status, 200, body)
        return body

    def resolve_there(self, q, code):
        """q's officers walk q's dossier (BCODE) to APPROVED."""
        steps = [s["agency"] for s in self.procedure(q, BCODE)["steps"]]
        self.act(q, code, "receive", steps[0])
        for i in range(len(steps) - 1):
            self.act(q, code, "forward", steps[i])
        r = self.act(q, code, "approve", steps[-1], note="Bản sao trích lục số 123/BS")
        self.assertEqual(r["state"], "APPROVED")

    def procedure(self, p, code):
        with open(os.path.join(p.data, "catalog", "procedures.json"), encoding="utf-8") as f:
            doc = json.load(f)
        return next(x for x in doc["procedures"] if x["code"] == code)

    def log_of(self, p, service):
        with open(p.svc[service].log_path, errors="replace") as f:
            return f.read()

    # ------------------------------------------------------------ the tests

    def test_1_handed_over_both_ways_and_completed(self):
        for p, q in ((self.a, self.b), (self.b, self.a)):
            with self.subTest(origin=p.code):
                code = self.hand_over(p)
                there = self.remote(p, code)
                view = self.lookup(q, there)
                self.assertEqual(view["procedure"], BCODE)
                self.assertEqual(view["reference"]["system"], "province:" + p.code)
                self.assertEqual(view["reference"]["id"], code)
                self.assertEqual(view["fee"], 0, "the fee was the origin's")
                self.resolve_there(q, there)
                harness.wait_for(lambda: self.last(p, code)["state"] == "completed",
                                 what="the handoff completed at " + p.code)
                c = harness.wait_case_state(p.svc["routing"], p.operator, code, "IN_PROGRESS")
                self.assertEqual(step_of(c), 2, "the origin's last step is in charge")
                self.assertIn("123/BS", c["steps"][1]["result"], "the officers see it too")
                self.assertIn("123/BS", self.last(p, code)["result"])
                # The other province's statuses show in the origin's public history, in
                # the order they happened there.
                view = self.lookup(p, code)
                notes = [e["note"] or "" for e in view["history"]]
                seen = [n for n in notes if there in n and NAMES[q.code] in n]
                order = ["Mới đăng ký trực tuyến", "Đã tiếp nhận", "Đang giải quyết"]
                at = [next(i for i, n in enumerate(seen) if label in n) for label in order]
                self.assertEqual(at, sorted(at), seen)
                self.assertTrue(any("123/BS" in n for n in notes), notes)
                self.assertEqual(view["steps"][1]["state"], "done")
                self.assertIn("123/BS", view["steps"][1]["result"])
                self.act(p, code, "approve", self.desk(p))

    def test_2_refused_there_comes_back_rejected(self):
        code = self.hand_over(self.a)
        there = self.remote(self.a, code)
        steps = [s["agency"] for s in self.procedure(self.b, BCODE)["steps"]]
        self.act(self.b, there, "receive", steps[0])
        self.act(self.b, there, "refuse", steps[0], note="Không tìm thấy thông tin đăng ký")
        harness.wait_for(lambda: self.last(self.a, code)["state"] == "rejected",
                         what="the handoff rejected")
        self.assertIn("Không tìm thấy", self.last(self.a, code)["reason"])
        c = harness.wait_case_state(self.a.svc["routing"], self.a.operator, code, "IN_PROGRESS")
        self.assertEqual(step_of(c), 0, "the desk is in charge again")

    def test_3_intake_there_refuses_an_unknown_procedure(self):
        # A's copy of the catalog has a test procedure whose step B does not run: B's
        # intake refuses the dossier, and A hears it as a rejection.
        code = self.submit(self.a, UNKNOWN_THERE["code"])
        harness.wait_for(lambda: harness.case(self.a.svc["routing"], self.a.operator, code),
                         what="the case of " + code)
        self.act(self.a, code, "forward", DESK)
        h = harness.wait_for(lambda: (lambda x: x if x.get("state") == "rejected" else None)(
            self.last(self.a, code)), what="the handoff rejected")
        self.assertIn("no such procedure", h["reason"])
        self.assertEqual(self.b.sql("SELECT count(*) FROM intake.dossiers"
                                    " WHERE reference->>'id' = '%s'" % code), "0")

    def test_4_link_cut_and_restored(self):
        codes = [self.hand_over(self.a) for _ in range(3)]
        for c in codes:
            self.remote(self.a, c)
        self.net.cut()
        try:
            more = [self.hand_over(self.a) for _ in range(3)]
            time.sleep(3)
            for c in more:
                self.assertEqual(self.last(self.a, c)["state"], "sent",
                                 "nothing crosses a cut link")
            # B moves dossiers it has while the link is down; A hears after.
            there = [self.remote(self.a, c) for c in codes]
            for t in there:
                self.resolve_there(self.b, t)
        finally:
            self.net.restore()
        for c in codes:
            harness.wait_for(lambda: self.last(self.a, c)["state"] == "completed",
                             timeout=90, what="completed after the link is back")
        for c in more:
            self.remote(self.a, c, timeout=90)
        # Nothing twice: one dossier at B per handoff, one handoff per dossier at A.
        all_codes = codes + more
        refs = self.b.sql("SELECT count(*), count(DISTINCT reference->>'handoff_id')"
                          " FROM intake.dossiers WHERE reference->>'system' = 'province:H99'"
                          " AND reference->>'id' IN (%s)" % ",".join("'%s'" % c
                                                                    for c in all_codes))
        self.assertEqual(refs, "%d|%d" % (len(all_codes), len(all_codes)))
        dup = self.a.sql("SELECT count(*) FROM interconnect.inbox i JOIN interconnect.inbox j"
                         " ON i.message_id = j.message_id AND i.ctid <> j.ctid")
        self.assertEqual(dup, "0")

    def test_5_stranger_key_refused_and_logged(self):
        # The link's address is reachable only from the other side: the stranger comes
        # from B's namespace, with a key pair of its own.
        code = subprocess.run(
            ["ip", "netns", "exec", self.b.ns, "/usr/bin/python3", "-c", STRANGER,
             "tcp://%s:%d" % (self.net.wan["a"], self.a.link_port), self.a.public_key],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(code.returncode, 0, code.stderr)
        self.assertEqual(code.stdout.strip(), "no answer")
        harness.wait_for(lambda: "curve: refused a connection" in self.log_of(self.a,
                                                                              "interconnect"),
                         what="the refusal in A's log")
        self.assertIn("key not in the allow-list", self.log_of(self.a, "interconnect"))


    def send_from_b(self, build):
        """Put an envelope into B's outbox for A, as if B's interconnect wrote it: B's
        relay sends it with B's key. build(env) fills the body."""
        Envelope = harness.envelope_class()
        env = Envelope()
        env.message_id = str(uuid.uuid4())
        env.source = "interconnect"
        env.time_ms = int(time.time() * 1000)
        env.schema_version = 1
        build(env)
        env.type = env.WhichOneof("body")
        env.type = {"peer_status": "PeerStatus", "peer_handoff": "PeerHandoff"}[env.type]
        self.b.sql("INSERT INTO interconnect.outbox (id, destination, dossier_code, type, payload)"
                   " VALUES ('%s', 'H99', '%s', '%s', '\\x%s')"
                   % (env.message_id, env.dossier_code, env.type,
                      env.SerializeToString().hex()))
        self.b.sql("NOTIFY interconnect_outbox")
        return env.message_id

    def dead_letter(self, message_id):
        return harness.wait_for(lambda: self.a.sql(
            "SELECT reason FROM interconnect.dead_letters WHERE message_id = '%s'" % message_id),
            what="the dead letter at A")

    def test_6_a_peer_may_not_speak_for_others(self):
        # A status about a handoff A never gave B.
        def status(env):
            env.dossier_code = "H99-999999"
            env.peer_status.handoff_id = "H99-999999"
            env.peer_status.outcome = "completed"
        why = self.dead_letter(self.send_from_b(status))
        self.assertIn("not handed to H98", why)

        # A handoff that claims to come from a third province.
        def impostor(env):
            env.dossier_code = "H97-1"
            env.peer_handoff.handoff_id = "H97-1"
            env.peer_handoff.origin_province = "H97"
            env.peer_handoff.procedure_code = BCODE
            env.peer_handoff.request.code = "X-1"
        why = self.dead_letter(self.send_from_b(impostor))
        self.assertIn("came with H98's key", why)

        # An internal body over the link.
        def internal(env):
            env.dossier_code = "X-2"
            env.handoff_requested.code = "X-2"
        Envelope = harness.envelope_class()
        e = Envelope()
        internal(e)
        e.message_id = str(uuid.uuid4())
        e.type = "HandoffRequested"
        self.b.sql("INSERT INTO interconnect.outbox (id, destination, dossier_code, type, payload)"
                   " VALUES ('%s', 'H99', 'X-2', 'HandoffRequested', '\\x%s')"
                   % (e.message_id, e.SerializeToString().hex()))
        self.b.sql("NOTIFY interconnect_outbox")
        self.assertIn("not taken from another province", self.dead_letter(e.message_id))


    def test_7_expired_then_answered_late(self):
        # B has not finished by the step's due time: A's handoff expires (escalated to
        # an operator, the desk in charge again); B's late answer changes nothing.
        code = self.hand_over(self.a)
        there = self.remote(self.a, code)
        self.a.sql("UPDATE interconnect.handoffs SET due_at = now() - interval '1 second'"
                   " WHERE code = '%s'" % code)
        harness.wait_for(lambda: self.last(self.a, code).get("state") == "expired",
                         what="the handoff expired")
        c = harness.wait_case_state(self.a.svc["routing"], self.a.operator, code, "IN_PROGRESS")
        self.assertEqual(step_of(c), 0, "the desk is in charge again")
        status, body = harness.http("GET", self.a.url("interconnect",
                                                      "/v1/handoffs?state=expired"),
                                    headers={"Authorization": "Bearer " + self.a.operator})
        self.assertIn(code, [h["dossier"] for h in body["items"]])
        self.resolve_there(self.b, there)
        # The late answer is taken (no dead letter) and moves nothing.
        harness.wait_for(lambda: self.last(self.a, code).get("remote_state") == "APPROVED",
                         what="B's late answer recorded")
        self.assertEqual(self.last(self.a, code)["state"], "expired")
        self.assertEqual(self.a.sql("SELECT count(*) FROM interconnect.dead_letters"
                                    " WHERE dossier_code = 'H99-%d'"
                                    % self.last(self.a, code)["id"]),
                         "0")
        self.assertEqual(step_of(harness.case(self.a.svc["routing"], self.a.operator, code)), 0)


# A client with a fresh key pair sends one envelope-looking message to the link and
# waits for an answer that must never come.
STRANGER = r"""
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
pub, sec = zmq.curve_keypair()
s.curve_secretkey, s.curve_publickey, s.curve_serverkey = sec, pub, sys.argv[2].encode()
s.linger = 0
s.connect(sys.argv[1])
s.send_multipart([b"00000000-0000-4000-8000-000000000000", b"x"])
print("answer" if s.poll(3000) else "no answer")
"""

if __name__ == "__main__":
    unittest.main()
