"""chat_webhook.py: a stand-in for a chat-app official-account API (Zalo OA style).

API (what notify is written against):
    POST /chat/send
    access_token: <token>
    {"recipient": {"phone": "+84912345678"}, "message": {"text": "..."}}
    -> 200 {"error": 0, "message": "Success", "data": {"message_id": "chat-<n>"}}
       200 {"error": -216, "message": "Access token is invalid"}   wrong or no token
       200 {"error": -201, "message": "Parameter ... is invalid"}  bad body
       503 while the outage switch says "down".
    Like the real API, failures of the call itself come back as HTTP 200 with a
    non-zero "error"; only an outage is an HTTP error.

Test controls:
    POST /control/chat {"mode": "ok" | "down"};  GET /control/chat -> mode, counters.
    GET /chat/messages (?phone= filters), DELETE /chat/messages.

The token is MOTCUA_SANDBOX_CHAT_TOKEN from the environment (default
"sandbox-chat-token"). Handlers run on the HTTP server's threads; mode and counters
are under one lock, the journal under its own.
"""

import hmac
import html
import os
import re

from standin import OutageSwitch, StandIn

E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
MAX_TEXT = 2000


class ChatWebhook(StandIn):
    name = "chat"
    noun = "chat"
    title = "Chat messages sent (Zalo OA style webhook)"
    CONTROL_BAD_JSON = "body is not UTF-8 JSON"
    CONTROL_BAD_MODE = "mode must be {modes}"
    ENDPOINTS = (
        "POST   /chat/send             send a chat message, header access_token",
        "GET    /chat/messages         messages accepted (?phone=+84... filters)",
        "DELETE /chat/messages         forget them (and empty chat.jsonl)",
        "GET    /control/chat          outage switch and counters",
        "POST   /control/chat          {\"mode\":\"ok\"|\"down\"}",
    )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.token = os.environ.get("MOTCUA_SANDBOX_CHAT_TOKEN", "sandbox-chat-token")
        self.switch = OutageSwitch(("ok", "down"), ("attempts", "accepted", "rejected"))
        self.routes = {
            ("POST", "/chat/send"): self.send,
            ("GET", "/chat/messages"): self.list,
            ("DELETE", "/chat/messages"): self.clear,
            ("GET", "/control/chat"): self.control_get,
            ("POST", "/control/chat"): self.control_set,
        }

    def route_error(self, code, message):
        return {"error": -1, "message": message}  # the chat API's own error shape

    def fail(self, status, code, message):
        """A refused send, in the chat API's shape: {"error": code, "message"}."""
        self.switch.count("rejected")
        self.log("info", "chat rejected", status=status, code=code, reason=message)
        return status, {"error": code, "message": message}

    def send(self, req):
        if self.switch.attempt() == "down":
            return self.fail(503, -32, "chat service is down (sandbox outage switch)")
        token = req.headers.get("access_token") or ""
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return self.fail(200, -216, "Access token is invalid")
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError):
            return self.fail(200, -201, "Body is not JSON")
        phone = (body.get("recipient") or {}).get("phone") if isinstance(body, dict) else None
        text = (body.get("message") or {}).get("text") if isinstance(body, dict) else None
        if not isinstance(phone, str) or not E164.match(phone):
            return self.fail(200, -201, "Parameter recipient.phone is invalid")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            return self.fail(200, -201, "Parameter message.text is invalid")
        rec = self.journal.append({"phone": phone, "text": text, "client": req.client})
        self.switch.count("accepted")
        self.log("info", "chat accepted", id=rec["id"], phone=phone)
        return 200, {"error": 0, "message": "Success", "data": {"message_id": rec["id"]}}

    def list(self, req):
        msgs = self.journal.list()
        phone = req.query.get("phone", [None])[0]
        if phone:
            msgs = [m for m in msgs if m["phone"] == phone]
        return 200, msgs

    def clear(self, req):
        return 200, {"deleted": self.journal.clear()}

    def html(self):
        st = self.switch.state()
        head = "<p>Mode: <b>%s</b>; attempts %d, accepted %d, rejected %d.</p>" % (
            html.escape(st["mode"]), st["attempts"], st["accepted"], st["rejected"])
        msgs = self.journal.list()
        if not msgs:
            return head + "<p class=\"muted\">No chat message yet.</p>"
        rows = [head, "<table><tr><th>id</th><th>received</th><th>phone</th><th>text</th></tr>"]
        for m in reversed(msgs):
            rows.append("<tr><td>%s</td><td>%s</td><td>%s</td><td><pre>%s</pre></td></tr>" % tuple(
                html.escape(str(v)) for v in (m.get("id"), m.get("received_at"), m.get("phone"),
                                               m.get("text"))))
        rows.append("</table>")
        return "".join(rows)
