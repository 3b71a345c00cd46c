"""A person's channels: Telegram buttons, e-mail and Zalo links, and the OA's shared tokens."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from alerts.oncall import OncallConfig, Roster
from alerts.oncall_links import LinkError, LinkSigner
from alerts.oncall_notifiers import AckLinks, buttons, roster_integrations, zalo_account
from tests.alerts.delivery_helpers import T0, sample_notification
from tests.alerts.test_notifiers_chat import ZaloImitation

SECRET = "another-long-secret-for-links"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def test_buttons_fit_telegram_callback_data() -> None:
    markup = buttons(sample_notification())
    assert markup is not None
    (row,) = markup["inline_keyboard"]  # one firing alert of the two
    assert [b["callback_data"] for b in row] == ["ack:f1", "snooze:f1"]
    assert all(len(b["callback_data"].encode()) <= 64 for b in row)
    assert buttons(sample_notification("resolved")) is None


def test_links_are_bound_to_alert_person_and_channel_and_expire() -> None:
    signer = LinkSigner(SECRET)
    links = AckLinks(signer, "https://ioc.haugiang.gov.vn/", 3600)
    ((summary, url),) = links.for_person(sample_notification(), "binh", "zalo")
    assert summary.startswith("Cổng dịch vụ công")
    token = url.rsplit("/", 1)[1]
    link = signer.verify(token, T0)
    assert (link.fingerprint, link.person, link.channel) == ("f1", "binh", "zalo")
    assert link.expires_at == T0 + 3600
    # The same notification (a retried send) carries the same link; another one does not.
    assert links.for_person(sample_notification(), "binh", "zalo")[0][1] == url
    assert links.for_person(sample_notification(key="n-2"), "binh", "zalo")[0][1] != url
    with pytest.raises(LinkError) as info:
        signer.verify(token, T0 + 3600)
    assert info.value.code == "expired"
    body, mac = token.split(".")
    for forged in (body[:-2] + "AA." + mac, body + "." + mac[:-2] + "AA", "", ".", "a" * 2000,
                   body + "." + LinkSigner("x" * 20).sign(link).split(".")[1]):
        with pytest.raises(LinkError) as info:
            signer.verify(forged, T0)
        assert info.value.code == "tampered"


async def test_every_person_on_zalo_shares_the_oa_tokens(aiohttp_server, session) -> None:
    zalo = ZaloImitation()
    zalo.interacted = {"z-an", "z-binh"}
    server = await aiohttp_server(zalo.app())
    base = str(server.make_url("")).rstrip("/")
    config = OncallConfig.model_validate({
        "people": [{"id": "an", "name": "An", "zalo": "z-an"},
                   {"id": "binh", "name": "Bình", "zalo": "z-binh"}],
        "zalo": {"access_token": "expired-token", "refresh_token": "refresh-1",
                 "app_id": "42", "secret_key": "app-secret", "api_url": base,
                 "oauth_url": base}})
    links = AckLinks(LinkSigner(SECRET), "https://ioc.haugiang.gov.vn/", 3600)
    account = zalo_account(config, lambda: session)
    channels = roster_integrations(Roster(config.roster(), "Asia/Ho_Chi_Minh"), config, links,
                                   lambda: session, account)
    await channels["an"][0].notifier.send(sample_notification())
    assert zalo.refresh == "refresh-2"  # renewed once; the old refresh token is dead now
    # Bình's channel must use the renewed token, not try the dead refresh token again.
    await channels["binh"][0].notifier.send(sample_notification())
    assert [user for user, _ in zalo.delivered] == ["z-an", "z-binh"]
    text = zalo.delivered[1][1]
    assert len(text) <= 2000
    (url,) = re.findall(r"https://ioc\.haugiang\.gov\.vn/oncall/ack/\S+", text)
    assert LinkSigner(SECRET).verify(url.rsplit("/", 1)[1], T0).person == "binh"
