"""The aiohttp gateway (DESIGN.md §3): local owner API and capability calls."""
