"""The simulated payment provider (``festpay provider-sim``) in its own process, driven over real HTTP through
:class:`HttpProvider`, one test per behaviour; webhooks go to a small aiohttp receiver in the test."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from aiohttp import ClientSession, web
from yarl import URL

from python_gateway.provider.http_client import HttpProvider
from python_gateway.provider.interface import (InvalidWebhook, PaymentProvider, ProviderRequestError,
                                               ProviderUnavailable, Status)
from python_gateway.signing import PROVIDER_SIGNATURE_HEADER
from tests.child_process import provider_sim

SECRET = "test-provider-secret"
RETURN_URL = "http://127.0.0.1:9/portal/topup/return"


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """``festpay provider-sim --port 0`` (a free loopback port) for this module; stopped at the end."""
    with provider_sim(SECRET) as url:
        yield url


class Receiver:
    """A webhook receiver on a free loopback port; the first ``fail_first`` deliveries get a 500."""

    def __init__(self, fail_first: int = 0):
        self.hooks: list[tuple[bytes, dict[str, str]]] = []
        self.fail_first = fail_first
        self.attempts = 0
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            return web.Response(status=500)
        self.hooks.append((await request.read(), dict(request.headers)))
        self.arrived.set()
        return web.Response(status=204)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.hooks) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(self.hooks) >= count, f"{len(self.hooks)} webhooks arrived, expected {count}"


async def submit(checkout_url: str, action: str = "pay") -> URL:
    """Press a button of the hosted page as a browser would (a plain form post); the redirect's target."""
    async with ClientSession() as http:
        async with http.get(checkout_url) as resp:
            assert resp.status == 200
            page = await resp.text()
        assert f'value="{action}"' in page
        async with http.post(checkout_url, data={"action": action}, allow_redirects=False) as resp:
            assert resp.status == 303
            return URL(resp.headers["Location"])


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def scenario(sim_url: str, behaviour: str, amount: int = 2000, fail_first: int = 0, **extra):
    """Decorator-free helper: a receiver, a provider client and a fresh checkout of ``behaviour``."""

    class Ctx:
        async def __aenter__(self):
            self.receiver = await Receiver(fail_first).__aenter__()
            self.provider = HttpProvider(sim_url, SECRET, webhook_url=self.receiver.url, timeout=5)
            self.reference = f"topup-{uuid.uuid4()}"
            self.checkout = await self.provider.create_checkout(
                self.reference, amount, "EUR", RETURN_URL, extra={"behaviour": behaviour, **extra})
            return self

        async def __aexit__(self, *exc):
            await self.provider.close()
            await self.receiver.__aexit__()

    return Ctx()


def test_pays_one_signed_webhook_and_a_tampered_body_is_refused(sim_url):
    async def go():
        async with scenario(sim_url, "pays") as c:
            assert isinstance(c.provider, PaymentProvider)
            assert await c.provider.fetch_status(c.checkout.id) == Status.PENDING
            target = await submit(c.checkout.url)
            assert target == URL(RETURN_URL).update_query(checkout_id=c.checkout.id)
            assert await c.provider.fetch_status(c.checkout.id) == Status.PAID
            await c.receiver.wait_for(1)
            await asyncio.sleep(0.5)
            assert len(c.receiver.hooks) == 1
            body, headers = c.receiver.hooks[0]
            event = c.provider.verify_webhook(body, headers)
            assert (event.checkout_id, event.reference, event.status) == (c.checkout.id, c.reference, Status.PAID)
            tampered = body.replace(b'"paid"', b'"declined"')
            assert tampered != body
            with pytest.raises(InvalidWebhook, match="wrong"):
                c.provider.verify_webhook(tampered, headers)
            with pytest.raises(InvalidWebhook, match="no "):
                c.provider.verify_webhook(body, {})
            with pytest.raises(InvalidWebhook):
                HttpProvider(sim_url, "another-secret").verify_webhook(body, headers)
            # the same reference again: the same checkout, not a second payment
            again = await c.provider.create_checkout(c.reference, 2000, "EUR", RETURN_URL)
            assert again.id == c.checkout.id
            with pytest.raises(ProviderRequestError):
                await c.provider.create_checkout(c.reference, 2500, "EUR", RETURN_URL)
    run(go())


def test_declines(sim_url):
    async def go():
        async with scenario(sim_url, "declines") as c:
            await submit(c.checkout.url)
            assert await c.provider.fetch_status(c.checkout.id) == Status.DECLINED
            await c.receiver.wait_for(1)
            assert c.provider.verify_webhook(*c.receiver.hooks[0]).status == Status.DECLINED
            with pytest.raises(ProviderRequestError):
                await c.provider.refund(c.checkout.id, 100)
    run(go())


def test_cancel_button_declines_and_redirects(sim_url):
    async def go():
        async with scenario(sim_url, "pays") as c:
            target = await submit(c.checkout.url, "cancel")
            assert target.query["checkout_id"] == c.checkout.id
            assert await c.provider.fetch_status(c.checkout.id) == Status.DECLINED
            await c.receiver.wait_for(1)
    run(go())


