"""bank_gateway.py: a stand-in for the bank payment gateway (VNPay 2.1.0 style) payment calls.

API (what payment is written against, docs/payment.md):
    GET  /vnpay/pay?vnp_...&vnp_SecureHash=...
        the page the applicant is sent to: the signature is checked (HMAC-SHA512 over the
        sorted, URL-encoded parameters, secret MOTCUA_VNPAY_SECRET) and a page shows the
        order with three buttons: Pay, Cancel, Fail. A bad signature or a missing
        parameter answers 400 with a page saying so (as VNPay shows "Sai chữ ký").
    POST /vnpay/act  (form or JSON; GET with the same query for tests)
        txn=<vnp_TxnRef>  outcome=paid|cancel|fail  [response=NN]  [late_ms=N]  [repeat=N]
        [amount=VND×100 to send instead of the order's]  [sign=bad]
        what the applicant did. The gateway calls the IPN URL (MOTCUA_PAYMENT_IPN_URL)
        server to server with signed vnp_* parameters, `repeat` times (default 1), after
        `late_ms` (then in the background: the answer does not wait), and answers 302 to
        the merchant's vnp_ReturnUrl with the same parameters, as the real gateway does.
        The answer's X-Ipn-Replies header lists the IPN answers received (when not late).
    GET  /vnpay/transactions
        what the gateway did, oldest first: one record per order shown, per IPN call
        with the merchant's answer, per transaction (payment or refund).
    GET  /vnpay/transactions?vnp_TmnCode=&date=yyyyMMdd&txn=&vnp_SecureHash=
        the merchant's signed transaction list (reconciliation, refund checks):
        vnp_SecureHash = HMAC-SHA512(secret, "TmnCode|date|txn"), either filter may be
        empty (both empty: everything). Answers {"transactions": [{vnp_TxnRef,
        vnp_Amount, vnp_TransactionNo, vnp_TransactionType (01 payment, 02 full refund),
        vnp_TransactionStatus (00 success), vnp_PayDate, vnp_BankCode}]}, the day being
        that of vnp_PayDate (Asia/Ho_Chi_Minh). Bad hash: 403 {"RspCode": "97"}.
    POST /vnpay/transactions  {txn, amount (VND), [type 01|02], [status], [pay_date]}
        tests: a transaction the gateway made that the merchant never heard of.
    DELETE /vnpay/transactions
        forget them.
    POST /vnpay/api  (JSON, VNPay's merchant API)
        vnp_Command "refund": fields vnp_RequestId, vnp_Version, vnp_Command, vnp_TmnCode,
        vnp_TransactionType (02 full, 03 partial), vnp_TxnRef, vnp_Amount,
        vnp_TransactionNo, vnp_TransactionDate, vnp_CreateBy, vnp_CreateDate, vnp_IpAddr,
        vnp_OrderInfo, vnp_SecureHash = HMAC-SHA512 of those values joined by "|" in
        that order. Answers vnp_ResponseCode 00 refunded; 94 duplicate (the RequestId
        was seen, or the payment is already refunded); 91 no such paid transaction;
        93 amount larger than paid; 97 bad hash; 03 malformed. The answer is signed with
        ResponseId|Command|ResponseCode|Message|TmnCode|TxnRef|Amount|BankCode|PayDate|
        TransactionNo|TransactionType|TransactionStatus|OrderInfo.
        vnp_Command "querydr": the transactions of vnp_TxnRef (unsigned answer list).
    GET|POST /vnpay/control  {"mode": "ok" | "down" | "forge"}
        the API's switch: down answers 503; forge does what is asked but signs every
        answer with the wrong key (a forged answer). GET shows the mode and counters.

Outcomes: paid → vnp_ResponseCode 00, vnp_TransactionStatus 00; cancel → 24 / 02;
fail → 51 (insufficient balance) / 02, or `response` if given.

Design: handlers run on the HTTP server's threads; a late IPN runs on a thread of its
own. Orders seen on /vnpay/pay are kept in memory under a lock (and in the journal).
"""

