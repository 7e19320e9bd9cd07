"""Process entry point: the governance worker (community.invite, community.revoke,
community.promote, community.demote, community.members.list)."""
from hearthnet.bus.worker import run_service
from hearthnet.process import start_process
from hearthnet.services.governance import GovernanceService


def main() -> None:
    cfg, _log, name = start_process("governance")
    run_service(GovernanceService.from_config(cfg), cfg.paths.broker_workers_endpoint, name)


if __name__ == "__main__":
    main()
