"""The bus's central promise under real faults: nothing lost, nothing done twice.

Two processes built only from common/ (bus-peer, acting as intake and routing) exchange
10,000 BusProbe envelopes in 100 streams (one stream = one dossier code). The receiver
records every handled probe and whether it followed the previous one of its stream.
We kill processes with SIGKILL and restart PostgreSQL while envelopes are in flight,
then check: every envelope handled exactly once, in order per stream.
"""
import os
import time
import unittest
import uuid

import zmq

import harness

STREAMS, PER_STREAM = 100, 100
TOTAL = STREAMS * PER_STREAM


class BusPair:
    def __init__(self, pg, receiver_batch="32"):
        self.pg = pg
        self.db = pg.database()
        env = harness.suite_env(self.db)
        peer = os.path.join(harness.BIN, "bus-peer")
        self.sender = harness.Service("intake", env, binary=peer, args=["intake"])
        renv = dict(env, MOTCUA_BUS_BATCH=receiver_batch)
        self.receiver = harness.Service("routing", renv, binary=peer, args=["routing"])
        self.receiver.start()
        self.sender.start()

    def send(self, streams=STREAMS, per_stream=PER_STREAM):
        status, body = harness.http(
            "POST", self.sender.url("/probe/send?to=routing&streams=%d&per_stream=%d&chunk=500"
                                    % (streams, per_stream)), timeout=120)
        assert status == 200, body
        return body

    def handled(self):
        try:
            return int(self.pg.sql("SELECT count(*) FROM routing.probe_log", self.db))
        except Exception:
            return -1  # the database is restarting

    def verdict(self):
        return self.pg.sql(
            "SELECT count(*), count(DISTINCT (stream, seq)), count(*) FILTER (WHERE NOT in_order),"
            " (SELECT count(*) FROM routing.inbox),"
            " (SELECT count(*) FROM intake.outbox WHERE delivered_at IS NULL)"
            " FROM routing.probe_log", self.db).split("|")

    def stop(self):
        for s in (self.sender, self.receiver):
            if s.proc and s.proc.poll() is None:
                s.terminate()


class BusCrashTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def finish(self, pair, faults):
        harness.wait_for(lambda: pair.handled() >= TOTAL, timeout=240, what="all probes handled")
        # Let late repeats arrive: they must be skipped, not handled again.
        time.sleep(2)
        total, distinct, out_of_order, inbox, undelivered = map(int, pair.verdict())
        print("\n  %s: handled=%d distinct=%d out_of_order=%d inbox=%d undelivered=%d"
              % (faults, total, distinct, out_of_order, inbox, undelivered))
        self.assertEqual(total, TOTAL, "every envelope handled exactly once")
        self.assertEqual(distinct, TOTAL)
        self.assertEqual(out_of_order, 0, "order per stream kept")
        self.assertEqual(inbox, TOTAL)
        harness.wait_for(lambda: pair.verdict()[4] == "0", timeout=60, what="outbox drained")
        self.assertEqual(pair.sender.terminate(), 0, "sender stops cleanly on SIGTERM")
        self.assertEqual(pair.receiver.terminate(), 0, "receiver stops cleanly on SIGTERM")

    def test_receiver_killed_repeatedly(self):
        pair = BusPair(self.pg)
        try:
            pair.send()
            kills = []
            for threshold in (1000, 3500, 6000, 8500):
                harness.wait_for(lambda: pair.handled() >= threshold, timeout=120,
                                 what="%d handled" % threshold)
                at = pair.handled()
                pair.receiver.restart_after_kill()
                kills.append(at)
            # And the sender once: its relay must pick up where the outbox says.
            pair.sender.restart_after_kill()
            self.assertTrue(all(k < TOTAL for k in kills), "kills happened mid-stream: %s" % kills)
            self.finish(pair, "receiver SIGKILLed at %s, sender once" % kills)
        finally:
            pair.stop()

    def test_postgres_restarted_mid_stream(self):
        pair = BusPair(self.pg)
        try:
            pair.send()
            faults = []
            harness.wait_for(lambda: pair.handled() >= 2000, timeout=120, what="2000 handled")
            faults.append(("restart", pair.handled()))
            self.pg.restart()
            harness.wait_for(lambda: pair.handled() >= 5000, timeout=120, what="5000 handled")
            faults.append(("crash", pair.handled()))
            self.pg.crash()
            self.finish(pair, "PostgreSQL %s" % faults)
            self.assertTrue(all(at < TOTAL for _, at in faults), faults)
        finally:
            pair.stop()

    def test_stops_while_the_database_is_down(self):
        # SIGTERM with the database gone: the bus cannot finish its work in flight, the
        # service still stops (within its grace) and cleanly; nothing is lost, since what
        # was not acknowledged is in the sender's outbox.
        pg = harness.Postgres()
        pair = None
        try:
            pair = BusPair(pg)
            pair.send(streams=20, per_stream=50)
            harness.wait_for(lambda: pair.handled() > 0, timeout=60, what="traffic")
            pg._pg("kill", pg.dir)  # immediate: no goodbye to the connections
            time.sleep(1)
            self.assertEqual(pair.receiver.terminate(timeout=30), 0, pair.receiver.log())
            self.assertEqual(pair.sender.terminate(timeout=30), 0, pair.sender.log())
            self.assertIn("is the database reachable?", pair.receiver.log() + pair.sender.log())
            for s in (pair.receiver, pair.sender):
                for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                    self.assertNotIn(marker, s.log())
        finally:
            if pair:
                for s in (pair.sender, pair.receiver):
                    if s.proc and s.proc.poll() is None:
                        s.kill()
            pg.stop()

    def test_malformed_and_unknown_go_to_dead_letters(self):
        pair = BusPair(self.pg)
        try:
            ctx = zmq.Context.instance()
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVTIMEO, 10000)
            sock.connect(pair.receiver.env["MOTCUA_ROUTING_BUS"])
            garbage_id, unknown_id = str(uuid.uuid4()), str(uuid.uuid4())
            sock.send_multipart([garbage_id.encode(), b"\xff\xff\xff\x00not protobuf"])
            sock.send_multipart([b"just one frame"])
            sock.send_multipart([unknown_id.encode(), unknown_envelope(unknown_id)])
            replies = [sock.recv() for _ in range(2)]
            sock.close()
            acked = {r for r in replies if garbage_id.encode() in r or unknown_id.encode() in r}
            self.assertEqual(len(acked), 2, "both identifiable envelopes are acknowledged")
            rows = harness.wait_for(
                lambda: self.pg.sql("SELECT coalesce(message_id,'-') || ' ' || reason FROM"
                                    " routing.dead_letters ORDER BY id", pair.db).splitlines()
                if int(self.pg.sql("SELECT count(*) FROM routing.dead_letters", pair.db)) >= 3
                else None, timeout=30, what="three dead letters")
            self.assertTrue(any(garbage_id in r and "undecodable" in r for r in rows), rows)
            self.assertTrue(any(unknown_id in r and "no handler for type FutureThing" in r
                                for r in rows), rows)
            self.assertTrue(any(r.startswith("- ") for r in rows), rows)
            # The service is still alive and still handles good envelopes.
            status, _ = harness.http("GET", pair.receiver.url("/healthz"))
            self.assertEqual(status, 200)
            pair.send(streams=2, per_stream=5)
            harness.wait_for(lambda: pair.handled() == 10, timeout=30, what="good probes after")
            self.assertEqual(pair.receiver.terminate(), 0)
        finally:
            pair.stop()


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(num << 3 | 2) + varint(len(data)) + data


def unknown_envelope(message_id):
    """A well-formed Envelope from a newer schema: a type and body this build lacks."""
    return (field(1, message_id) + field(2, "FutureThing") + field(3, "stream-x") +
            field(6, "intake") + field(8, 2) + field(150, b"\x0a\x03abc"))


if __name__ == "__main__":
    unittest.main()
