"""Wires the email dispatcher together: its adapters (SMTP pools, ledger,
replayed suppressions and withdrawals), its outbound module, the deliver
use case behind the NATS consumer, and ``/bounces``."""

from __future__ import annotations

from fastapi import FastAPI

from services.dispatch.email import api, worker
from services.dispatch.email.dkim_signing import DkimSigner
from services.dispatch.email.ledger import Ledger, open_ledger
from services.dispatch.email.limits import SendLimits
from services.dispatch.email.outbound import Outbound
from services.dispatch.email.own_smtp import OwnAccounts
from services.dispatch.email.settings import EmailDispatchSettings
from services.dispatch.email.smtp import SmtpPool
from services.dispatch.email.suppressions import SuppressionList
from services.dispatch.email.usecases.deliver_job import DeliverJob
from services.dispatch.withdrawals import WithdrawnMessages
from shared.egress import EgressPolicy
from shared.messaging import Bus
from shared.service import create_service_app
from shared.web.errors import install


def signer_of(settings: EmailDispatchSettings) -> DkimSigner | None:
    key = settings.dkim_key()
    if key is None or settings.dkim_selector is None:  # the settings refuse a key without a selector
        return None
    domain = settings.dkim_domain or str(settings.from_address).rpartition("@")[2]
    return DkimSigner(settings.dkim_selector, domain, key)


class EmailDispatcher:
    """The email dispatcher's parts, wired as the service runs them."""

    def __init__(self, bus: Bus, settings: EmailDispatchSettings, ledger: Ledger | None = None) -> None:
        self.settings = settings
        self.relay = SmtpPool(settings)
        self.own_accounts = OwnAccounts(settings.smtp_timeout, EgressPolicy.of(settings.common))
        self.ledger = ledger or open_ledger(settings.ledger_url)
        self.suppressed = SuppressionList(bus)
        self.withdrawn = WithdrawnMessages(bus)
        self.outbound = Outbound(bus)
        self.deliver = DeliverJob(
            settings, outbound=self.outbound, ledger=self.ledger, limits=SendLimits(settings, self.ledger),
            relay=self.relay, own_accounts=self.own_accounts, signer=signer_of(settings),
            suppressed=self.suppressed, withdrawn=self.withdrawn)
        self.consumer = worker.subscribe(bus, settings, self.deliver)

    async def prepare(self) -> None:
        await self.ledger.open()
        await self.ledger.prune(self.settings.ledger_retention_days)
        await self.suppressed.replay.prepare()
        await self.withdrawn.replay.prepare()

    async def close(self) -> None:
        await self.consumer.stop()  # the jobs in hand finish on open connections and ledger
        await self.relay.close()
        await self.own_accounts.close()
        await self.ledger.close()

    def checks(self) -> dict:
        return {"smtp": self.relay.ready, "ledger": self.ledger.ready,
                "suppressions": self.suppressed.replay.ready, "withdrawals": self.withdrawn.replay.ready}


def create_email_app(settings: EmailDispatchSettings | None = None) -> FastAPI:
    settings = settings or EmailDispatchSettings()
    bus = Bus.for_service(settings)
    dispatcher = EmailDispatcher(bus, settings)
    app = create_service_app(
        settings=settings,
        bus=bus,
        title="Maillage dispatch: email",
        description="Sends one personal email per job through the campaign's SMTP relay.",
        routers=[api.router(dispatcher.ledger, dispatcher.outbound)],
        authenticate=api.authenticator(settings),
        body_limits=api.BODY_LIMITS,
        checks=dispatcher.checks(),
        on_start=[dispatcher.prepare],
        on_stop=[dispatcher.close],
    )
    install(app, api.ANSWERS)
    return app
