"""Process entry point: the ledger worker, the only writer of the community event log
(community.log.*, community.manifest.get)."""
import sys

from hearthnet.errors import HearthNetError
from hearthnet.process import start_process
from hearthnet.services.ledger import LedgerService
from hearthnet.bus.worker import run_service

EXIT_DATAERR = 65  # sysexits: the input data (here: the event log file) is bad


def main() -> None:
    cfg, log, name = start_process("ledger")
    try:
        run_service(LedgerService(cfg), cfg.paths.broker_workers_endpoint, name)
    except HearthNetError as exc:
        # One plain line (it names the file for db_corrupt); supervisord gives up after its
        # retries and `hearthnet status` shows the worker FATAL with this line.
        log.error(exc.message, extra={"code": exc.code, "path": exc.details.get("path")})
        sys.exit(EXIT_DATAERR if exc.code == "db_corrupt" else 1)


if __name__ == "__main__":
    main()
