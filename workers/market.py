"""Process entry point: the market worker (market.list, .search, .post, .expire)."""
from hearthnet.bus.worker import serve_from_config
from hearthnet.services.market.service import MarketService


def main() -> None:
    serve_from_config("market", MarketService.from_config)


if __name__ == "__main__":
    main()
