#!/usr/bin/env python3
"""A real SMTP server for trialwatch's delivery tests, built on aiosmtpd.

It speaks SMTP with STARTTLS (or implicit TLS, or plain) and AUTH PLAIN/LOGIN to the code under
test, and saves every accepted message so the test can parse what a mail server really got.
It does not relay anything anywhere.

Usage (the Rust harness tests/support/smtp_server.rs starts it; by hand it works the same):

    python3 tests/support/smtp_server.py --maildir DIR [--host 127.0.0.1] [--port 0]
        [--mode starttls|tls|none] [--cert CERT.pem --key KEY.pem]
        [--user USER --password PASSWORD] [--reject-rcpt ADDRESS ...] [--defer-rcpt ADDRESS ...]

When it listens it prints one line `READY <port>` on stdout. Each accepted message is written
as DIR/NNNN.eml (raw bytes as received after DATA) and DIR/NNNN.json (envelope sender,
recipients, whether TLS and AUTH were used), the .json last and atomically, so a reader that
sees the .json can read both. It binds with SO_REUSEADDR, so a test can kill it and start a new
one on the same port to simulate "server down, then back". It stops on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Recorder:
    """aiosmtpd handler: refuses (550) or defers (451) listed recipients, saves every accepted
    message."""

    def __init__(self, maildir, reject, defer):
        self.maildir = maildir
        self.reject = {r.lower() for r in reject}
        self.defer = {r.lower() for r in defer}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if address.lower() in self.defer:
            return "451 4.7.1 <%s>: Recipient address deferred: greylisted, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        names = [n for n in os.listdir(self.maildir) if n.endswith(".json")]
        stem = os.path.join(self.maildir, "%04d" % (len(names) + 1))
        transport = server.transport
        implicit_tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None or implicit_tls,
            "authenticated": bool(session.authenticated),
            "login": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
        }
        with open(stem + ".eml", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(stem + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.replace(stem + ".json.tmp", stem + ".json")
        return "250 2.0.0 OK: queued as %s" % os.path.basename(stem)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", choices=["starttls", "tls", "none"], default="starttls")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--maildir", required=True)
    p.add_argument("--reject-rcpt", action="append", default=[])
    p.add_argument("--defer-rcpt", action="append", default=[])
    args = p.parse_args()
    # aiosmtpd itself warns about its own deprecated Session.login_data on every AUTH.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    # In --mode tls the whole connection is encrypted; aiosmtpd only counts STARTTLS as TLS.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

    context = None
    if args.mode != "none":
        if not (args.cert and args.key):
            p.error("--mode %s needs --cert and --key" % args.mode)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        if ok:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False: aiosmtpd then answers "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=False, handled=False)

    with_auth = args.user is not None
    handler = Recorder(args.maildir, args.reject_rcpt, args.defer_rcpt)

    def factory():
        return SMTP(
            handler,
            hostname="localhost",
            tls_context=context if args.mode == "starttls" else None,
            require_starttls=args.mode == "starttls",
            authenticator=authenticator if with_auth else None,
            auth_required=with_auth,
            # Implicit TLS is encryption too; aiosmtpd only knows about STARTTLS.
            auth_require_tls=args.mode == "starttls",
        )

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory,
            host=args.host,
            port=args.port,
            ssl=context if args.mode == "tls" else None,
            reuse_address=True,
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        port = server.sockets[0].getsockname()[1]
        print("READY %d" % port, flush=True)
        async with server:
            await stop.wait()

    asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