import hashlib
import hmac
import html
import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from standin import OutageSwitch, StandIn, error_body as _error

DEFAULT_SECRET = "MOTCUASANDBOXSECRET"
DEFAULT_IPN_URL = "http://127.0.0.1:8083/v1/payments/ipn"
REQUIRED = ("vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_Amount", "vnp_CurrCode",
            "vnp_TxnRef", "vnp_OrderInfo", "vnp_ReturnUrl", "vnp_CreateDate", "vnp_ExpireDate")
SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
OUTCOMES = {"paid": ("00", "00"), "cancel": ("24", "02"), "fail": ("51", "02")}
BANKS = ("NCB", "VCB", "TCB", "BIDV", "VIETINBANK")


def urlencode(s):
    """application/x-www-form-urlencoded as VNPay merchants encode: letters, digits and
    -_. stay, a space becomes +, every other byte of the UTF-8 text is %XX."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in SAFE:
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def hash_data(params):
    """The signed text: vnp_SecureHash(Type) left out, empty values left out, sorted by key."""
    items = sorted((k, v) for k, v in params.items()
                   if k not in ("vnp_SecureHash", "vnp_SecureHashType") and v != "")
    return "&".join("%s=%s" % (urlencode(k), urlencode(v)) for k, v in items)


def sign(secret, params):
    return hmac.new(secret.encode("utf-8"), hash_data(params).encode("utf-8"),
                    hashlib.sha512).hexdigest()


def signed_query(secret, params):
    return hash_data(params) + "&vnp_SecureHash=" + sign(secret, params)


def vn_now():
    """yyyyMMddHHmmss in Asia/Ho_Chi_Minh (UTC+7)."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() + 7 * 3600))


def _page(title, body, status=200):
    text = ("<!DOCTYPE html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\">"
            "<title>%s</title></head><body><h1>%s</h1>%s</body></html>\n"
            % (html.escape(title), html.escape(title), body))
    return status, text, {"Content-Type": "text/html; charset=utf-8"}


