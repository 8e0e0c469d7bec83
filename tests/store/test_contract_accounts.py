"""The Store contract for accounts by email, run against every backend in conftest.BACKENDS:
passwords and token generations, verified emails, one-time codes and the mail outbox."""

from __future__ import annotations

from dataclasses import replace

import pytest

from store import CodePurpose, Mail, NotFound, OneTimeCode, Store, StoreError, new_id
from tests.store.factories import T0, at, user

VERIFY = CodePurpose.VERIFY_EMAIL
RESET = CodePurpose.RESET_PASSWORD


def mail(**fields: object) -> Mail:
    values: dict[str, object] = {
        "id": new_id(),
        "recipient": "ada@example.com",
        "subject": "Your code",
        "text": "123456 is your code; it expires at 12:10 UTC.",
        "html": "<p><b>123456</b></p>",
        "created_at": T0,
        "next_attempt_at": T0,
    }
    return Mail(**(values | fields))  # type: ignore[arg-type]


def code(user_id: str, purpose: CodePurpose = RESET, digest: str = "d-right") -> OneTimeCode:
    return OneTimeCode(user_id, purpose, digest, expires_at=at(600))


async def test_set_password_moves_the_token_generation_on(store: Store) -> None:
    ada = await store.create_user(user(password_hash="old"))
    assert ada.token_generation == 0
    changed = await store.set_password(ada.id, "new", at(5))
    assert (changed.password_hash, changed.token_generation, changed.updated_at) == (
        "new",
        1,
        at(5),
    )
    assert await store.get_user(ada.id) == changed
    assert (await store.set_password(ada.id, "newer", at(6))).token_generation == 2
    with pytest.raises(NotFound):
        await store.set_password(new_id(), "x", at(1))


async def test_set_password_keeps_the_token_that_changed_it_until_the_next_change(
    store: Store,
) -> None:
    ada = await store.create_user(user(password_hash="old"))
    assert ada.kept_token_id is None
    kept = await store.set_password(ada.id, "new", at(5), kept_token_id="jti-1")
    assert (kept.token_generation, kept.kept_token_id) == (1, "jti-1")
    assert await store.get_user(ada.id) == kept
    # A profile edit from a copy read before leaves it as stored.
    edited = await store.update_user(replace(ada, name="Ada L.", updated_at=at(6)))
    assert (edited.token_generation, edited.kept_token_id) == (1, "jti-1")
    # The next change names its own token, or none (a reset): the old one goes.
    assert (await store.set_password(ada.id, "newer", at(7))).kept_token_id is None
    assert (await store.get_user(ada.id)).kept_token_id is None  # type: ignore[union-attr]


async def test_update_user_cannot_bring_an_old_password_back(store: Store) -> None:
    read_before = await store.create_user(user(password_hash="old"))
    changed = await store.set_password(read_before.id, "new", at(5))
    # A profile edit made from the copy read before the password change:
    updated = await store.update_user(replace(read_before, name="Ada L.", updated_at=at(6)))
    assert (updated.name, updated.password_hash, updated.token_generation) == (
        "Ada L.",
        "new",
        changed.token_generation,
    )
    assert await store.get_user(read_before.id) == updated


async def test_mark_email_verified_only_for_the_current_address(store: Store) -> None:
    ada = await store.create_user(user(email="ada@example.com"))
    assert await store.mark_email_verified(ada.id, "other@example.com", at(1)) is None
    assert (await store.get_user(ada.id)) == ada
    verified = await store.mark_email_verified(ada.id, "ADA@example.com", at(2))
    assert verified is not None
    assert (verified.email_verified_at, verified.updated_at) == (at(2), at(2))
    # verified once stays verified at its first time
    again = await store.mark_email_verified(ada.id, "ada@example.com", at(3))
    assert again is not None
    assert again.email_verified_at == at(2)
    assert await store.mark_email_verified(new_id(), "ada@example.com", at(1)) is None


async def test_a_code_is_used_once(store: Store) -> None:
    ada = await store.create_user(user())
    await store.issue_code(code(ada.id), mail())
    assert await store.use_code(ada.id, RESET, "d-right", now=at(1), max_wrong_tries=5)
    assert not await store.use_code(ada.id, RESET, "d-right", now=at(2), max_wrong_tries=5)


async def test_a_code_expires(store: Store) -> None:
    ada = await store.create_user(user())
    await store.issue_code(code(ada.id), mail())
    assert not await store.use_code(ada.id, RESET, "d-right", now=at(600), max_wrong_tries=5)


async def test_wrong_tries_are_counted_and_end_the_code(store: Store) -> None:
    ada = await store.create_user(user())
    await store.issue_code(code(ada.id), mail())
    for _ in range(5):
        assert not await store.use_code(ada.id, RESET, "d-wrong", now=at(1), max_wrong_tries=5)
    # the sixth try, even the right one, is refused: a new code is needed
    assert not await store.use_code(ada.id, RESET, "d-right", now=at(1), max_wrong_tries=5)
    await store.issue_code(code(ada.id, digest="d-new"), mail())
    assert await store.use_code(ada.id, RESET, "d-new", now=at(2), max_wrong_tries=5)


async def test_the_right_code_within_the_tries_is_accepted(store: Store) -> None:
    ada = await store.create_user(user())
    await store.issue_code(code(ada.id), mail())
    for _ in range(4):
        assert not await store.use_code(ada.id, RESET, "d-wrong", now=at(1), max_wrong_tries=5)
    assert await store.use_code(ada.id, RESET, "d-right", now=at(1), max_wrong_tries=5)


