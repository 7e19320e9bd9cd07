"""Process entry point: the rag worker (rag.query, rag.ingest, rag.list_corpora)."""
from hearthnet.bus.worker import serve_from_config
from hearthnet.services.rag.service import RagService


def main() -> None:
    serve_from_config("rag", RagService.from_config)


if __name__ == "__main__":
    main()
