"""Sending through the volunteer's own SMTP account instead of the campaign's relay.

contacts keeps the account sealed with the volunteer's data key and puts it
in each job's sealed content (``shared.sealed``: AES-GCM with the email
channel's transit key, the job id bound; only contacts and dispatch-email
hold that key): JetStream and NATS only ever see the sealed form. The job
arrives here opened and validated (``SmtpIdentity``); this keeps one
persistent connection per account, the least recently used
closed beyond ``MAX_ACCOUNTS``. The email is then ``From:`` the volunteer's
own address (their server would refuse another, and their provider signs
it), so the campaign's DKIM key is not used.

The volunteer names that server: every connection to it, reconnections
included, passes the egress policy (``shared.egress``, through
``SmtpAccount.egress``); a refused one fails the job as ``egress_refused``."""

from __future__ import annotations

from collections import OrderedDict

from services.dispatch.email.smtp import SmtpAccount, SmtpPool
from shared.egress import EgressPolicy
from shared.settings import CommonSettings
from shared.smtp_identity import SmtpIdentity

MAX_ACCOUNTS = 256


class OwnAccounts:
    def __init__(self, timeout: float, egress: EgressPolicy | None = None) -> None:
        self.timeout = timeout
        # a volunteer names this server: every connection to it passes the
        # egress policy (MAILLAGE_EGRESS_ALLOW when none is given)
        self.egress = egress or EgressPolicy.of(CommonSettings())
        self.pools: OrderedDict[tuple, SmtpPool] = OrderedDict()

    async def pool(self, account: SmtpIdentity) -> SmtpPool:
        password = account.password.get_secret_value()
        key = (account.host, account.port, account.security, account.username, password)
        pool = self.pools.pop(key, None)
        if pool is None:
            pool = SmtpPool(SmtpAccount(account.host, account.port, account.username, password,
                                        starttls=account.security == "starttls", tls=account.security == "tls",
                                        timeout=self.timeout, egress=self.egress))
            if len(self.pools) >= MAX_ACCOUNTS:
                _, oldest = self.pools.popitem(last=False)
                await oldest.close()
        self.pools[key] = pool  # most recently used last
        return pool

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()
        self.pools.clear()
