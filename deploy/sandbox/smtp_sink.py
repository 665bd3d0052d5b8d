"""smtp_sink.py: an SMTP server that accepts every message and keeps it for inspection.

It stands in for the province's mail relay: notify sends e-mail here (smtp://host:2525)
and tests read what arrived through GET /smtp/messages or <dir>/smtp.jsonl.

Design:
- Real SMTP (RFC 5321) on asyncio streams, one coroutine per connection: EHLO/HELO,
  MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, VRFY, HELP, QUIT, and
  AUTH PLAIN/LOGIN that accepts any credentials (so a client configured with a user
  and password works unchanged). EHLO advertises 8BITMIME, SMTPUTF8, SIZE,
  PIPELINING and AUTH; there is no STARTTLS. Commands are dispatched through the
  table in Session.COMMANDS, and out-of-order ones get 503 as a real relay would say.
- A message is accepted only after its final "." and answered "250 queued as
  smtp-<n>"; a client that disconnects mid-DATA leaves nothing behind.
- Each accepted message is stored with its envelope and raw data, and parsed: the
  Subject (and From/To) decoded from RFC 2047 into UTF-8, the text/plain and
  text/html bodies decoded from their Content-Transfer-Encoding and charset, and
  the list of attachments. A message that cannot be parsed is still stored, with
  parse_error set.
- The journal is shared with the HTTP threads; it has its own lock.
"""

import asyncio
import base64
import email
import email.policy
import html
import re

MAX_SIZE = 10 * 1024 * 1024  # largest message accepted (advertised as SIZE)
MAX_RECIPIENTS = 100
IDLE_TIMEOUT = 300  # seconds without a line before the session is dropped
LINE_LIMIT = 1 << 20  # longest line read; longer ones end the session
DOSSIER_CODE = re.compile(r"\b[0-9A-Z][0-9A-Z.]*-\d{8}-\d{4,}\b")

_ADDR = re.compile(r"^\s*<([^<>]*)>\s*(.*)$")


def parse_path(arg, keyword):
    """Parse 'FROM:<addr> PARAMS' (keyword 'FROM') into (addr, {param: value}),
    or return None when it is not well formed. Also accepts a bare address."""
    m = re.match(r"^\s*" + keyword + r"\s*:\s*(.*)$", arg, re.I)
    if not m:
        return None
    rest = m.group(1)
    am = _ADDR.match(rest)
    if am:
        addr, params = am.group(1), am.group(2)
    else:  # lenient: some clients omit the angle brackets
        parts = rest.split(None, 1)
        if not parts:
            return None
        addr, params = parts[0], parts[1] if len(parts) > 1 else ""
    out = {}
    for p in params.split():
        k, _, v = p.partition("=")
        out[k.upper()] = v
    return addr, out


def parse_message(raw):
    """Decode what a reader cares about from raw RFC 5322 bytes."""
    out = {"subject": "", "from": "", "to": "", "text": "", "html": "", "attachments": []}
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        for field, header in (("subject", "Subject"), ("from", "From"), ("to", "To"),
                              ("cc", "Cc"), ("message_id", "Message-ID"), ("date", "Date")):
            value = msg.get(header)
            if value is not None:
                out[field] = str(value)
        out["content_type"] = msg.get_content_type()
        for kind in ("plain", "html"):
            part = msg.get_body(preferencelist=(kind,))
            if part is not None:
                out["text" if kind == "plain" else "html"] = body_text(part)
        for part in msg.iter_attachments() if msg.is_multipart() else ():
            payload = part.get_payload(decode=True) or b""
            out["attachments"].append({"filename": part.get_filename() or "",
                                       "content_type": part.get_content_type(),
                                       "size": len(payload)})
        if msg.defects:
            out["defects"] = [type(d).__name__ for d in msg.defects]
    except Exception as e:  # a sink keeps what it cannot read, and says why
        out["parse_error"] = repr(e)
    return out


def body_text(part):
    try:
        text = part.get_content()
    except (LookupError, UnicodeError):  # unknown or lying charset
        text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.replace("\r\n", "\n")


