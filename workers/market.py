"""Process entry point: the market worker (market.list, .search, .post, .expire)."""
import sys

from hearthnet.bus.worker import run_service
from hearthnet.errors import HearthNetError
from hearthnet.process import start_process
from hearthnet.services.market.service import MarketService


def main() -> None:
    cfg, log, name = start_process("market")
    try:
        service = MarketService.from_config(cfg)
    except HearthNetError as exc:  # no key: one plain line, then FATAL
        log.error(exc.message, extra={"code": exc.code})
        sys.exit(1)
    run_service(service, cfg.paths.broker_workers_endpoint, name)


if __name__ == "__main__":
    main()
