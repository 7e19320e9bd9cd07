"""Process entry point: the experimental.echo worker (tests and benchmarks only)."""
from hearthnet.process import start_process
from hearthnet.services.echo import EchoService
from hearthnet.bus.worker import run_service


def main() -> None:
    cfg, _, name = start_process("echo")
    run_service(EchoService(), cfg.paths.broker_workers_endpoint, name)


if __name__ == "__main__":
    main()