def test_never_answers_stays_pending_without_webhook(sim_url):
    async def go():
        async with scenario(sim_url, "never-answers") as c:
            await submit(c.checkout.url)
            for _ in range(3):
                assert await c.provider.fetch_status(c.checkout.id) == Status.PENDING
                await asyncio.sleep(0.5)
            assert c.receiver.attempts == 0
    run(go())


def test_unpaid_checkout_expires_with_its_webhook_and_can_no_longer_be_paid(sim_url):
    """The visitor closes the hosted page: after expires_in_s the checkout is expired (a determinate "not paid", which
    our side settles as declined), its webhook arrives, and a Pay pressed on a page left open is refused."""
    async def go():
        async with scenario(sim_url, "pays", expires_in_s=1) as c:
            created = time.monotonic()
            assert await c.provider.fetch_status(c.checkout.id) == Status.PENDING
            await c.receiver.wait_for(1, timeout=5)
            assert time.monotonic() - created >= 0.9
            assert await c.provider.fetch_status(c.checkout.id) == Status.EXPIRED
            event = c.provider.verify_webhook(*c.receiver.hooks[0])
            assert (event.checkout_id, event.reference, event.status) == (c.checkout.id, c.reference, Status.EXPIRED)
            assert event.status.determinate and event.status.result == "declined"
            async with ClientSession() as http:
                async with http.get(c.checkout.url) as resp:
                    page = await resp.text()
                assert resp.status == 200 and 'id="expired"' in page and 'value="pay"' not in page
                async with http.post(c.checkout.url, data={"action": "pay"}, allow_redirects=False) as resp:
                    page = await resp.text()
                assert resp.status == 409 and resp.content_type == "text/html", page
                assert "This checkout has expired" in page and "Nothing was charged" in page
                assert f'href="{RETURN_URL}?checkout_id={c.checkout.id}"' in page
            assert await c.provider.fetch_status(c.checkout.id) == Status.EXPIRED
            with pytest.raises(ProviderRequestError):  # nothing was paid, so nothing can be refunded
                await c.provider.refund(c.checkout.id, 2000)
            await asyncio.sleep(0.5)
            assert len(c.receiver.hooks) == 1
    run(go())


def test_a_checkout_paid_before_its_expiry_does_not_expire(sim_url):
    async def go():
        async with scenario(sim_url, "late", behaviour_delay_s=1.5, expires_in_s=0.5) as c:
            await submit(c.checkout.url)
            await asyncio.sleep(1.0)  # past the expiry, the provider's answer still to come
            assert await c.provider.fetch_status(c.checkout.id) == Status.PENDING
            await c.receiver.wait_for(1, timeout=5)
            assert await c.provider.fetch_status(c.checkout.id) == Status.PAID
            await asyncio.sleep(0.3)
            assert [c.provider.verify_webhook(*h).status for h in c.receiver.hooks] == [Status.PAID]
    run(go())


def test_never_answers_does_not_expire(sim_url):
    """``never-answers`` is a provider that does not answer, not an abandoned checkout: pending past its expiry."""
    async def go():
        async with scenario(sim_url, "never-answers", expires_in_s=0.5) as c:
            await asyncio.sleep(1.2)
            assert await c.provider.fetch_status(c.checkout.id) == Status.PENDING
            assert c.receiver.attempts == 0
            assert (await submit(c.checkout.url)).query["checkout_id"] == c.checkout.id  # still open
            assert await c.provider.fetch_status(c.checkout.id) == Status.PENDING
    run(go())


def test_default_expiry_is_set_with_the_default_behaviour(sim_url):
    async def go():
        async with ClientSession() as http:
            for bad in (0, -1, "60", True, 86401):
                async with http.put(f"{sim_url}/v1/sim/default-behaviour", json={"expires_in_s": bad}) as resp:
                    assert resp.status == 400, bad
            async with http.put(f"{sim_url}/v1/sim/default-behaviour", json={"expires_in_s": 1}) as resp:
                assert resp.status == 204
            try:
                async with scenario(sim_url, "no-webhook") as c:
                    await asyncio.sleep(1.3)
                    assert await c.provider.fetch_status(c.checkout.id) == Status.EXPIRED
                    assert c.receiver.attempts == 0  # no-webhook: only polling finds it
            finally:
                async with http.put(f"{sim_url}/v1/sim/default-behaviour", json={"expires_in_s": 900}) as resp:
                    assert resp.status == 204
            async with HttpProvider(sim_url, SECRET, timeout=5) as provider:
                with pytest.raises(ProviderRequestError):
                    await provider.create_checkout(f"x-{uuid.uuid4()}", 100, "EUR", RETURN_URL,
                                                   extra={"expires_in_s": 0})
    run(go())


