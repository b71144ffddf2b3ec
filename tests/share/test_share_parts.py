"""The parts of [classifier] share against a real redis-server: the outbox, the stream's
idempotent append, the lease and publication rules, a follower that starts with Redis down,
a published model that fails its checksum, and `mailsift learn` with share on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from corpus_files import learned_model_dir
from harness.procs import free_port, wait_for
from harness.redis import RedisServer

pytestmark = [pytest.mark.integration]

N_TRAIN = 60


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Path:
    return learned_model_dir(tmp_path_factory.mktemp("share-parts") / "models", corpora, N_TRAIN)


@pytest.fixture
def fresh(corpora: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((corpora / "spamassassin/easy_ham_2").iterdir())[:5]]


def copy(template: Path, to: Path) -> Path:
    shutil.copytree(template, to)
    return to


def test_outbox_sends_only_what_a_saved_learn_run_committed(tmp_path: Path, template: Path,
                                                            fresh: list[bytes]) -> None:
    from mailsift.classifier.learn import Learner
    from mailsift.share.outbox import Outbox

    db = copy(template, tmp_path / "models")
    with Learner(db, outbox=Outbox(db)) as learner:  # closed without save(): nothing to share
        learner.learn_labelled([("a", fresh[0], "spam")])
    assert Outbox(db).pending() == []
    outbox = Outbox(db)
    with Learner(db, outbox=outbox) as learner:
        learner.learn_labelled([("a", fresh[0], "spam"), ("b", fresh[1], "ham"), ("a-again", fresh[0], "spam")])
        learner.save()
    events = Outbox(db).pending()
    assert [(e.label, e.source) for e in events] == [("spam", "learn"), ("ham", "learn")]
    assert events[0].raw == fresh[0] and len({e.id for e in events}) == 2
    assert (db / "share").stat().st_mode & 0o777 == 0o700
    assert (db / "share" / "outbox.sqlite").stat().st_mode & 0o777 == 0o600


def test_append_is_idempotent_and_publication_needs_the_lease(redis_server: RedisServer, tmp_path: Path,
                                                              template: Path, fresh: list[bytes]) -> None:
    from mailsift.share.channel import Channel
    from mailsift.share.outbox import Event
    from mailsift.share.snapshot import snapshot

    ch = Channel(redis_server.url)
    try:
        ev = Event("e1", "d" * 64, "spam", "feedback", fresh[0], 0.0)
        assert ch.append(ev) is True
        assert ch.append(ev) is False  # a resend after an interrupted send: not added twice
        got = ch.events_after("0-0")
        assert [(e.id, e.label, e.raw) for e in got] == [("e1", "spam", fresh[0])]
        assert ch.events_after(got[0].stream_id) == []

        assert ch.hold_lease("a", 5) and not ch.hold_lease("b", 5) and ch.hold_lease("a", 5)
        data, meta, _fid = snapshot(template)
        assert not ch.publish("b", 1, data, meta, got[0].stream_id)  # not the lease holder
        assert ch.publish("a", 1, data, meta, got[0].stream_id)
        assert not ch.publish("a", 1, data, meta, got[0].stream_id)  # versions only grow
        pub = ch.published()
        assert pub is not None and (pub.version, pub.data, pub.applied) == (1, data, got[0].stream_id)
        assert ch.pending_events() == 1  # trimmed up to what the model learned (the id itself stays)
        ch.release_lease("a")
        assert ch.lease_holder() is None and ch.hold_lease("b", 5)
    finally:
        ch.close()


def test_a_follower_starts_on_its_local_model_and_refuses_a_corrupt_version(
        tmp_path: Path, template: Path, fresh: list[bytes], caplog: pytest.LogCaptureFixture) -> None:
    from mailsift.classifier.persist import load_model
    from mailsift.classifier.versions import list_versions
    from mailsift.resp import SyncRespClient
    from mailsift.share.agent import ShareAgent
    from mailsift.share.snapshot import read_state

    caplog.set_level("INFO", logger="mailsift.share")
    trainer_db, follower_db = copy(template, tmp_path / "trainer"), copy(template, tmp_path / "follower")
    before = load_model(follower_db).spamminess(fresh[2])
    port = free_port()
    follower = ShareAgent(f"redis://127.0.0.1:{port}/0", follower_db, trainer=False, install_in_child=True).start()
    server = trainer = None
    try:
        wait_for(lambda: "unavailable" in caplog.text, 10, what="the follower noticing Redis is down")
        assert load_model(follower_db).spamminess(fresh[2]) == before  # its local copy, untouched
        server = RedisServer(tmp_path / "redis", port=port).start()
        trainer = ShareAgent(server.url, trainer_db, trainer=True, lease_seconds=3).start()
        wait_for(lambda: read_state(follower_db).version == 1, 30, what="the follower installing version 1")
        assert [v.source for v in list_versions(follower_db)][:1] == ["share"]
        installed = load_model(follower_db).spamminess(fresh[2])

        # A version whose bytes do not match its checksum is refused; the model stays.
        r = SyncRespClient(server.url, timeout=5)
        try:
            r.command("HSET", "mailsift:share:model", "version", "7", "data", b"not a model")
        finally:
            r.close()
        wait_for(lambda: "published model version 7 does not match its checksum" in caplog.text, 10,
                 what="the follower refusing the corrupt version")
        assert read_state(follower_db).version == 1
        assert load_model(follower_db).spamminess(fresh[2]) == installed
    finally:
        follower.stop(5)
        if trainer is not None:
            trainer.stop(5)
        if server is not None:
            server.stop()


def test_mailsift_learn_shares_or_keeps_its_events(mailsift_bin: str, redis_server: RedisServer, tmp_path: Path,
                                                   template: Path, corpora: Path) -> None:
    from mailsift.share.channel import Channel
    from mailsift.share.outbox import Outbox

    db = copy(template, tmp_path / "models")
    files = sorted((corpora / "spamassassin/easy_ham_2").iterdir())[:3]
    down = tmp_path / "down.toml"
    down.write_text(f'[classifier]\ndbpath = "{db}"\nshare = "redis://127.0.0.1:{free_port()}/0"\n')
    proc = subprocess.run([mailsift_bin, "learn", "--config", str(down), "--spam", str(files[0]), str(files[1])],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert b"shared 0 learn event(s); 2 wait in" in proc.stdout, proc.stdout
    assert Outbox(db).count() == 2

    up = tmp_path / "up.toml"
    up.write_text(f'[classifier]\ndbpath = "{db}"\nshare = "{redis_server.url}"\n')
    proc = subprocess.run([mailsift_bin, "learn", "--config", str(up), "--spam", str(files[2])],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert b"shared 3 learn event(s)\n" in proc.stdout, proc.stdout  # the two waiting ones too
    assert Outbox(db).count() == 0
    ch = Channel(redis_server.url)
    try:
        assert sorted(e.raw for e in ch.events_after("0-0")) == sorted(f.read_bytes() for f in files)
    finally:
        ch.close()


def test_mailsift_learn_forget_is_shared_like_learn(mailsift_bin: str, redis_server: RedisServer, tmp_path: Path,
                                                    template: Path, corpora: Path) -> None:
    from mailsift.classifier.persist import load_model
    from mailsift.classifier.record import LearnRecord, message_digest
    from mailsift.share.agent import ShareAgent
    from mailsift.share.channel import Channel

    host, trainer_db = copy(template, tmp_path / "host"), copy(template, tmp_path / "trainer")
    message = sorted((corpora / "spamassassin/easy_ham_2").iterdir())[0]
    digest = message_digest(message.read_bytes())
    spam_before = load_model(trainer_db).n_spam_
    config = tmp_path / "host.toml"
    config.write_text(f'[classifier]\ndbpath = "{host}"\nshare = "{redis_server.url}"\n')

    def on_trainer() -> str | None:
        with LearnRecord(trainer_db) as record:
            known = record.get(digest)
        return known[0] if known else None

    def learn(*args: str) -> bytes:
        proc = subprocess.run([mailsift_bin, "learn", "--config", str(config), *args, str(message)],
                              capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert b"shared 1 learn event(s)\n" in proc.stdout, proc.stdout
        return proc.stdout

    def published_spam() -> int | None:
        pub = ch.published()
        return pub.meta.get("n_spam") if pub is not None else None

    trainer = ShareAgent(redis_server.url, trainer_db, trainer=True, lease_seconds=3).start()
    ch = Channel(redis_server.url)
    try:
        learn("--spam")
        wait_for(lambda: on_trainer() == "spam", 30, what="the trainer learning the shared spam")
        assert load_model(trainer_db).n_spam_ == spam_before + 1
        wait_for(lambda: published_spam() == spam_before + 1, 30, what="a version with the spam published")

        assert b"Forgot 1 message(s)" in learn("--forget")
        wait_for(lambda: on_trainer() is None, 30, what="the trainer forgetting the message")
        assert load_model(trainer_db).n_spam_ == spam_before
        wait_for(lambda: published_spam() == spam_before, 30, what="a version without it published")
        assert trainer.applied == 2
    finally:
        ch.close()
        trainer.stop(5)


def test_mailsift_retrain_takes_the_trainers_lease_and_publishes(mailsift_bin: str, redis_server: RedisServer,
                                                                 tmp_path: Path, template: Path,
                                                                 corpora: Path) -> None:
    from mailsift.classifier.persist import load_model
    from mailsift.share.agent import ShareAgent
    from mailsift.share.channel import Channel
    from mailsift.share.snapshot import read_state

    host, trainer_db = copy(template, tmp_path / "host"), copy(template, tmp_path / "trainer")
    folders = {}
    for label, src in (("ham", "easy_ham_2"), ("spam", "spam_2")):
        folders[label] = tmp_path / label
        folders[label].mkdir()
        for p in sorted((corpora / "spamassassin" / src).iterdir())[:25]:
            shutil.copy(p, folders[label])
    config = tmp_path / "host.toml"
    config.write_text(f'[classifier]\ndbpath = "{host}"\nshare = "{redis_server.url}"\n'
                      "share_lease_seconds = 3\n")
    serve = ShareAgent(redis_server.url, trainer_db, trainer=True, lease_seconds=3).start()
    ch = Channel(redis_server.url)
    try:
        wait_for(lambda: ch.lease_holder() == serve.me and ch.published_version() == 1, 30,
                 what="the serve's agent holding the lease and publishing version 1")
        proc = subprocess.run([mailsift_bin, "retrain", "--config", str(config), "--ham", str(folders["ham"]),
                               "--spam", str(folders["spam"]), "--force", "--holdout", "0"],
                              capture_output=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert b"published as version 2" in proc.stdout, proc.stdout
        # Only the lease holder can publish (the publish script checks it): retrain held it.
        pub = ch.published()
        assert pub is not None and pub.version == 2 and pub.meta["trainer"] != serve.me
        assert (pub.meta["n_ham"], pub.meta["n_spam"]) == (25, 25)  # the retrained model, not the template's
        assert read_state(host).version == 2 and load_model(host).n_ham_ == 25
        # The serve's agent takes the lease back and installs the retrained version.
        wait_for(lambda: ch.lease_holder() == serve.me, 30, what="the lease going back to the serve's agent")
        wait_for(lambda: read_state(trainer_db).version == 2, 30, what="the serve installing version 2")
        assert load_model(trainer_db).n_ham_ == 25
    finally:
        ch.close()
        serve.stop(5)


def test_mailsift_retrain_with_share_fails_cleanly_without_redis(mailsift_bin: str, tmp_path: Path,
                                                                 template: Path, corpora: Path) -> None:
    from mailsift.classifier.persist import load_model

    host = copy(template, tmp_path / "host")
    ham = tmp_path / "ham"
    ham.mkdir()
    for p in sorted((corpora / "spamassassin/easy_ham_2").iterdir())[:5]:
        shutil.copy(p, ham)
    config = tmp_path / "host.toml"
    config.write_text(f'[classifier]\ndbpath = "{host}"\nshare = "redis://127.0.0.1:{free_port()}/0"\n')
    before = (host / "model.bin").read_bytes()
    proc = subprocess.run([mailsift_bin, "retrain", "--config", str(config), "--ham", str(ham), "--force",
                           "--holdout", "0"], capture_output=True, timeout=120)
    assert proc.returncode == 1
    assert b"mailsift retrain: share: redis: cannot connect to redis" in proc.stderr, proc.stderr
    assert (host / "model.bin").read_bytes() == before and load_model(host).n_ham_ == N_TRAIN


@pytest.mark.parametrize("url", ["http://h/0", "redis://h:notaport/0", "redis://h/x", "unix://?db=1"])
def test_a_bad_share_url_is_a_config_error(tmp_path: Path, url: str) -> None:
    from mailsift.config import ConfigError, load_config

    cfg = tmp_path / "mailsift.toml"
    cfg.write_text(f'[classifier]\nshare = "{url}"\n')
    with pytest.raises(ConfigError, match="share must be redis://HOST:PORT/N"):
        load_config(cfg)
    cfg.write_text('[classifier]\nshare = "redis://10.0.0.5:6380/3"\nshare_lease_seconds = 0.5\n')
    with pytest.raises(ConfigError, match="share_lease_seconds"):
        load_config(cfg)


def test_a_trainer_never_publishes_over_a_version_published_while_it_was_busy(
        redis_server: RedisServer, tmp_path: Path, template: Path, corpora: Path, fresh: list[bytes]) -> None:
    """The serve's trainer loses the lease and gets it back while one step is busy (its learn
    waits for the model directory's lock): meanwhile `mailsift retrain` on another host took the
    lease and published a version. The trainer's model lacks that version: publishing it as the
    next one would throw the retrain away. It installs that version and learns on from there."""
    from mailsift.classifier.learn import Learner
    from mailsift.share.agent import ShareAgent
    from mailsift.share.channel import Channel
    from mailsift.share.lease import OneOffTrainer
    from mailsift.share.outbox import Event

    serve_db, other_db = copy(template, tmp_path / "serve"), copy(template, tmp_path / "other")
    extra = [p.read_bytes() for p in sorted((corpora / "spamassassin/easy_ham_2").iterdir())[10:30]]
    ch = Channel(redis_server.url)
    agent = ShareAgent(redis_server.url, serve_db, trainer=True, lease_seconds=3)
    agent.me = "serve-trainer"
    agent._channel = Channel(redis_server.url)  # the agent's threads are not started: the test steps it
    try:
        assert ch.hold_lease(agent.me, 30)
        agent._lease_held = True
        agent.step()
        assert ch.published_version() == 1
        base_ham = ch.published().meta["n_ham"]  # type: ignore[union-attr]

        ch.append(Event("e1", "e" * 64, "ham", "feedback", fresh[0], 0.0))
        agent.send()
        agent.follow()  # the step is under way: nothing new to install ...
        # ... and while its learn waits, the lease goes to a one-off retrain elsewhere and back.
        ch.release_lease(agent.me)
        with OneOffTrainer(redis_server.url, other_db, 3, 5, wait=10) as other:
            other.follow()
            with Learner(other_db, source=None) as learner:
                learner.learn_labelled([(f"x{i}", raw, "ham") for i, raw in enumerate(extra)])
                learner.save()
            assert other.publish() == 2
        assert ch.hold_lease(agent.me, 30)
        agent._published_at = 0.0  # its last publication long enough ago (PUBLISH_EVERY)
        agent.train()  # learns e1 on top of version 1 and tries to publish it
        assert ch.published_version() == 2, "published over the retrained version"

        def caught_up() -> bool:
            agent.step()
            return ch.published_version() >= 3
        wait_for(caught_up, 20, what="the trainer publishing on top of version 2")
        pub = ch.published()
        assert pub is not None and pub.meta["n_ham"] == base_ham + len(extra) + 1
    finally:
        agent._channel.close()
        ch.close()
