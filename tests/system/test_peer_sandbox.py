"""The sandbox's peer province (deploy/sandbox/peer_province.py) against the real
intake, routing and interconnect, wired as `make run` wires them: our province H99
with a CURVE link on loopback, the sandbox's Tỉnh Sông Mã (H98) with its own key pair
at the other end. The cross-province procedure 2.002901 of the shipped catalog is
handed over and completed by the stand-in (auto mode), refused (reject mode), and
answered by hand (manual mode); a repeated PeerHandoff opens nothing twice there.

(Two real deployments talking to each other are test_provinces.py; this checks the
stand-in that `make run` uses and the demo configuration.)

Run: cd tests/system && /usr/bin/python3 run.py test_peer_sandbox"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest
import uuid

import harness

CROSS = "2.002901"
DESK = "000.00.01.H99"


def keygen(directory, province):
    out = subprocess.run([os.path.join(harness.BIN, "motcuactl"), "curve", "keygen", province,
                          os.path.join(directory, province), "--json"], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return json.loads(out.stdout)


class PeerSandbox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres()
        cls.svc, cls.sandbox = {}, None
        try:
            cls.db = cls.pg.database()
            cls.dir = tempfile.mkdtemp(prefix="motcua-peer-")
            ours, theirs = keygen(cls.dir, "H99"), keygen(cls.dir, "H98")
            link, peer = harness.free_port(), harness.free_port()
            cls.sandbox = harness.Sandbox("", {
                "MOTCUA_SANDBOX_PEER_CERT": theirs["secret_file"],
                "MOTCUA_SANDBOX_PEER_BIND": "tcp://127.0.0.1:%d" % peer,
                "MOTCUA_SANDBOX_PEER_TARGET": "tcp://127.0.0.1:%d" % link,
                "MOTCUA_SANDBOX_PEER_TARGET_KEY": ours["public_key"]}, log_dir=cls.dir).start()
            peers = os.path.join(cls.dir, "peers.json")
            with open(peers, "w") as f:
                json.dump([{"province": "H98", "name": "Tỉnh Sông Mã (sandbox)",
                            "endpoint": "tcp://127.0.0.1:%d" % peer,
                            "public_key": theirs["public_key"]}], f)
            env = harness.suite_env(cls.db)
            env.update(MOTCUA_PROVINCE="H99", MOTCUA_INTERCONNECT_PEERS=peers,
                       MOTCUA_INTERCONNECT_CERT=ours["secret_file"],
                       MOTCUA_INTERCONNECT_LINK_BIND="tcp://127.0.0.1:%d" % link,
                       MOTCUA_PORTAL_SYNC="off", MOTCUA_INTERCONNECT_TICK_MS="200")
            harness.start_services(cls.svc, ("intake", "routing", "interconnect"),
                                   env, log_dir=cls.dir)
            cls.operator = harness.create_api_key(cls.db, "operator", "operator")["key"]
            cls.desk = harness.create_api_key(cls.db, "desk", "officer", DESK)["key"]
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        problems = harness.stop_services(cls.svc)
        if cls.sandbox and cls.sandbox.stop() != 0:
            problems.append("the sandbox did not exit 0")
        cls.pg.stop()
        if problems:
            raise AssertionError("; ".join(problems))

    def setUp(self):
        self.mode("auto", 300)

    def mode(self, mode, delay_ms=300):
        status, _, body = self.sandbox.http("POST", "/control/peer",
                                            {"mode": mode, "delay_ms": delay_ms})
        self.assertEqual(status, 200, body)

    def hand_over(self):
        body = {"procedure": CROSS, "channel": "direct", "return_method": "counter",
                "applicant": {"name": "Vũ Thị Lan", "phone": "0977123456"},
                "documents": [{"kind": "to_khai_cap_ban_sao_trich_luc", "name": "Tờ khai"}]}
        status, r = harness.http("POST", self.svc["intake"].url("/v1/dossiers"), body,
                                 {"Idempotency-Key": str(uuid.uuid4()),
                                  "Authorization": "Bearer " + self.desk})
        self.assertEqual(status, 201, r)
        code = r["code"]
        harness.wait_for(lambda: harness.case(self.svc["routing"], self.operator, code),
                         what="the case")
        status, r = harness.http("POST", self.svc["routing"].url(
            "/v1/dossiers/%s/actions" % code), {"action": "forward", "officer": "Đỗ Minh"},
            {"Authorization": "Bearer " + self.desk})
        self.assertEqual((status, r.get("state")), (200, "HANDED_OFF"), r)
        return code

    def handoff(self, code):
        status, body = harness.http("GET", self.svc["interconnect"].url(
            "/v1/handoffs?dossier=" + code), headers={"Authorization": "Bearer " + self.operator})
        self.assertEqual(status, 200, body)
        return body["items"][-1] if body["items"] else {}

    def at_peer(self, code):
        status, _, body = self.sandbox.http("GET", "/peer/handoffs")
        self.assertEqual(status, 200, body)
        return [h for h in body["handoffs"] if h["origin_code"] == code]

    def test_auto_completes(self):
        code = self.hand_over()
        h = harness.wait_for(lambda: (lambda x: x if x.get("state") == "completed" else None)(
            self.handoff(code)), what="completed by the peer province")
        self.assertEqual(h["peer"], "H98")
        self.assertTrue(h["remote_code"].startswith("000.01.31.H98-"))
        self.assertIn("Bản sao trích lục số", h["result"])
        there = self.at_peer(code)
        self.assertEqual(len(there), 1)
        self.assertEqual(there[0]["procedure"], "2.000635", "the step's own procedure")
        harness.wait_for(lambda: all(a["acked"] for a in self.at_peer(code)[0]["answers"]),
                         what="every answer acknowledged")
        case = harness.wait_case_state(self.svc["routing"], self.operator, code, "IN_PROGRESS")
        self.assertEqual(case["step"]["index"] if isinstance(case["step"], dict)
                         else case["step"], 2)

    def test_rejected(self):
        self.mode("reject")
        code = self.hand_over()
        h = harness.wait_for(lambda: (lambda x: x if x.get("state") == "rejected" else None)(
            self.handoff(code)), what="rejected by the peer province")
        self.assertIn("Sông Mã", h["reason"])

    def test_manual_answer(self):
        self.mode("manual")
        code = self.hand_over()
        harness.wait_for(lambda: self.handoff(code).get("state") == "accepted",
                         what="accepted (received there)")
        hid = self.at_peer(code)[0]["handoff_id"]
        status, _, body = self.sandbox.http("POST", "/peer/answer",
                                            {"handoff_id": hid, "outcome": "completed",
                                             "result": "Bản sao trích lục số 77/BS"})
        self.assertEqual(status, 200, body)
        h = harness.wait_for(lambda: (lambda x: x if x.get("state") == "completed" else None)(
            self.handoff(code)), what="completed by hand")
        self.assertIn("77/BS", h["result"])
        status, _, body = self.sandbox.http("POST", "/peer/answer",
                                            {"handoff_id": "H99-0", "outcome": "completed"})
        self.assertEqual(status, 404)
        status, _, body = self.sandbox.http("POST", "/peer/answer",
                                            {"handoff_id": hid, "outcome": "maybe"})
        self.assertEqual(status, 400)


    def test_bad_link_configuration_stops_interconnect(self):
        """A bad peers.json, province code or key pair: exit 2 with the reason."""
        good = {"province": "H98", "name": "Tỉnh Sông Mã", "endpoint": "tcp://127.0.0.1:1",
                "public_key": "x" * 40}
        with open(os.path.join(self.dir, "H98")) as f:  # a real public key
            good["public_key"] = next(l.split('"')[1] for l in f if "public-key" in l)
        # czmq reads FILE_secret beside FILE: a public file alone, in a folder of its own
        public_only = os.path.join(tempfile.mkdtemp(prefix="motcua-pub-"), "H98")
        shutil.copy(os.path.join(self.dir, "H98"), public_only)
        cases = [
            ({}, "not json", "line"),
            ({}, {"province": "H98"}, "an array of peer provinces"),
            ({}, [dict(good, province="h98")], "capital letters"),
            ({}, [dict(good, province="H99")], "cannot be its own peer"),
            ({}, [dict(good, endpoint="http://x")], "tcp://host:port"),
            ({}, [dict(good, public_key="short")], "40-character Z85"),
            ({}, [good, good], "listed twice"),
            ({"MOTCUA_PROVINCE": "H 99"}, [good], "MOTCUA_PROVINCE"),
            ({"MOTCUA_INTERCONNECT_CERT": public_only}, [good], "holds no secret key"),
            ({"MOTCUA_INTERCONNECT_CERT": os.path.join(self.dir, "nothing")}, [good],
             "cannot read the key pair"),
        ]
        for i, (extra, peers, want) in enumerate(cases):
            with self.subTest(want=want):
                path = os.path.join(self.dir, "bad-peers-%d.json" % i)
                with open(path, "w") as f:
                    f.write(peers if isinstance(peers, str) else json.dumps(peers))
                env = dict(self.svc["interconnect"].env, MOTCUA_INTERCONNECT_PEERS=path,
                           MOTCUA_INTERCONNECT_LINK_BIND="tcp://127.0.0.1:%d" % harness.free_port(),
                           MOTCUA_INTERCONNECT_HTTP_PORT=str(harness.free_port()),
                           MOTCUA_INTERCONNECT_BUS_BIND="tcp://127.0.0.1:%d" % harness.free_port())
                env.update(extra)
                s = harness.Service("interconnect", env, log_dir=self.dir)
                s.start(wait=False)
                try:
                    self.assertEqual(s.proc.wait(timeout=30), 2, s.log())
                finally:
                    if s.proc.poll() is None:  # it started after all: not left behind
                        s.kill()
                self.assertIn(want, s.log())


if __name__ == "__main__":
    unittest.main()