def test_late_turns_paid_after_the_delay(sim_url):
    async def go():
        async with scenario(sim_url, "late", behaviour_delay_s=1.5) as c:
            await submit(c.checkout.url)
            paid_at = time.monotonic()
            assert await c.provider.fetch_status(c.checkout.id) == Status.PENDING
            await asyncio.sleep(0.7)
            assert await c.provider.fetch_status(c.checkout.id) == Status.PENDING
            assert c.receiver.attempts == 0
            await c.receiver.wait_for(1, timeout=5)
            assert time.monotonic() - paid_at >= 1.4
            assert await c.provider.fetch_status(c.checkout.id) == Status.PAID
            assert c.provider.verify_webhook(*c.receiver.hooks[0]).status == Status.PAID
    run(go())


def test_webhook_twice_sends_two_identical_webhooks(sim_url):
    async def go():
        async with scenario(sim_url, "webhook-twice") as c:
            await submit(c.checkout.url)
            await c.receiver.wait_for(2)
            (body1, headers1), (body2, headers2) = c.receiver.hooks
            assert body1 == body2
            assert headers1[PROVIDER_SIGNATURE_HEADER] == headers2[PROVIDER_SIGNATURE_HEADER]
            assert c.provider.verify_webhook(body1, headers1) == c.provider.verify_webhook(body2, headers2)
            assert json.loads(body1)["status"] == "paid"
    run(go())


def test_no_webhook_is_found_by_polling_only(sim_url):
    async def go():
        async with scenario(sim_url, "no-webhook") as c:
            await submit(c.checkout.url)
            assert await c.provider.fetch_status(c.checkout.id) == Status.PAID
            await asyncio.sleep(1.0)
            assert c.receiver.attempts == 0
    run(go())


def test_webhook_is_retried_until_accepted(sim_url):
    async def go():
        async with scenario(sim_url, "pays", fail_first=2) as c:
            await submit(c.checkout.url)
            await c.receiver.wait_for(1, timeout=10)
            assert c.receiver.attempts == 3
            assert c.provider.verify_webhook(*c.receiver.hooks[0]).status == Status.PAID
    run(go())


def test_refund_of_a_paid_checkout(sim_url):
    async def go():
        async with scenario(sim_url, "pays", amount=2000) as c:
            with pytest.raises(ProviderRequestError):  # not paid yet
                await c.provider.refund(c.checkout.id, 2000)
            await submit(c.checkout.url)
            refund = await c.provider.refund(c.checkout.id, 1500)
            assert refund.status == "succeeded" and refund.id
            with pytest.raises(ProviderRequestError):  # more than is left
                await c.provider.refund(c.checkout.id, 501)
            assert (await c.provider.refund(c.checkout.id, 500)).status == "succeeded"
    run(go())


def test_refund_with_a_key_is_made_once(sim_url):
    async def go():
        async with scenario(sim_url, "pays", amount=2000) as c:
            await submit(c.checkout.url)
            first = await c.provider.refund(c.checkout.id, 2000, key="ft_" + "a" * 32)
            again = await c.provider.refund(c.checkout.id, 2000, key="ft_" + "a" * 32)
            assert again == first and first.status == "succeeded"
            with pytest.raises(ProviderRequestError):  # the same key for another amount
                await c.provider.refund(c.checkout.id, 1000, key="ft_" + "a" * 32)
            async with ClientSession() as http:
                async with http.get(f"{sim_url}/v1/checkouts/{c.checkout.id}") as resp:
                    assert (await resp.json())["refunded"] == 2000  # refunded once
    run(go())


def test_hosted_page_shows_the_amount_and_unknown_ids(sim_url):
    async def go():
        async with scenario(sim_url, "pays", amount=2000) as c:
            async with ClientSession() as http:
                async with http.get(c.checkout.url) as resp:
                    page = await resp.text()
                    assert resp.content_type == "text/html"
            assert "20,00 EUR" in page and ">Pay<" in page and ">Cancel<" in page
            assert await c.provider.fetch_status("co_doesnotexist") == Status.UNKNOWN
            with pytest.raises(ProviderRequestError):
                await c.provider.fetch_status("../health")
            with pytest.raises(ProviderRequestError):
                await c.provider.create_checkout(f"x-{uuid.uuid4()}", 100, "EUR", RETURN_URL,
                                                 extra={"behaviour": "sometimes"})
    run(go())


def test_unreachable_provider_is_unavailable():
    async def go():
        with socket_free_port() as port:
            async with HttpProvider(f"http://127.0.0.1:{port}", SECRET, timeout=2) as provider:
                with pytest.raises(ProviderUnavailable):
                    await provider.fetch_status("co_x")
                with pytest.raises(ProviderUnavailable):
                    await provider.create_checkout("r", 100, "EUR", RETURN_URL)
    run(go())


class socket_free_port:
    """A loopback port nothing listens on (bound while the block runs, not listening: connections are refused)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


def test_webhook_secret_is_generated_once_in_the_data_folder(tmp_path):
    import dataclasses

    from python_gateway.config import load_settings
    from python_gateway.provider import webhook_secret

    settings = dataclasses.replace(load_settings(), data_dir=tmp_path, provider_secret=None)
    first = webhook_secret(settings)
    assert len(first) >= 32 and webhook_secret(settings) == first
    assert (tmp_path / "provider-secret").stat().st_mode & 0o777 == 0o600
    assert webhook_secret(dataclasses.replace(settings, provider_secret="given")) == "given"
