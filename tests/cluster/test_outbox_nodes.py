"""Three nodes on one outbox, each running its mail sender against one real SMTP server: every
mail arrives exactly once. The senders read the same due mail (they poll the shared outbox), so
without a claim per mail in the store two or three of them would deliver it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio

from store import Mail, Store, new_id, open_store, utcnow
from tests.cluster.conftest import MongoServer, running_cluster
from tests.mail.smtp_server import running_smtp
from tests.valkey_server import Valkey

MAILS = 40


def mail(subject: str) -> Mail:
    now = utcnow()
    return Mail(
        id=new_id(),
        recipient="support@switchboard.example",
        subject=subject,
        text=f"{subject}\n",
        html=f"<p>{subject}</p>",
        created_at=now,
        next_attempt_at=now,
    )


async def all_sent(store: Store, ids: set[str]) -> None:
    """Until the store marks every mail of `ids` sent (the sender notes it right after the 250)."""
    with trio.fail_after(30):
        while True:
            unsent = [m.id for m in (await store.list_mail(limit=100)).items if m.sent_at is None]
            if not ids & set(unsent):
                return
            await trio.sleep(0.05)


async def test_each_mail_is_sent_by_one_node(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    with running_smtp() as smtp:
        async with running_cluster(tmp_path, mongo, valkey) as (cluster, nursery):
            # Each sender looks at the outbox at least every 0.2 s, so all three find new mail.
            await cluster.start_nodes(
                nursery,
                "node-a",
                "node-b",
                "node-c",
                SWITCHBOARD_SMTP_URL=smtp.url,
                SWITCHBOARD_MAIL_RETRY_SECONDS="0.05",
                SWITCHBOARD_MAIL_RETRY_MAX_SECONDS="0.2",
            )
            async with open_store(cluster.store_url) as store:
                queued = [mail(f"report {n}") for n in range(MAILS)]
                for item in queued:
                    await store.queue_mail(item)
                await all_sent(store, {m.id for m in queued})
                # One more, sent once the senders have finished what they took before it.
                last = mail("the last one")
                await store.queue_mail(last)
                await all_sent(store, {last.id})
                stored = (await store.list_mail(limit=100)).items
            await smtp.mailbox.wait_for(lambda r: r.message["Subject"] == "the last one")

    sent = Counter(str(r.message["Message-ID"]) for r in smtp.mailbox.received)
    assert len(sent) == MAILS + 1
    assert [mail_id for mail_id, times in sent.items() if times > 1] == []
    assert {m.id for m in stored} == {m.id for m in [*queued, last]}
    assert all(m.attempts == 0 and m.sent_at is not None for m in stored)
