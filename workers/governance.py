"""Process entry point: the governance worker (community.invite, community.revoke,
community.promote, community.demote, community.members.list)."""
from hearthnet.bus.worker import serve_from_config
from hearthnet.services.governance import GovernanceService


def main() -> None:
    serve_from_config("governance", GovernanceService.from_config)


if __name__ == "__main__":
    main()