class BankGateway(StandIn):
    name = "vnpay"
    noun = "gateway"
    title = "Bank gateway (VNPay style)"
    ENDPOINTS = (
        "GET    /vnpay/pay             payment page (signed vnp_* query): Pay / Cancel / Fail",
        "POST   /vnpay/act             txn=&outcome=paid|cancel|fail[&late_ms=&repeat=&response=]",
        "GET    /vnpay/transactions    orders shown and IPN calls made, oldest first",
        "GET    /vnpay/transactions?vnp_TmnCode=&date=&txn=&vnp_SecureHash=  signed list",
        "POST   /vnpay/api             merchant API: vnp_Command refund | querydr",
        "POST   /vnpay/control         {\"mode\":\"ok\"|\"down\"|\"forge\"}",
        "DELETE /vnpay/transactions    forget them",
    )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.secret = os.environ.get("MOTCUA_VNPAY_SECRET", DEFAULT_SECRET)
        self.ipn_url = os.environ.get("MOTCUA_PAYMENT_IPN_URL", DEFAULT_IPN_URL)
        self.orders = {}  # vnp_TxnRef -> the verified request parameters
        self.transactions = []  # what the gateway did with money, oldest first
        self.request_ids = set()  # vnp_RequestId of API calls seen
        self.switch = OutageSwitch(("ok", "down", "forge"),
                                   ("api_calls", "refunds", "duplicates", "lists"))
        self.next_txn = random.randint(14000000, 14999999)
        for rec in self.journal.list():  # a restarted sandbox still knows its orders
            if rec.get("kind") == "order":
                self.orders[rec["params"]["vnp_TxnRef"]] = rec["params"]
            elif rec.get("kind") == "transaction":
                self.transactions.append(rec["transaction"])
                if rec.get("request_id"):
                    self.request_ids.add(rec["request_id"])
        self.routes = {
            ("GET", "/vnpay/pay"): self.pay,
            ("POST", "/vnpay/act"): self.act,
            ("GET", "/vnpay/act"): self.act,
            ("GET", "/vnpay/transactions"): self.list,
            ("POST", "/vnpay/transactions"): self.inject,
            ("DELETE", "/vnpay/transactions"): self.clear,
            ("POST", "/vnpay/api"): self.api,
            ("GET", "/vnpay/control"): self.control_get,
            ("POST", "/vnpay/control"): self.control_set,
        }

    def describe(self):
        return {"vnpay_ipn": self.ipn_url}

    # ---- the payment page ----
    def pay(self, req):
        params = {k: v[0] for k, v in req.query.items()}
        missing = [k for k in REQUIRED if not params.get(k)]
        if missing:
            return _page("Dữ liệu không hợp lệ", "<p>Thiếu tham số: %s</p>"
                         % html.escape(", ".join(missing)), 400)
        got = params.get("vnp_SecureHash", "").lower()
        if not hmac.compare_digest(got, sign(self.secret, params)):
            self.log("warn", "vnpay: bad signature on pay", txn=params["vnp_TxnRef"])
            return _page("Sai chữ ký", "<p>Chữ ký không hợp lệ (vnp_SecureHash).</p>", 400)
        if not params["vnp_Amount"].isdigit() or params["vnp_Command"] != "pay":
            return _page("Dữ liệu không hợp lệ", "<p>Số tiền hoặc lệnh không hợp lệ.</p>", 400)
        txn = params["vnp_TxnRef"]
        with self.lock:
            self.orders[txn] = params
        self.journal.append({"kind": "order", "txn": txn, "params": params})
        self.log("info", "vnpay: order shown", txn=txn, amount=params["vnp_Amount"])
        amount = int(params["vnp_Amount"]) // 100
        form = "".join(
            "<form method=\"post\" action=\"/vnpay/act\" style=\"display:inline\">"
            "<input type=\"hidden\" name=\"txn\" value=\"%s\">"
            "<input type=\"hidden\" name=\"outcome\" value=\"%s\">"
            "<button type=\"submit\">%s</button></form> " % (html.escape(txn), o, label)
            for o, label in (("paid", "Thanh toán (Pay)"), ("cancel", "Hủy (Cancel)"),
                             ("fail", "Lỗi (Fail)")))
        body = ("<p>%s</p><p>Mã giao dịch: %s &middot; Số tiền: %s đồng</p>%s"
                % (html.escape(params["vnp_OrderInfo"]), html.escape(txn),
                   "{:,}".format(amount).replace(",", "."), form))
        return _page("Cổng thanh toán (sandbox)", body)

    # ---- what the applicant did ----
    def act(self, req):
        fields = {k: v[0] for k, v in req.query.items()}
        if req.method == "POST" and req.body:
            ctype = req.headers.get("Content-Type", "")
            try:
                if "json" in ctype:
                    fields.update({k: str(v) for k, v in req.json().items()})
                else:
                    fields.update({k: v[0] for k, v in
                                   urllib.parse.parse_qs(req.body.decode("utf-8")).items()})
            except (ValueError, UnicodeDecodeError, AttributeError) as e:
                return 400, _error("bad_request", "unreadable body: %s" % e)
        txn, outcome = fields.get("txn", ""), fields.get("outcome", "")
        with self.lock:
            order = self.orders.get(txn)
            self.next_txn += 1
            bank_txn = str(self.next_txn)
        if order is None:
            return 404, _error("not_found", "no order %r was shown on /vnpay/pay" % txn, "txn")
        if outcome not in OUTCOMES:
            return 400, _error("invalid", "outcome must be paid, cancel or fail", "outcome")
        try:
            late_ms = int(fields.get("late_ms", "0"))
            repeat = int(fields.get("repeat", "1"))
        except ValueError:
            return 400, _error("invalid", "late_ms and repeat are integers")
        if not (0 <= late_ms <= 600000 and 1 <= repeat <= 50):
            return 400, _error("invalid", "late_ms 0..600000, repeat 1..50")
        response, status = OUTCOMES[outcome]
        if outcome != "paid" and fields.get("response"):
            response = fields["response"]
        result = {
            "vnp_TmnCode": order["vnp_TmnCode"],
            "vnp_Amount": fields.get("amount") or order["vnp_Amount"],
            "vnp_BankCode": random.choice(BANKS) if outcome == "paid" else "NCB",
            "vnp_BankTranNo": "VNP" + bank_txn if outcome == "paid" else "",
            "vnp_CardType": "ATM",
            "vnp_OrderInfo": order["vnp_OrderInfo"],
            "vnp_PayDate": vn_now(),
            "vnp_ResponseCode": response,
            "vnp_TransactionNo": bank_txn if outcome == "paid" else "0",
            "vnp_TransactionStatus": status,
            "vnp_TxnRef": txn,
        }
        with self.lock:
            already = any(t["vnp_TxnRef"] == txn and t["vnp_TransactionType"] == "01"
                          and t["vnp_TransactionStatus"] == "00" for t in self.transactions)
        if not already:  # the same order is not paid twice at the gateway
            self._record({"vnp_TxnRef": txn, "vnp_Amount": result["vnp_Amount"],
                          "vnp_TransactionNo": result["vnp_TransactionNo"],
                          "vnp_TransactionType": "01", "vnp_TransactionStatus": status,
                          "vnp_PayDate": result["vnp_PayDate"],
                          "vnp_BankCode": result["vnp_BankCode"]})
        query = signed_query(self.secret, result)
        if fields.get("sign") == "bad":
            query = query[:-4] + ("0000" if not query.endswith("0000") else "1111")
        if late_ms:
            threading.Thread(target=self._ipn_later, args=(query, late_ms, repeat, txn),
                             daemon=True).start()
            replies = []
        else:
            replies = [self._ipn(query, txn) for _ in range(repeat)]
        return_url = order["vnp_ReturnUrl"] + ("&" if "?" in order["vnp_ReturnUrl"] else "?") + query
        headers = {"Location": return_url, "X-Ipn-Replies": json.dumps(replies)}
        return 302, "", headers

    def _ipn_later(self, query, late_ms, repeat, txn):
        time.sleep(late_ms / 1000.0)
        for _ in range(repeat):
            self._ipn(query, txn)

    def _ipn(self, query, txn):
        url = self.ipn_url + "?" + query
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                answer = r.read().decode("utf-8", "replace")
                status = r.status
        except urllib.error.HTTPError as e:
            answer, status = e.read().decode("utf-8", "replace"), e.code
        except OSError as e:
            answer, status = str(e), 0
        try:
            rsp = json.loads(answer).get("RspCode")
        except (ValueError, AttributeError):
            rsp = None
        self.journal.append({"kind": "ipn", "txn": txn, "query": query, "http_status": status,
                             "answer": answer, "rsp_code": rsp})
        self.log("info", "vnpay: ipn sent", txn=txn, status=status, rsp=rsp)
        return {"status": status, "RspCode": rsp}

    def _record(self, t, request_id=None):
        with self.lock:
            self.transactions.append(t)
            if request_id:
                self.request_ids.add(request_id)
        self.journal.append({"kind": "transaction", "txn": t["vnp_TxnRef"], "transaction": t,
                             "request_id": request_id})

    # ---- the merchant API: refund, querydr ----
    def _answer(self, fields):
        order = ("vnp_ResponseId", "vnp_Command", "vnp_ResponseCode", "vnp_Message",
                 "vnp_TmnCode", "vnp_TxnRef", "vnp_Amount", "vnp_BankCode", "vnp_PayDate",
                 "vnp_TransactionNo", "vnp_TransactionType", "vnp_TransactionStatus",
                 "vnp_OrderInfo")
        out = {k: str(fields.get(k, "")) for k in order}
        out["vnp_ResponseId"] = out["vnp_ResponseId"] or "%032x" % random.getrandbits(128)
        data = "|".join(out[k] for k in order)
        secret = "NOT-THE-SECRET" if self.switch.current() == "forge" else self.secret
        out["vnp_SecureHash"] = hmac.new(secret.encode("utf-8"),
                                         data.encode("utf-8"), hashlib.sha512).hexdigest()
        return 200, out

    def api(self, req):
        if self.switch.attempt("api_calls") == "down":
            self.log("info", "vnpay: api down (sandbox outage switch)")
            return 503, _error("unavailable", "gateway API is down (sandbox outage switch)"), \
                {"Retry-After": "1"}
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return self._answer({"vnp_ResponseCode": "03", "vnp_Message": "Invalid data format"})
        body = {k: str(v) for k, v in body.items()}
        command = body.get("vnp_Command", "")
        if command == "querydr":
            with self.lock:
                ts = [dict(t) for t in self.transactions if t["vnp_TxnRef"] == body.get("vnp_TxnRef")]
            return 200, {"vnp_ResponseCode": "00", "vnp_Command": "querydr", "transactions": ts}
        if command != "refund":
            return self._answer({"vnp_ResponseCode": "03", "vnp_Command": command,
                                 "vnp_Message": "Unknown command"})
        keys = ("vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode",
                "vnp_TransactionType", "vnp_TxnRef", "vnp_Amount", "vnp_TransactionNo",
                "vnp_TransactionDate", "vnp_CreateBy", "vnp_CreateDate", "vnp_IpAddr",
                "vnp_OrderInfo")
        base = {"vnp_Command": "refund", "vnp_TmnCode": body.get("vnp_TmnCode", ""),
                "vnp_TxnRef": body.get("vnp_TxnRef", ""), "vnp_Amount": body.get("vnp_Amount", ""),
                "vnp_OrderInfo": body.get("vnp_OrderInfo", ""),
                "vnp_TransactionType": body.get("vnp_TransactionType", "")}
        want = hmac.new(self.secret.encode("utf-8"),
                        "|".join(body.get(k, "") for k in keys).encode("utf-8"),
                        hashlib.sha512).hexdigest()
        if not hmac.compare_digest(body.get("vnp_SecureHash", "").lower(), want):
            self.log("warn", "vnpay: bad signature on refund", txn=base["vnp_TxnRef"])
            return self._answer(dict(base, vnp_ResponseCode="97", vnp_Message="Invalid checksum"))
        if not body.get("vnp_Amount", "").isdigit() or \
                body.get("vnp_TransactionType") not in ("02", "03"):
            return self._answer(dict(base, vnp_ResponseCode="03", vnp_Message="Invalid data format"))
        txn, rid = body["vnp_TxnRef"], body["vnp_RequestId"]
        with self.lock:
            paid = [t for t in self.transactions if t["vnp_TxnRef"] == txn
                    and t["vnp_TransactionType"] == "01" and t["vnp_TransactionStatus"] == "00"]
            refunded = any(t["vnp_TxnRef"] == txn and t["vnp_TransactionType"] in ("02", "03")
                           for t in self.transactions)
            duplicate = rid in self.request_ids or refunded
            if duplicate:
                self.switch.count("duplicates")
            self.next_txn += 1
            refund_no = str(self.next_txn)
        if duplicate:
            self.log("info", "vnpay: duplicate refund request", txn=txn, request_id=rid)
            return self._answer(dict(base, vnp_ResponseCode="94",
                                     vnp_Message="Duplicate request"))
        if not paid:
            return self._answer(dict(base, vnp_ResponseCode="91",
                                     vnp_Message="Transaction not found"))
        if int(body["vnp_Amount"]) > int(paid[0]["vnp_Amount"]):
            return self._answer(dict(base, vnp_ResponseCode="93", vnp_Message="Invalid amount"))
        t = {"vnp_TxnRef": txn, "vnp_Amount": body["vnp_Amount"], "vnp_TransactionNo": refund_no,
             "vnp_TransactionType": body["vnp_TransactionType"], "vnp_TransactionStatus": "00",
             "vnp_PayDate": vn_now(), "vnp_BankCode": paid[0].get("vnp_BankCode", "NCB"),
             "vnp_RequestId": rid}
        self._record(t, rid)
        self.switch.count("refunds")
        self.log("info", "vnpay: refunded", txn=txn, amount=body["vnp_Amount"], request_id=rid)
        return self._answer(dict(base, vnp_ResponseCode="00", vnp_Message="Refund success",
                                 vnp_BankCode=t["vnp_BankCode"], vnp_PayDate=t["vnp_PayDate"],
                                 vnp_TransactionNo=refund_no, vnp_TransactionStatus="00"))

    def control_set(self, req):
        """The API's switch, from the query and/or a JSON body (the mode alone)."""
        fields = {k: v[0] for k, v in req.query.items()}
        if req.method == "POST" and req.body:
            try:
                fields.update(req.json())
            except (ValueError, UnicodeDecodeError, AttributeError) as e:
                return 400, _error("bad_json", "body is not JSON: %s" % e)
        if fields.get("mode") not in self.switch.modes:
            return 400, _error("invalid", "mode must be ok|down|forge", "mode")
        state = self.switch.set(fields["mode"])
        self.log("info", "vnpay: api mode", mode=state["mode"])
        return 200, state

    # ---- inspection ----
    def list(self, req):
        q = {k: v[0] for k, v in req.query.items()}
        if "vnp_SecureHash" not in q:
            return 200, {"transactions": self.journal.list()}
        day, txn = q.get("date", ""), q.get("txn", "")
        want = hmac.new(self.secret.encode("utf-8"),
                        "|".join((q.get("vnp_TmnCode", ""), day, txn)).encode("utf-8"),
                        hashlib.sha512).hexdigest()
        if not hmac.compare_digest(q["vnp_SecureHash"].lower(), want):
            return 403, {"RspCode": "97", "Message": "Invalid signature"}
        self.switch.count("lists")
        with self.lock:
            ts = [dict(t) for t in self.transactions
                  if (not day or t["vnp_PayDate"][:8] == day) and (not txn or t["vnp_TxnRef"] == txn)]
        return 200, {"transactions": ts}

    def inject(self, req):
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError) as e:
            return 400, _error("bad_json", "body is not JSON: %s" % e)
        if not isinstance(body, dict) or not body.get("txn") or \
                not isinstance(body.get("amount"), int):
            return 400, _error("invalid", "txn (text) and amount (VND, integer) are required")
        with self.lock:
            self.next_txn += 1
            no = str(self.next_txn)
        t = {"vnp_TxnRef": body["txn"], "vnp_Amount": str(body["amount"] * 100),
             "vnp_TransactionNo": no, "vnp_TransactionType": body.get("type", "01"),
             "vnp_TransactionStatus": body.get("status", "00"),
             "vnp_PayDate": body.get("pay_date") or vn_now(), "vnp_BankCode": "NCB"}
        self._record(t)
        return 201, t

    def clear(self, req):
        with self.lock:
            self.orders.clear()
            self.transactions.clear()
            self.request_ids.clear()
        return 200, {"deleted": self.journal.clear()}

    def html(self):
        rows = []
        for rec in reversed(self.journal.list()[-50:]):
            what = ("order %s" % rec.get("txn")) if rec.get("kind") == "order" else \
                ("IPN %s → %s" % (rec.get("txn"), rec.get("rsp_code")))
            rows.append("<tr><td>%s</td><td>%s</td></tr>"
                        % (html.escape(str(rec.get("received_at"))), html.escape(what)))
        if not rows:
            return "<p class=\"muted\">Nothing yet.</p>"
        return "<table><tr><th>at</th><th>what</th></tr>%s</table>" % "".join(rows)