class Session:
    """One SMTP connection."""

    def __init__(self, sink, reader, writer):
        self.sink = sink
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = "%s:%s" % (peer[0], peer[1])
        self.helo = None
        self.auth_user = None
        self.reset()

    def reset(self):
        self.mail_from = None
        self.rcpt_to = []
        self.params = {}

    async def send(self, line):
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()

    async def readline(self):
        line = await asyncio.wait_for(self.reader.readline(), IDLE_TIMEOUT)
        return line

    async def run(self):
        try:
            await self.send("220 %s ESMTP motcua sandbox ready" % self.sink.hostname)
            while True:
                try:
                    line = await self.readline()
                except asyncio.TimeoutError:
                    await self.send("421 4.4.2 idle too long, closing")
                    return
                except ValueError:  # longer than LINE_LIMIT
                    await self.send("500 5.5.2 line too long")
                    return
                if not line:
                    return
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                verb, _, arg = text.partition(" ")
                handler = self.COMMANDS.get(verb.upper())
                if handler is None:
                    await self.send("500 5.5.1 command not recognized")
                    continue
                if await handler(self, arg.strip()) is False:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.TimeoutError:  # idle in DATA or AUTH
            try:
                await self.send("421 4.4.2 idle too long, closing")
            except Exception:
                pass
        except ValueError:  # a DATA or AUTH line longer than LINE_LIMIT
            try:
                await self.send("500 5.5.2 line too long")
            except Exception:
                pass
        except asyncio.CancelledError:  # sandbox stopping
            try:
                await self.send("421 4.3.2 sandbox shutting down")
            except Exception:
                pass
            raise
        finally:
            self.writer.close()

    # ---- commands ----
    async def cmd_helo(self, arg):
        if not arg:
            return await self.send("501 5.5.4 HELO needs a domain")
        self.helo = arg
        self.reset()
        await self.send("250 %s" % self.sink.hostname)

    async def cmd_ehlo(self, arg):
        if not arg:
            return await self.send("501 5.5.4 EHLO needs a domain")
        self.helo = arg
        self.reset()
        await self.send("250-%s greets %s" % (self.sink.hostname, arg))
        for ext in ("8BITMIME", "SMTPUTF8", "PIPELINING", "SIZE %d" % MAX_SIZE,
                    "AUTH PLAIN LOGIN", "ENHANCEDSTATUSCODES"):
            await self.send("250-" + ext)
        await self.send("250 HELP")

    async def cmd_mail(self, arg):
        if self.mail_from is not None:
            return await self.send("503 5.5.1 nested MAIL command")
        parsed = parse_path(arg, "FROM")
        if parsed is None:
            return await self.send("501 5.5.4 syntax: MAIL FROM:<address>")
        addr, params = parsed
        body = params.get("BODY", "7BIT").upper()
        if body not in ("7BIT", "8BITMIME"):
            return await self.send("555 5.5.4 BODY=%s not supported" % body)
        size = params.get("SIZE")
        if size is not None:
            if not size.isdigit():
                return await self.send("501 5.5.4 bad SIZE")
            if int(size) > MAX_SIZE:
                return await self.send("552 5.3.4 message larger than %d bytes" % MAX_SIZE)
        self.mail_from = addr
        self.params = params
        await self.send("250 2.1.0 sender ok")

    async def cmd_rcpt(self, arg):
        if self.mail_from is None:
            return await self.send("503 5.5.1 need MAIL before RCPT")
        parsed = parse_path(arg, "TO")
        if parsed is None or not parsed[0]:
            return await self.send("501 5.5.4 syntax: RCPT TO:<address>")
        if len(self.rcpt_to) >= MAX_RECIPIENTS:
            return await self.send("452 4.5.3 too many recipients")
        self.rcpt_to.append(parsed[0])
        await self.send("250 2.1.5 recipient ok")

    async def cmd_data(self, arg):
        if self.mail_from is None:
            return await self.send("503 5.5.1 need MAIL before DATA")
        if not self.rcpt_to:
            return await self.send("503 5.5.1 need RCPT before DATA")
        await self.send("354 end data with <CR><LF>.<CR><LF>")
        chunks, size, too_big = [], 0, False
        while True:
            line = await self.readline()
            if not line:  # disconnected mid-message: nothing is kept
                return False
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):  # dot-unstuffing (RFC 5321 4.5.2)
                line = line[1:]
            size += len(line)
            if size > MAX_SIZE:
                too_big = True
                chunks = []
            elif not too_big:
                chunks.append(line)
        if too_big:
            self.reset()
            return await self.send("552 5.3.4 message larger than %d bytes" % MAX_SIZE)
        rec = self.sink.store(self, b"".join(chunks))
        self.reset()
        await self.send("250 2.0.0 ok: queued as %s" % rec["id"])

    async def cmd_rset(self, arg):
        self.reset()
        await self.send("250 2.0.0 ok")

    async def cmd_noop(self, arg):
        await self.send("250 2.0.0 ok")

    async def cmd_vrfy(self, arg):
        await self.send("252 2.1.5 cannot verify, but will accept")

    async def cmd_help(self, arg):
        await self.send("214 2.0.0 commands: " + " ".join(sorted(self.COMMANDS)))

    async def cmd_quit(self, arg):
        await self.send("221 2.0.0 bye")
        return False

    async def cmd_starttls(self, arg):
        await self.send("502 5.5.1 no TLS in the sandbox; use plain smtp://")

    async def cmd_auth(self, arg):
        """Accept any credentials: the sandbox checks the protocol, not the secret."""
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        if self.auth_user is not None:
            return await self.send("503 5.5.1 already authenticated")
        if self.mail_from is not None:
            return await self.send("503 5.5.1 AUTH not allowed during a transaction")
        try:
            if mech == "PLAIN":
                if not initial:
                    await self.send("334 ")
                    initial = await self.auth_line()
                fields = base64.b64decode(initial, validate=True).split(b"\0")
                if len(fields) != 3:
                    raise ValueError("PLAIN needs authzid\\0user\\0password")
                user = fields[1]
            elif mech == "LOGIN":
                if initial:
                    user = base64.b64decode(initial, validate=True)
                else:
                    await self.send("334 VXNlcm5hbWU6")  # "Username:"
                    user = base64.b64decode(await self.auth_line(), validate=True)
                await self.send("334 UGFzc3dvcmQ6")  # "Password:"
                base64.b64decode(await self.auth_line(), validate=True)
            else:
                return await self.send("504 5.5.4 mechanism not supported (PLAIN, LOGIN)")
        except _AuthCancelled:
            return await self.send("501 5.7.0 authentication cancelled")
        except ValueError:  # binascii.Error is a ValueError
            return await self.send("501 5.5.2 cannot decode the response")
        self.auth_user = user.decode("utf-8", "replace")
        await self.send("235 2.7.0 authentication succeeded")

    async def auth_line(self):
        line = (await self.readline()).decode("ascii", "replace").strip()
        if line == "*":
            raise _AuthCancelled()
        return line

    COMMANDS = {
        "HELO": cmd_helo, "EHLO": cmd_ehlo, "MAIL": cmd_mail, "RCPT": cmd_rcpt,
        "DATA": cmd_data, "RSET": cmd_rset, "NOOP": cmd_noop, "VRFY": cmd_vrfy,
        "HELP": cmd_help, "QUIT": cmd_quit, "STARTTLS": cmd_starttls, "AUTH": cmd_auth,
    }


