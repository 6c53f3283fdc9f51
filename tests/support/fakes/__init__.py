"""Fake external services for tests (a shop, chat platform APIs): real aiohttp servers on 127.0.0.1."""
