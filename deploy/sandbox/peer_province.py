"""peer_province.py: a neighbouring province's motcua — Tỉnh Sông Mã (H98) — at the
other end of interconnect's CURVE link (docs/interconnect-peers.md), so that the
cross-province procedure of the demo catalog (2.002901) runs under `make run`.

It speaks the real protocol: ZeroMQ with CURVE (its own key pair, a czmq
certificate made by `motcuactl curve keygen H98 ...`; it admits only the origin
province's key), the motcua Envelope (compiled from proto/ with protoc at start),
two frames [message id][Envelope] answered by one Ack frame, each PeerStatus resent
with the same id until the origin acknowledges it, in order per handoff.

A PeerHandoff is acknowledged once (a repeat is acknowledged and ignored) and, by
mode:
    auto     progress (received), progress (in progress), then after delay_ms
             completed with a result (a copy-extract number)
    manual   progress (received) only; POST /peer/answer ends it
    reject   rejected at once ("not registered here")
    silent   acknowledged, never answered (the origin's handoff expires)

API
    GET  /peer/handoffs            what it received, oldest first, with its answers
    POST /peer/answer  {"handoff_id", "outcome": "completed"|"rejected", "result"?, "note"?}
    GET  /control/peer             mode, delay_ms and counters
    POST /control/peer {"mode": "auto"|"manual"|"reject"|"silent", "delay_ms": N}

Configuration (environment):
    MOTCUA_SANDBOX_PEER_CERT        its key pair (the _secret file); unset: the stand-in is off
    MOTCUA_SANDBOX_PEER_BIND        where its link listens (tcp://127.0.0.1:7191)
    MOTCUA_SANDBOX_PEER_TARGET      the origin province's link (tcp://127.0.0.1:7190)
    MOTCUA_SANDBOX_PEER_TARGET_KEY  the origin province's public key (Z85): the only key
                                    admitted, and the server key when sending
    MOTCUA_SANDBOX_PEER_PROVINCE    its code (H98); MOTCUA_SANDBOX_PEER_ORIGIN: H99

Needs python3-zmq and protoc (protobuf-compiler) with python3-protobuf, which
`make deps` installs; without them, or without a key pair, it says why and stays off
(the rest of the sandbox runs).
"""

import html
import importlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from standin import OutageSwitch, StandIn, error_body

try:  # python3-zmq: without it the stand-in is off
    import zmq
    import zmq.auth.thread
except ImportError:  # pragma: no cover
    zmq = None

RESEND_S = 2.0  # an unacknowledged PeerStatus is sent again after this long
STATE = {"RECEIVED": (2, 2), "IN_PROGRESS": (5, 4), "APPROVED": (8, 9), "REFUSED": (9, 3)}
HERE = os.path.dirname(os.path.abspath(__file__))


def read_cert(path):
    """(public, secret) Z85 keys of a czmq certificate file."""
    keys = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r'\s*(public|secret)-key\s*=\s*"(.{40})"', line)
            if m:
                keys[m.group(1)] = m.group(2)
    if "public" not in keys or "secret" not in keys:
        raise ValueError("%s is not a secret certificate (public-key and secret-key)" % path)
    return keys["public"].encode(), keys["secret"].encode()


