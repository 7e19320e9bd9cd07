"""Process entry point: the governance worker (community.invite, community.revoke,
community.promote, community.demote, community.members.list)."""
import sys

from hearthnet.bus.worker import run_service
from hearthnet.errors import HearthNetError
from hearthnet.process import start_process
from hearthnet.services.governance import GovernanceService


def main() -> None:
    cfg, log, name = start_process("governance")
    try:
        service = GovernanceService.from_config(cfg)
    except HearthNetError as exc:  # no community or no key: one plain line, then FATAL
        log.error(exc.message, extra={"code": exc.code})
        sys.exit(1)
    run_service(service, cfg.paths.broker_workers_endpoint, name)


if __name__ == "__main__":
    main()