async def test_a_new_code_replaces_the_old_one_per_purpose(store: Store) -> None:
    ada = await store.create_user(user())
    grace = await store.create_user(user())
    await store.issue_code(code(ada.id, digest="d-first"), mail())
    await store.issue_code(code(ada.id, VERIFY, digest="d-verify"), mail())
    await store.issue_code(code(grace.id, digest="d-grace"), mail())
    await store.issue_code(code(ada.id, digest="d-second"), mail())
    assert not await store.use_code(ada.id, RESET, "d-first", now=at(1), max_wrong_tries=5)
    assert not await store.use_code(ada.id, RESET, "d-grace", now=at(1), max_wrong_tries=5)
    assert await store.use_code(ada.id, RESET, "d-second", now=at(1), max_wrong_tries=5)
    assert not await store.use_code(ada.id, VERIFY, "d-second", now=at(1), max_wrong_tries=5)
    assert await store.use_code(ada.id, VERIFY, "d-verify", now=at(1), max_wrong_tries=5)
    assert await store.use_code(grace.id, RESET, "d-grace", now=at(1), max_wrong_tries=5)


async def test_issue_code_queues_its_mail(store: Store) -> None:
    ada = await store.create_user(user())
    sent_with_code = mail()
    await store.issue_code(code(ada.id), sent_with_code)
    assert await store.due_mail(at(0)) == [sent_with_code]


async def test_issue_code_with_a_refused_mail_stores_no_code(store: Store) -> None:
    ada = await store.create_user(user())
    taken = mail()
    await store.queue_mail(taken)
    with pytest.raises(StoreError):
        await store.issue_code(code(ada.id, digest="d-lost"), replace(taken, subject="again"))
    assert not await store.use_code(ada.id, RESET, "d-lost", now=at(1), max_wrong_tries=5)
    assert await store.due_mail(at(0)) == [taken]


async def test_the_outbox_gives_due_mail_in_order(store: Store) -> None:
    late = mail(next_attempt_at=at(30))
    first = mail(next_attempt_at=at(10))
    second = mail(next_attempt_at=at(10))
    for queued in (late, first, second):
        await store.queue_mail(queued)
    assert await store.due_mail(at(9)) == []
    assert await store.due_mail(at(10)) == [first, second]
    assert await store.due_mail(at(30), limit=2) == [first, second]
    assert await store.due_mail(at(30)) == [first, second, late]


async def test_a_sent_mail_is_not_due_and_keeps_no_body(store: Store) -> None:
    sent, waiting = mail(), mail()
    await store.queue_mail(sent)
    await store.queue_mail(waiting)
    await store.mail_sent(sent.id, at(1))
    assert await store.due_mail(at(100)) == [waiting]
    listed = (await store.list_mail()).items
    assert listed == [waiting, replace(sent, sent_at=at(1), text="", html="")]
    await store.mail_sent(new_id(), at(1))  # an unknown id changes nothing


async def test_a_failed_attempt_is_counted_and_retried_later(store: Store) -> None:
    queued = mail(reply_to="grace@example.com")
    await store.queue_mail(queued)
    await store.mail_failed(queued.id, "connection refused", at(20))
    assert await store.due_mail(at(19)) == []
    [due] = await store.due_mail(at(20))
    assert due == replace(
        queued, attempts=1, last_error="connection refused", next_attempt_at=at(20)
    )
    await store.mail_failed(queued.id, "451 try later", at(40))
    [due] = await store.due_mail(at(40))
    assert (due.attempts, due.last_error) == (2, "451 try later")
    await store.mail_failed(new_id(), "nothing", at(1))


async def test_one_sender_claims_a_due_mail(store: Store) -> None:
    queued, other = mail(next_attempt_at=at(10)), mail(next_attempt_at=at(10))
    await store.queue_mail(queued)
    await store.queue_mail(other)
    assert await store.claim_mail(queued.id, at(10), at(70))
    # A second sender that read the same due mail loses it, and it is not due until the claim ends.
    assert not await store.claim_mail(queued.id, at(10), at(80))
    assert await store.due_mail(at(69)) == [other]
    assert await store.due_mail(at(70)) == [other, replace(queued, next_attempt_at=at(70))]
    await store.mail_sent(queued.id, at(20))
    assert not await store.claim_mail(queued.id, at(70), at(90))  # sent: nobody claims it
    assert not await store.claim_mail(new_id(), at(10), at(70))
    assert await store.due_mail(at(100)) == [other]


async def test_the_outbox_lists_newest_first_in_pages(store: Store) -> None:
    queued = [mail() for _ in range(5)]
    for item in queued:
        await store.queue_mail(item)
    first = await store.list_mail(limit=3)
    assert [m.id for m in first.items] == [m.id for m in reversed(queued)][:3]
    rest = await store.list_mail(limit=3, cursor=first.next_cursor)
    assert [m.id for m in rest.items] == [queued[1].id, queued[0].id]
    assert rest.next_cursor is None


async def test_a_reused_mail_id_is_refused(store: Store) -> None:
    queued = mail()
    await store.queue_mail(queued)
    with pytest.raises(StoreError):
        await store.queue_mail(replace(queued, subject="other"))
    assert (await store.list_mail()).items == [queued]


async def test_outbox_times_must_be_aware(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.queue_mail(mail(next_attempt_at=T0.replace(tzinfo=None)))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.due_mail(T0.replace(tzinfo=None))