def envelope_class():
    """motcua.v1.Envelope compiled from the repository's proto/ for this process."""
    proto = os.path.join(os.path.dirname(os.path.dirname(HERE)), "proto")
    out = tempfile.mkdtemp(prefix="motcua-sandbox-pb-")
    subprocess.run(["protoc", "-I" + proto, "--python_out=" + out,
                    os.path.join(proto, "motcua", "envelope.proto"),
                    os.path.join(proto, "motcua", "events.proto")], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sys.path.insert(0, out)
    try:
        return importlib.import_module("motcua.envelope_pb2").Envelope
    finally:
        sys.path.remove(out)


class PeerProvince(StandIn):
    name = "peer"
    noun = "peer province"
    title = "Peer province: Tỉnh Sông Mã (H98) over the CURVE link"

    def __init__(self, ctx):
        super().__init__(ctx)
        env = os.environ
        self.cert = env.get("MOTCUA_SANDBOX_PEER_CERT", "")
        self.bind = env.get("MOTCUA_SANDBOX_PEER_BIND", "tcp://127.0.0.1:7191")
        self.target = env.get("MOTCUA_SANDBOX_PEER_TARGET", "tcp://127.0.0.1:7190")
        self.target_key = env.get("MOTCUA_SANDBOX_PEER_TARGET_KEY", "")
        self.province = env.get("MOTCUA_SANDBOX_PEER_PROVINCE", "H98")
        self.origin = env.get("MOTCUA_SANDBOX_PEER_ORIGIN", "H99")
        self.switch = OutageSwitch(("auto", "manual", "reject", "silent"),
                                   ("handoffs", "repeated", "sent", "acked", "refused"),
                                   delay=True)
        self.switch.mode = "auto"
        self.switch.delay_ms = 3000
        self.off = None  # why the stand-in is off, or None
        self.handoffs = {}  # handoff_id -> record
        self.outbox = []  # [message id, handoff id, bytes, last sent (monotonic)]
        self.seq = 0
        self.stopping = threading.Event()
        self.thread = None
        self.routes = {
            ("GET", "/peer/handoffs"): self.list_handoffs,
            ("POST", "/peer/answer"): self.answer,
            ("GET", "/control/peer"): self.control_get,
            ("POST", "/control/peer"): self.control_set,
        }
        for rec in self.journal.records:  # what it had received before a restart
            if rec.get("kind") == "handoff":
                self.handoffs[rec["handoff_id"]] = dict(rec, answers=[])

    # ---- lifecycle ----
    async def start(self):
        if not self.cert:
            self.off = "MOTCUA_SANDBOX_PEER_CERT is not set"
        elif len(self.target_key) != 40:
            self.off = "MOTCUA_SANDBOX_PEER_TARGET_KEY is not a Z85 key"
        if self.off:
            return
        try:
            if zmq is None:
                raise ImportError("python3-zmq is not installed")
            self.Envelope = envelope_class()
            public, secret = read_cert(self.cert)
        except (ImportError, OSError, ValueError, subprocess.CalledProcessError) as e:
            self.off = "cannot start: %s" % e
            self.log("warn", "peer province off", reason=self.off)
            return
        self.ctx = zmq.Context()
        self.auth = zmq.auth.thread.ThreadAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve_callback(domain="*", credentials_provider=self)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.curve_secretkey, self.router.curve_publickey = secret, public
        self.router.curve_server = True
        self.router.linger = 0
        self.router.bind(self.bind)
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.curve_secretkey, self.dealer.curve_publickey = secret, public
        self.dealer.curve_serverkey = self.target_key.encode()
        self.dealer.linger = 0
        self.dealer.connect(self.target)
        self.public = public.decode()
        self.thread = threading.Thread(target=self.run, name="peer", daemon=True)
        self.thread.start()

    async def stop(self):
        if self.thread:
            self.stopping.set()
            self.thread.join(5)
            self.auth.stop()
            self.ctx.destroy(linger=0)

    def describe(self):
        if self.off:
            return {"peer": "off (%s)" % self.off}
        return {"peer_bind": self.bind, "peer_key": self.public}

    def callback(self, domain, key):
        """ZAP (pyzmq's authenticator): only the origin province's key is admitted."""
        # pyzmq hands the key Z85-encoded already (older versions: the 32 raw bytes)
        z85 = (key if len(key) == 40 else zmq.utils.z85.encode(key)).decode()
        ok = z85 == self.target_key
        if not ok:
            self.switch.count("refused")
            self.log("warn", "peer: refused a connection", key=z85)
        return ok

    # ---- the socket thread ----
    def run(self):
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.dealer, zmq.POLLIN)
        while not self.stopping.is_set():
            for sock, _ in poller.poll(200):
                frames = sock.recv_multipart()
                if sock is self.router:
                    self.on_envelope(frames)
                else:
                    self.on_reply(frames)
            self.flush()

    def reply(self, identity, message_id):
        env = self.Envelope()
        env.type, env.source, env.schema_version = "Ack", "interconnect", 1
        env.time_ms = int(time.time() * 1000)
        env.ack.message_id = message_id
        self.router.send_multipart([identity, env.SerializeToString()])

    def on_envelope(self, frames):
        if len(frames) != 3:
            return
        identity, mid, data = frames
        env = self.Envelope()
        try:
            env.ParseFromString(data)
        except Exception:  # noqa: BLE001 - anything undecodable is dropped, as a dead letter
            self.log("warn", "peer: undecodable envelope dropped")
            return
        if env.WhichOneof("body") == "peer_handoff":
            self.take(env.peer_handoff)
        else:
            self.log("warn", "peer: not a PeerHandoff", type=env.type)
        self.reply(identity, mid.decode())

    def take(self, ph):
        hid = ph.handoff_id
        with self.lock:
            if hid in self.handoffs:
                self.switch.count("repeated")
                return
            self.seq += 1
            day = time.strftime("%Y%m%d", time.gmtime(time.time() + 7 * 3600))  # UTC+7
            local = "000.01.31.%s-%s-%07d" % (self.province, day, self.seq)
            rec = self.journal.append({
                "kind": "handoff", "handoff_id": hid, "origin": ph.origin_province,
                "origin_code": ph.request.code, "procedure": ph.procedure_code,
                "step": ph.request.step.name, "applicant": ph.request.applicant.name,
                "local_code": local})
            rec = dict(rec, answers=[])
            self.handoffs[hid] = rec
        self.switch.count("handoffs")
        self.log("info", "peer: handoff received", handoff=hid, dossier=ph.request.code,
                 procedure=ph.procedure_code)
        mode = self.switch.current()
        if mode == "reject":
            self.send(rec, "rejected", "REFUSED", "Không có dữ liệu đăng ký tại tỉnh Sông Mã")
        elif mode in ("auto", "manual"):
            self.send(rec, "progress", "RECEIVED", "Đã tiếp nhận hồ sơ liên thông")
        if mode == "auto":
            self.send(rec, "progress", "IN_PROGRESS", "Đang tra cứu Sổ hộ tịch")
            delay = self.switch.state()["delay_ms"] / 1000.0
            threading.Timer(delay, self.complete, (rec, None, None)).start()

    def complete(self, rec, result, note):
        result = result or "Bản sao trích lục số %d/BS" % (1000 + self.seq)
        self.send(rec, "completed", "APPROVED", note or "Đã cấp bản sao trích lục", result)

    def send(self, rec, outcome, state, note, result=""):
        env = self.Envelope()
        env.message_id = str(uuid.uuid4())
        env.type, env.source, env.schema_version = "PeerStatus", "interconnect", 1
        env.time_ms = int(time.time() * 1000)
        env.dossier_code = rec["handoff_id"]
        ps = env.peer_status
        ps.handoff_id, ps.origin_code = rec["handoff_id"], rec["origin_code"]
        ps.local_code, ps.outcome, ps.note, ps.result = rec["local_code"], outcome, note, result
        ps.state, ps.national_status = STATE[state]
        ps.at_ms = env.time_ms
        with self.lock:
            rec["answers"].append({"outcome": outcome, "state": state, "note": note,
                                   "result": result, "acked": False, "id": env.message_id})
            self.outbox.append([env.message_id, rec["handoff_id"], env.SerializeToString(), 0.0])

    def flush(self):
        """Send the head of each handoff's queue when it is new or its wait ran out."""
        now = time.monotonic()
        with self.lock:
            heads, seen = [], set()
            for item in self.outbox:
                if item[1] not in seen:
                    seen.add(item[1])
                    heads.append(item)
            for item in heads:
                if now - item[3] >= RESEND_S:
                    try:
                        self.dealer.send_multipart([item[0].encode(), item[2]], zmq.NOBLOCK)
                        self.switch.count("sent")
                    except zmq.Again:
                        pass
                    item[3] = now

    def on_reply(self, frames):
        env = self.Envelope()
        try:
            env.ParseFromString(frames[-1])
        except Exception:  # noqa: BLE001
            return
        if env.WhichOneof("body") != "ack":
            return
        with self.lock:
            for i, item in enumerate(self.outbox):
                if item[0] == env.ack.message_id:
                    del self.outbox[i]
                    for rec in self.handoffs.values():
                        for a in rec["answers"]:
                            if a["id"] == env.ack.message_id:
                                a["acked"] = True
                    self.switch.count("acked")
                    break

    # ---- HTTP ----
    def list_handoffs(self, req):
        with self.lock:
            items = [dict(r) for r in self.handoffs.values()]
        return 200, {"handoffs": items, "off": self.off}

    def answer(self, req):
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError) as e:
            return 400, error_body("bad_json", "body is not UTF-8 JSON: %s" % e)
        if not isinstance(body, dict):
            return 400, error_body("invalid", "a JSON object is required")
        rec = self.handoffs.get(body.get("handoff_id"))
        if rec is None:
            return 404, error_body("not_found", "no such handoff", "handoff_id")
        outcome = body.get("outcome")
        if outcome == "completed":
            self.complete(rec, body.get("result"), body.get("note"))
        elif outcome == "rejected":
            self.send(rec, "rejected", "REFUSED", body.get("note") or "Từ chối giải quyết")
        else:
            return 400, error_body("invalid", "outcome must be completed or rejected", "outcome")
        return 200, {"handoff_id": rec["handoff_id"], "outcome": outcome}

    def html(self):
        if self.off:
            return "<p class=\"muted\">Off: %s.</p>" % html.escape(self.off)
        st = self.switch.state()
        head = "<p>Mode <b>%s</b>; key %s; handoffs %d, statuses sent %d, acknowledged %d, " \
               "refused connections %d.</p>" % (html.escape(st["mode"]), html.escape(self.public),
                                                st["handoffs"], st["sent"], st["acked"],
                                                st["refused"])
        with self.lock:
            items = list(self.handoffs.values())[-50:]
        if not items:
            return head + "<p class=\"muted\">No handoffs yet.</p>"
        rows = "".join("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
            html.escape(r["handoff_id"]), html.escape(r["origin_code"]),
            html.escape(r["local_code"]),
            html.escape(", ".join(a["outcome"] + ("" if a["acked"] else " (unacked)")
                                  for a in r["answers"]))) for r in reversed(items))
        return head + "<table><tr><th>handoff</th><th>origin dossier</th><th>here</th>" \
                      "<th>answers</th></tr>%s</table>" % rows
