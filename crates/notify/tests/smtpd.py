"""A real SMTP server (aiosmtpd) for steward-notify's tests, configurable per test.

Usage: smtpd.py --port P --out DIR [--tls none|starttls|implicit --cert F --key F]
                [--max-tls 1.2] [--auth USER] [--idle-timeout S] [--busy-at N ...]
                [--refuse-rcpt ADDR]
The password for --auth is read from the SMTPD_PASSWORD environment variable. Every
accepted message is written to DIR as NNNN.json ({"mail_from", "rcpt_tos", "data"}) before
the server answers 250, so a test that saw the 250 finds the file. Prints "READY" once
listening.
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--max-tls", choices=["1.2", "1.3"])
    p.add_argument("--auth")
    p.add_argument("--idle-timeout", type=float, default=300.0)
    p.add_argument("--busy-at", type=int, action="append", default=[])
    p.add_argument("--refuse-rcpt", action="append", default=[])
    return p.parse_args()


class Handler:
    def __init__(self, args):
        self.args = args
        self.count = len(os.listdir(args.out))
        self.mails = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mails += 1
        if self.mails in self.args.busy_at:
            # Say 421 and hang up, as a server going down for maintenance does.
            server.loop.call_later(0.05, server.transport.close)
            return "421 4.3.2 Service not available, closing transmission channel"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.args.refuse_rcpt:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(self.args.out, "%04d.json" % self.count)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "data": envelope.content.decode("utf-8", "replace"),
                },
                f,
            )
        os.rename(tmp, path)
        return "250 Message accepted for delivery"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        # handled=False lets aiosmtpd answer 535; True with failure would hang up silently.
        return AuthResult(success=ok, handled=False)

    return check


def tls_context(args):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    if args.max_tls == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def main():
    args = parse()
    handler = Handler(args)
    ctx = tls_context(args) if args.tls != "none" else None
    auth = None
    if args.auth:
        auth = authenticator(args.auth, os.environ.get("SMTPD_PASSWORD", ""))

    def factory():
        kwargs = dict(
            hostname="smtp.test",
            timeout=args.idle_timeout,
            authenticator=auth,
            auth_required=auth is not None,
        )
        if args.tls == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
        else:
            # Implicit TLS is invisible to aiosmtpd, so it must not insist on STARTTLS.
            kwargs.update(auth_require_tls=False)
        return SMTP(handler, **kwargs)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory,
        host=args.host,
        port=args.port,
        ssl=ctx if args.tls == "implicit" else None,
        reuse_address=True,
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("READY", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
