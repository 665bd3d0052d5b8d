#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

Valid inputs only: an encoded Envelope of every body kind (with protoc's Python classes,
a second implementation of the wire format), a signed callback, a VNPay callback query,
a submission, a calendar file, configuration values, log lines. Run again after a
.proto change; files are named for what they hold, so a re-run only overwrites.
    python3 tests/fuzz/seed_corpus.py
"""
import hashlib
import hmac
import importlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---------------------------------------------------------------- envelopes

def fill(msg, depth=0):
    """Give every field of msg a plausible value (sub-messages to depth 2)."""
    from google.protobuf.descriptor import FieldDescriptor as F
    for f in msg.DESCRIPTOR.fields:
        if f.containing_oneof is not None:
            continue
        repeated = f.label == F.LABEL_REPEATED
        if f.type == F.TYPE_MESSAGE:
            if depth >= 2:
                continue
            if f.message_type.GetOptions().map_entry:
                value = f.message_type.fields_by_name["value"]
                if value.type == F.TYPE_MESSAGE:
                    fill(getattr(msg, f.name)["key"], depth + 1)
                elif value.type == F.TYPE_STRING:
                    getattr(msg, f.name)["key"] = "value"
                continue
            for _ in range(2 if repeated else 1):
                sub = getattr(msg, f.name).add() if repeated else getattr(msg, f.name)
                fill(sub, depth + 1)
            continue
        if f.type == F.TYPE_STRING:
            v = {"dossier_code": "H99.12-260101-0001", "code": "H99.12-260101-0001",
                 "phone": "0912345678", "id_number": "001203004567",
                 "message_id": "0f8fad5b-d9cb-469f-a165-70867728950e"}.get(f.name, f.name + "-x")
        elif f.type == F.TYPE_BOOL:
            v = True
        elif f.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            v = 1.5
        elif f.type == F.TYPE_ENUM:
            v = f.enum_type.values[-1].number
        elif f.type == F.TYPE_BYTES:
            v = b"\x00\x01bytes"
        else:
            big = f.type in (F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64)
            v = 1767225600000 if big and f.name.endswith("_ms") else 3
        if repeated:
            getattr(msg, f.name).append(v)
        else:
            setattr(msg, f.name, v)


def envelopes():
    out = tempfile.mkdtemp()
    proto = os.path.join(ROOT, "proto")
    subprocess.run(["protoc", "-I" + proto, "--python_out=" + out,
                    "motcua/envelope.proto", "motcua/events.proto"], check=True)
    sys.path.insert(0, out)
    Envelope = importlib.import_module("motcua.envelope_pb2").Envelope
    for body in Envelope.DESCRIPTOR.oneofs_by_name["body"].fields:
        env = Envelope()
        fill(env)
        env.type = body.message_type.name
        env.schema_version = 1
        fill(getattr(env, body.name))
        write("envelope", "body-" + body.name, env.SerializeToString())
    # Small and empty ones: the decoder's edges.
    write("envelope", "empty", b"")
    ack = Envelope(message_id="0f8fad5b-d9cb-469f-a165-70867728950e")
    ack.ack.message_id = ack.message_id
    write("envelope", "ack-only", ack.SerializeToString())


# ---------------------------------------------------------------- callbacks

def signed_callbacks():
    secret, body = "carrier-secret", json.dumps({"tracking": "EE123456789VN", "status": "delivered"})
    ts = str(int(time.time()))
    sig = hmac.new(secret.encode(), (ts + "." + body).encode(), hashlib.sha256).hexdigest()
    # Flag byte: 0 = headers as given (this timestamp will be stale), 1 = target signs.
    write("signed_callback", "good-stale", "\x00%s\n%s\n%s\ntrace-1\n%s" % (secret, ts, sig, body))
    write("signed_callback", "target-signs", "\x01%s\n\n\ntrace-2\n%s" % (secret, body))
    write("signed_callback", "no-headers", "\x00%s\n\n\n\n%s" % (secret, body))
    write("signed_callback", "bad-signature", "\x00%s\n%s\n%s\n\n%s" % (secret, ts, "0" * 64, body))


def vnpay():
    secret = "VNPAYSECRETFORTESTS"
    params = {"vnp_Amount": "15000000", "vnp_BankCode": "NCB", "vnp_BankTranNo": "VNP14226112",
              "vnp_CardType": "ATM", "vnp_OrderInfo": "Thanh toan le phi ho so H99.12-260101-0001",
              "vnp_PayDate": "20260101101010", "vnp_ResponseCode": "00", "vnp_TmnCode": "MOTCUA01",
              "vnp_TransactionNo": "14226112", "vnp_TransactionStatus": "00",
              "vnp_TxnRef": "K7M2Q9X4PZ3A"}
    enc = lambda s: urllib.parse.quote_plus(s, safe="-_.")
    data = "&".join("%s=%s" % (enc(k), enc(v)) for k, v in sorted(params.items()))
    h = hmac.new(secret.encode(), data.encode(), hashlib.sha512).hexdigest()
    write("vnpay", "ipn-good", "%s\n%s&vnp_SecureHashType=HmacSHA512&vnp_SecureHash=%s" % (secret, data, h))
    write("vnpay", "ipn-upper-hash", "%s\n%s&vnp_SecureHash=%s" % (secret, data, h.upper()))
    write("vnpay", "ipn-bad-hash", "%s\n%s&vnp_SecureHash=%s" % (secret, data, "ab" * 64))
    write("vnpay", "escapes", "s\nvnp_OrderInfo=a%20b+c%2%zz%41&vnp_TxnRef=&=x&&vnp_Amount")


# ---------------------------------------------------------------- bodies and files

def submissions():
    base = {"procedure": "1.001234", "channel": "online",
            "applicant": {"name": "Nguyễn Văn A", "id_number": "001203004567",
                          "phone": "+84912345678", "email": "a@example.vn", "address": "Hà Nội"},
            "documents": [{"kind": "form", "name": "to-khai.pdf", "sha256": "ab" * 32, "size": 1024}],
            "return_method": "post", "delivery_address": "12 Tràng Tiền, Hà Nội"}
    write("submission", "online", json.dumps(base, ensure_ascii=False))
    ref = dict(base, channel="direct", agency="H99.12",
               reference={"system": "province:H98", "id": "H98.1-260101-0002", "handoff_id": "h-1"})
    write("submission", "reference", json.dumps(ref, ensure_ascii=False))
    write("submission", "minimal", json.dumps({"procedure": "p", "channel": "postal",
                                               "applicant": {"name": "B"}}))


def calendars():
    csv = ("\ufeffdate,kind,name\n# Tết\n2026-02-16,holiday,\"Tết Nguyên Đán, 29 tháng Chạp\"\n"
           "2026-02-17,holiday,Tết\r\n2026-01-10,workday,Làm bù\n\n2026-09-02,holiday,Quốc khánh\n")
    head = struct.pack(">qq", 1767225600000, 480 * 3)
    write("calendar", "default-hours", head + b"\n15:00\n" + csv.encode())
    write("calendar", "own-hours", head + b"08:00-12:00,13:30-17:30\n\n" + csv.encode())
    write("calendar", "backwards", struct.pack(">qq", 1771200000000, -2000) + b"\n\ndate,kind,name\n")


def configs():
    write("config", "good", "intake\n42\n8080\nyes\nwarn\n")
    write("config", "bad-port", "x\n1\n70000\n")
    write("config", "bad-bool", "x\n-5\n1\nmaybe\nINFO\n")


def logs():
    write("log", "kv", "\x06trace-abc\nH99.12-260101-0001\nsubmitted by 0912345678 (CCCD 001203004567)")
    write("log", "json", "\xff0f8fad5b-d9cb-469f-a165-70867728950e\nH99 x\nquote \" and \\ and \x01")
    write("log", "newline", "\x02tr\nace\nline one\nline two")


if __name__ == "__main__":
    envelopes()
    signed_callbacks()
    vnpay()
    submissions()
    calendars()
    configs()
    logs()
