"""Process entry point: the LLM service worker (llm.chat, llm.complete)."""
from hearthnet.process import start_process
from hearthnet.services.llm.service import LlmService
from hearthnet.worker import run_service


def main() -> None:
    cfg, _, name = start_process("llm")
    run_service(LlmService(cfg.llm), cfg.paths.broker_workers_endpoint, name)


if __name__ == "__main__":
    main()
