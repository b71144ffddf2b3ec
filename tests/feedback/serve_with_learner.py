"""`mailsift serve` with the feedback learner attached, for the end-to-end test until
mailsift/serve/server.py starts the learner itself (the lead's wiring; see docs/feedback.md).

    python serve_with_learner.py CONFIG

Does what the wired `mailsift serve` does: the store's Server with its listeners, then
start_learner(server.store, config.feedback, config.classifier.dbpath), until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from mailsift.config import load_config
from mailsift.feedback.learner import start_learner
from mailsift.feedback.settings import FeedbackSettings
from mailsift.logsetup import setup_logging
from mailsift.serve.server import Server


async def main(path: str) -> int:
    config = load_config(path)
    setup_logging("DEBUG")
    server = Server(config.store)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stopping.set)
    await server.start()
    for listener in server.servers:
        await listener.start_serving()
    feedback = getattr(config, "feedback", None) or FeedbackSettings(save_interval=1.0)
    learner = start_learner(server.store, feedback, config.classifier.dbpath)
    await server.stopping.wait()
    await asyncio.to_thread(learner.stop)
    await server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
