"""Sending through the volunteer's own SMTP account instead of the campaign's relay.

contacts keeps the account sealed with the volunteer's data key and puts it
in each job sealed for transit (``shared.sealed.TransitSealer``: AES-GCM,
the job id bound, a key only contacts and the dispatchers hold): JetStream
and NATS only ever see the sealed form. The dispatcher opens it per job and
keeps one persistent connection per account, the least recently used
closed beyond ``MAX_ACCOUNTS``. The email is then ``From:`` the volunteer's
own address (their server would refuse another, and their provider signs
it), so the campaign's DKIM key is not used."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pydantic import ConfigDict, ValidationError

from services.dispatch.smtp import SmtpAccount, SmtpPool
from shared.sealed import SealError, TransitSealer
from shared.smtp_identity import SmtpIdentity

MAX_ACCOUNTS = 256


class UnreadableAccount(Exception):
    """The sealed account does not open, or is not an SMTP account."""


class OwnAccount(SmtpIdentity):
    """What contacts seals into ``EmailJob.smtp_account`` (the shared model, frozen: a pool's key)."""

    model_config = ConfigDict(frozen=True)


class OwnAccounts:
    def __init__(self, sealer: TransitSealer | None, timeout: float) -> None:
        self.sealer, self.timeout = sealer, timeout
        self.pools: OrderedDict[tuple, SmtpPool] = OrderedDict()

    def open(self, job_id: str, sealed: str) -> OwnAccount:
        if self.sealer is None:
            raise UnreadableAccount("no credentials_key: this dispatcher cannot open volunteers' accounts")
        try:
            data: dict[str, Any] = self.sealer.open(job_id, sealed)
            return OwnAccount.model_validate(data)
        except SealError as exc:
            raise UnreadableAccount(str(exc)) from None
        except ValidationError:
            raise UnreadableAccount("the sealed account is not a complete SMTP account") from None

    async def pool(self, account: OwnAccount) -> SmtpPool:
        password = account.password.get_secret_value()
        key = (account.host, account.port, account.username, password)
        pool = self.pools.pop(key, None)
        if pool is None:
            pool = SmtpPool(SmtpAccount(account.host, account.port, account.username, password,
                                        starttls=account.security == "starttls", tls=account.security == "tls",
                                        timeout=self.timeout))
            if len(self.pools) >= MAX_ACCOUNTS:
                _, oldest = self.pools.popitem(last=False)
                await oldest.close()
        self.pools[key] = pool  # most recently used last
        return pool

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()
        self.pools.clear()
