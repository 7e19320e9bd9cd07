"""Process entry point: the embedding worker (embed.text@1.0). The model is loaded once,
in the service's start(), before the worker announces itself."""
from hearthnet.bus.worker import run_service
from hearthnet.process import start_process
from hearthnet.services.embedding.service import service_from_config


def main() -> None:
    cfg, _, name = start_process("embedding")
    run_service(service_from_config(cfg), cfg.paths.broker_workers_endpoint, name)


if __name__ == "__main__":
    main()
