"""Process entry point: LAN discovery (mDNS, UDP multicast, peer cache, manual peers)."""
from hearthnet.process import start_process
from hearthnet.services.discovery import DiscoveryService
from hearthnet.bus.worker import run_service


def main() -> None:
    cfg, _, name = start_process("discovery")
    run_service(DiscoveryService(cfg), cfg.paths.broker_workers_endpoint, name)


if __name__ == "__main__":
    main()
