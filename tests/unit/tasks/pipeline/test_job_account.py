"""tasks.pipeline.job_account: which account a starting job runs in, with a keyring that knows which of its
accounts holds which token (the keyring's own requests are tested in tests/integration/test_accounts.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from tasks.apivideo.keyring import Account, Keyring
from tasks.apivideo.limiter import Turn
from tasks.errors import ConfigError, SpecError
from tasks.job.record import JobRecord, State
from tasks.job.spec import UploadSpec, Video
from tasks.pipeline.job_account import ForeignToken, UnknownAccount, account_of, choose_account, turn_of

TURN = Turn("default")


@dataclass
class StubKeyring:
    """Accounts by name, and which tokens each holds; counts the questions it was asked."""

    held: dict[str, set[str]]
    asked: list[tuple[str, str]] = field(default_factory=list)

    def _account(self, name: str) -> Account:
        return cast(Account, type("StubAccount", (), {"name": name, "keyed": bool(name)})())

    def names(self) -> list[str]:
        return list(self.held)

    def get(self, name: str) -> Account | None:
        return self._account(name) if name in self.held else None

    @property
    def default(self) -> Account | None:
        return self.get("default")

    def owns(self, account: Any, token: str, turn: Turn) -> bool:
        self.asked.append((account.name, token))
        return token in self.held[account.name]

    def owner_of(self, token: str, turn: Turn) -> Account | None:
        for name in sorted(self.held, key=lambda n: n != "default"):
            self.asked.append((name, token))
            if token in self.held[name]:
                return self._account(name)
        return None

    def token_only(self, token: str) -> Account:
        return self._account("")


def keyring(**held: set[str]) -> Keyring:
    return cast(Keyring, StubKeyring(dict(held)))


def test_a_named_account_with_its_own_token_is_chosen() -> None:
    chosen = choose_account(keyring(default={"t1"}, acme={"t2"}), UploadSpec("/v", account="acme"), "t2", TURN)
    assert chosen.name == "acme"


def test_a_named_account_with_another_accounts_token_is_refused_naming_it() -> None:
    with pytest.raises(ForeignToken) as refused:
        choose_account(keyring(default={"t1"}, acme={"t2"}), UploadSpec("/v", account="acme"), "t1", TURN)
    assert "account 'acme'" in str(refused.value) and refused.value.resumable and refused.value.needs == "token"
    assert refused.value.reason == "foreign_token"


def test_a_named_account_the_workers_lack_is_refused_as_a_bad_spec() -> None:
    with pytest.raises(UnknownAccount) as refused:
        choose_account(keyring(default=set()), UploadSpec("/v", account="initech"), None, TURN)
    assert refused.value.field == "account" and refused.value.reason == "bad_spec"
    assert "'initech'" in str(refused.value) and "'default'" in str(refused.value)


def test_no_account_and_a_token_runs_where_the_token_belongs_default_asked_first() -> None:
    ring = keyring(acme={"t2"}, default={"t1"}, globex={"t3"})
    assert choose_account(ring, UploadSpec("/v"), "t3", TURN).name == "globex"
    assert cast(StubKeyring, ring).asked[0][0] == "default"


def test_no_account_and_a_token_of_nobody_is_token_only() -> None:
    assert not choose_account(keyring(default={"t1"}), UploadSpec("/v"), "stranger", TURN).keyed


def test_a_token_only_job_that_asks_for_metadata_is_refused_naming_the_field() -> None:
    spec = UploadSpec("/v", video=Video(tags=("a",), title="t"))
    with pytest.raises(SpecError) as refused:
        choose_account(keyring(default=set()), spec, "stranger", TURN)
    assert refused.value.field == "video.title" and "needs an API key" in str(refused.value)


def test_no_token_mints_in_the_named_account_else_default() -> None:
    ring = keyring(default=set(), acme=set())
    assert choose_account(ring, UploadSpec("/v"), None, TURN).name == "default"
    assert choose_account(ring, UploadSpec("/v", account="acme"), None, TURN).name == "acme"
    with pytest.raises(ConfigError, match="no API key"):
        choose_account(keyring(acme=set()), UploadSpec("/v"), None, TURN)


def test_a_started_job_keeps_the_account_its_start_chose() -> None:
    ring = keyring(default=set(), acme=set())
    job = JobRecord("j1", State.UPLOADING, UploadSpec("/v"), account="acme")
    assert account_of(ring, job, "t").name == "acme"
    assert not account_of(ring, JobRecord("j2", State.UPLOADING, UploadSpec("/v"), token_only=True), "t").keyed
    with pytest.raises(UnknownAccount):  # its key was taken from the workers since
        account_of(ring, JobRecord("j3", State.UPLOADING, UploadSpec("/v"), account="gone"), "t")


def test_a_jobs_turn_is_its_tenant_priority_and_weight() -> None:
    spec = UploadSpec("/v", account="acme", tenant="live", priority="bulk")
    assert turn_of(JobRecord("j1", State.QUEUED, spec), {"live": 4}) == Turn("live", bulk=True, weight=4, ticket="j1")
    assert turn_of(JobRecord("j2", State.QUEUED, UploadSpec("/v", account="acme")), {}) == Turn("acme", ticket="j2")


def test_a_job_naming_no_tenant_takes_the_share_of_the_account_it_runs_in() -> None:
    queued = JobRecord("j3", State.QUEUED, UploadSpec("/v"))
    assert turn_of(queued, {}).tenant == "default"  # not chosen yet
    chosen = JobRecord("j3", State.UPLOADING, UploadSpec("/v"), account="globex")  # its token's owner
    assert turn_of(chosen, {}).tenant == "globex" and chosen.public()["tenant"] == "globex"
