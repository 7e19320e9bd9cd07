"""Process entry point: the LLM service worker (llm.chat, llm.complete)."""
import os

from hearthnet.process import start_process
from hearthnet.services.llm.service import LlmService
from hearthnet.bus.client import BusClient
from hearthnet.bus.worker import run_service


def main() -> None:
    cfg, _, name = start_process("llm")
    threads = max(1, (os.cpu_count() or 1) // cfg.workers.llm_replicas)  # replicas share cores
    # Follows the emergency mode: offline, internet-only models are withdrawn.
    mode_bus = BusClient(cfg.paths.broker_clients_endpoint) if cfg.emergency.enabled else None
    run_service(LlmService(cfg.llm, threads=threads, mode_bus=mode_bus), cfg.paths.broker_workers_endpoint, name)


if __name__ == "__main__":
    main()
