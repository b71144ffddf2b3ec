"""Several hosts, one model, through Redis (`[classifier] share = "redis://HOST:PORT/N"`).

    outbox.py    the local durable queue of learn events (DBPATH/share/outbox.sqlite)
    snapshot.py  the model as published bytes (pickle-free), and installing a published version
    channel.py   the Redis keys and scripts: the event stream, the trainer's lease, the versions
    agent.py     the thread in `mailsift serve` and `mailsift milter` that sends, trains, follows

docs/scaling.md describes the topology; docs/classifier.md the settings.
"""
