"""The bus between a province's services over CURVE (MOTCUA_BUS_CURVE_DIR): intake and
routing with a key pair each (made by `motcuactl curve keygen`), the other services'
public keys in the same folder.

Checked: a dossier submitted at intake is opened by routing over the encrypted bus; a
stranger's key is refused at routing's bus port and logged; a client without CURVE gets
nothing; a service's real key cannot speak for another service (its envelope goes to
the dead letters); a missing key pair stops a service at start with the reason.

Run: cd tests/system && /usr/bin/python3 run.py test_bus_curve"""
import json
import os
import subprocess
import tempfile
import time
import unittest
import uuid

import harness

PROCEDURE = "1.001193"
DESK = "000.01.31.H99"

# A client of routing's bus: connects with the given keys (None: no CURVE), sends one
# envelope as [id][bytes], prints whether an answer came.
CLIENT = r"""
import sys, zmq
endpoint, server_key, public, secret, mid, payload = sys.argv[1:7]
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.linger = 0
if public != "-":
    s.curve_publickey, s.curve_secretkey = public.encode(), secret.encode()
    s.curve_serverkey = server_key.encode()
s.connect(endpoint)
s.send_multipart([mid.encode(), bytes.fromhex(payload)])
print("answer" if s.poll(3000) else "no answer")
"""


def keygen(directory, name):
    out = subprocess.run([os.path.join(harness.BIN, "motcuactl"), "curve", "keygen", name,
                          os.path.join(directory, name), "--json"], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return json.loads(out.stdout)


def secret_of(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("secret-key"):
                return line.split('"')[1]
    raise ValueError(path)


class BusCurve(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres()
        cls.svc = {}
        try:
            cls.db = cls.pg.database()
            cls.dir = tempfile.mkdtemp(prefix="motcua-curve-")
            cls.keys = {n: keygen(cls.dir, n) for n in harness.SERVICES}
            env = harness.suite_env(cls.db)
            env["MOTCUA_BUS_CURVE_DIR"] = cls.dir
            cls.env = env
            harness.start_services(cls.svc, ("intake", "routing"), env, log_dir=cls.dir)
            cls.portal = harness.create_api_key(cls.db, "portal", "citizen_portal")["key"]
            cls.operator = harness.create_api_key(cls.db, "operator", "operator")["key"]
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        problems = harness.stop_services(cls.svc)
        cls.pg.stop()
        if problems:
            raise AssertionError("; ".join(problems))

    def routing_bus(self):
        return self.env["MOTCUA_ROUTING_BUS"]

    def log(self, name):
        with open(self.svc[name].log_path, errors="replace") as f:
            return f.read()

    def client(self, public, secret, mid, payload):
        p = subprocess.run(["/usr/bin/python3", "-c", CLIENT, self.routing_bus(),
                            self.keys["routing"]["public_key"], public, secret, mid,
                            payload.hex()], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.strip()

    def test_1_dossier_crosses_the_encrypted_bus(self):
        body = {"procedure": PROCEDURE, "channel": "online",
                "applicant": {"name": "Đinh Thị Mai", "phone": "0912000111"},
                "documents": [{"kind": "to_khai_khai_sinh", "name": "Tờ khai"},
                              {"kind": "giay_chung_sinh", "name": "Giấy chứng sinh"}]}
        status, r = harness.http("POST", self.svc["intake"].url("/v1/dossiers"), body,
                                 {"Idempotency-Key": str(uuid.uuid4()),
                                  "Authorization": "Bearer " + self.portal})
        self.assertEqual(status, 201, r)
        case = harness.wait_for(lambda: harness.case(self.svc["routing"], self.operator,
                                                     r["code"]), what="the case over CURVE")
        self.assertEqual(case["state"], "SUBMITTED")
        self.assertIn("bus: CURVE between services", self.log("routing"))
        self.assertIn("curve: admitted intake", self.log("routing"))

    def test_2_stranger_and_plain_clients_get_nothing(self):
        import zmq
        public, secret = (k.decode() for k in zmq.curve_keypair())
        self.assertEqual(self.client(public, secret, str(uuid.uuid4()), b"x"), "no answer")
        harness.wait_for(lambda: "key not in the allow-list" in self.log("routing"),
                         what="the refusal in routing's log")
        self.assertEqual(self.client("-", "-", str(uuid.uuid4()), b"x"), "no answer")

    def test_3_a_service_speaks_only_for_itself(self):
        Envelope = harness.envelope_class()
        env = Envelope()
        env.message_id = str(uuid.uuid4())
        env.type, env.source, env.schema_version = "DossierSubmitted", "intake", 1
        env.time_ms = int(time.time() * 1000)
        env.dossier_code = "X-1"
        env.dossier_submitted.code = "X-1"
        payment = self.keys["payment"]
        answer = self.client(payment["public_key"], secret_of(payment["secret_file"]),
                             env.message_id, env.SerializeToString())
        self.assertEqual(answer, "answer", "acknowledged: set aside, not retried")
        reason = harness.wait_for(lambda: self.pg.sql(
            "SELECT reason FROM routing.dead_letters WHERE message_id = '%s'" % env.message_id,
            self.db), what="the dead letter")
        self.assertIn("says it is from intake but came with payment's key", reason)
        self.assertEqual(self.pg.sql("SELECT count(*) FROM routing.cases WHERE code = 'X-1'",
                                     self.db), "0")

    def test_4_missing_key_pair_stops_the_service(self):
        empty = tempfile.mkdtemp(prefix="motcua-nokeys-")
        env = dict(self.env, MOTCUA_BUS_CURVE_DIR=empty)
        for name in ("PAYMENT",):
            env["MOTCUA_%s_HTTP_PORT" % name] = str(harness.free_port())
        s = harness.Service("payment", env, log_dir=self.dir)
        s.start(wait=False)
        try:
            self.assertNotEqual(s.proc.wait(timeout=30), 0)
        finally:
            if s.proc.poll() is None:  # it started after all: not left behind
                s.kill()
        self.assertIn("MOTCUA_BUS_CURVE_DIR", s.log())
        self.assertIn("cannot read the key pair", s.log())


    def test_5_keygen_refuses_bad_names_and_never_overwrites(self):
        ctl = os.path.join(harness.BIN, "motcuactl")
        for name in ("", "a b", "x" * 32, "../etc", "H99;"):
            p = subprocess.run([ctl, "curve", "keygen", name, os.path.join(self.dir, "k")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertEqual(p.returncode, 2, (name, p.stderr))
            self.assertIn("not a name for a key pair", p.stderr)
            self.assertFalse(os.path.exists(os.path.join(self.dir, "k")))
        path = os.path.join(self.dir, "intake")  # made in setUpClass
        with open(path + "_secret") as f:
            before = f.read()
        p = subprocess.run([ctl, "curve", "keygen", "intake", path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("not overwritten", p.stderr)
        with open(path + "_secret") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(os.stat(path + "_secret").st_mode & 0o777, 0o600)


if __name__ == "__main__":
    unittest.main()