class _AuthCancelled(Exception):
    pass


class SmtpSink:
    """The SMTP stand-in: a listener of its own plus /smtp/... on the HTTP server."""

    name = "smtp"
    title = "E-mail received (SMTP sink)"
    ENDPOINTS = (
        "GET    /smtp/messages         e-mails received, oldest first (?to=address filters)",
        "GET    /smtp/messages/<id>    one e-mail",
        "DELETE /smtp/messages         forget them (and empty smtp.jsonl)",
    )

    def __init__(self, ctx):
        self.log = ctx.log
        self.host = ctx.config["MOTCUA_SANDBOX_HOST"]
        self.port = int(ctx.config["MOTCUA_SANDBOX_SMTP_PORT"])
        self.hostname = "sandbox.motcua.local"
        self.journal = ctx.journal(self.name)
        self.server = None
        self.tasks = set()

    # ---- listener ----
    async def start(self):
        self.server = await asyncio.start_server(self.accept, self.host, self.port, limit=LINE_LIMIT)
        self.port = self.server.sockets[0].getsockname()[1]

    async def accept(self, reader, writer):
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            await Session(self, reader, writer).run()
        except asyncio.CancelledError:
            pass
        finally:
            self.tasks.discard(task)

    async def stop(self):
        if self.server is None:
            return
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=2)
        try:
            await asyncio.wait_for(self.server.wait_closed(), 2)
        except asyncio.TimeoutError:
            pass

    def describe(self):
        return {"smtp_port": self.port}

    def store(self, session, raw):
        rec = {"peer": session.peer, "helo": session.helo, "mail_from": session.mail_from,
               "rcpt_to": list(session.rcpt_to), "size": len(raw)}
        if session.auth_user is not None:
            rec["auth_user"] = session.auth_user
        if "BODY" in session.params:
            rec["body_type"] = session.params["BODY"].upper()
        if "SMTPUTF8" in session.params:
            rec["smtputf8"] = True
        rec.update(parse_message(raw))
        rec["data"] = raw.decode("utf-8", "replace")
        rec = self.journal.append(rec)
        m = DOSSIER_CODE.search(rec.get("subject", "") + " " + rec.get("text", ""))
        self.log("info", "smtp message", id=rec["id"], mail_from=rec["mail_from"],
                 rcpt=",".join(rec["rcpt_to"]), size=rec["size"],
                 subject=rec.get("subject", ""), dossier=m.group(0) if m else None)
        return rec

    # ---- HTTP ----
    def handle(self, req):
        path = req.path.rstrip("/")
        if path == "/smtp/messages":
            if req.method in ("GET", "HEAD"):
                msgs = self.journal.list()
                to = req.query.get("to", [None])[0]
                if to:
                    msgs = [m for m in msgs if any(r.lower() == to.lower() for r in m["rcpt_to"])]
                return 200, msgs
            if req.method == "DELETE":
                n = self.journal.clear()
                self.log("info", "smtp messages cleared", count=n)
                return 200, {"deleted": n}
            return 405, _error("method_not_allowed", "use GET or DELETE"), {"Allow": "GET, HEAD, DELETE"}
        if path.startswith("/smtp/messages/"):
            if req.method not in ("GET", "HEAD"):
                return 405, _error("method_not_allowed", "use GET"), {"Allow": "GET, HEAD"}
            want = path.rsplit("/", 1)[1]
            for m in self.journal.list():
                if m["id"] == want:
                    return 200, m
            return 404, _error("not_found", "no message %s" % want)
        return 404, _error("not_found", "no such SMTP endpoint %s" % req.path)

    def html(self):
        msgs = self.journal.list()
        head = ("<p>SMTP on port %d; JSON: <a href=\"/smtp/messages\">/smtp/messages</a>.</p>"
                % self.port)
        if not msgs:
            return head + "<p class=\"muted\">No e-mail yet.</p>"
        rows = [head, "<table><tr><th>id</th><th>received</th><th>from</th><th>to</th>"
                "<th>subject</th><th>text</th></tr>"]
        for m in reversed(msgs):
            text = m.get("text") or m.get("html") or m.get("parse_error", "")
            rows.append("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                        "<td><pre>%s</pre></td></tr>" % tuple(html.escape(str(v)) for v in (
                            m.get("id"), m.get("received_at"), m.get("mail_from"),
                            ", ".join(m.get("rcpt_to", [])), m.get("subject", ""),
                            text[:2000])))
        rows.append("</table>")
        return "".join(rows)


def _error(code, message, field=None):
    err = {"code": code, "message": message}
    if field:
        err["field"] = field
    return {"error": err}
