"""The ``fashionbot`` command. Each subcommand builds the service once and calls it."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from engine.config import Settings


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)


async def _service(settings: Settings):
    from engine.service import FashionService

    return await FashionService.create(settings)


async def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from engine.catalogue import ingest as catalogue
    from engine.service import EMBED_CHUNK

    service = await _service(settings)
    try:
        if args.source == "fashion-mnist":
            skip = await service.store.all_external_ids("fashion-mnist")
            images, _ = await asyncio.to_thread(catalogue.load_fashion_mnist, args.split)
            total = len(images) if args.limit is None else min(args.limit, len(images))
            rows = catalogue.fashion_mnist_rows(args.split, args.limit, service.embedder.input_size, skip=skip)
            todo = total - sum(1 for e in skip if e.startswith(f"{args.split}-") and int(e.split("-")[1]) < total)
            bar = _progress(todo, "embedding Fashion-MNIST")
            report = await catalogue.ingest_rows(service, rows, batch_size=EMBED_CHUNK, progress=bar.update)
            report.skipped_existing += total - todo
        else:
            path = Path(args.file)
            if not path.exists():
                print(f"No such feed: {path}", file=sys.stderr)
                return 2
            bar = _progress(None, f"ingesting {path.name}")
            rows = catalogue.feed_rows(path, settings.max_image_bytes)
            report = await catalogue.ingest_rows(service, rows, batch_size=64, progress=bar.update)
        bar.close()
        for line, reason in report.bad_rows:
            print(f"line {line}: skipped: {reason}", file=sys.stderr)
        print(f"Ingest done: {report.summary()}. Catalogue: {await service.store.count_items()} items.")
        return 0
    finally:
        await service.close()


async def cmd_recommend(args: argparse.Namespace, settings: Settings) -> int:
    from bot.render import recommendation_text
    from engine.errors import ServiceError

    path = Path(args.photo)
    try:
        data = path.read_bytes()
    except OSError as err:
        print(f"Can't read {path}: {err.strerror}", file=sys.stderr)
        return 2
    service = await _service(settings)
    try:
        rec = await service.recommend(data, k=args.k)
    except (ServiceError, ValueError) as err:
        print(str(err), file=sys.stderr)
        return 1
    finally:
        await service.close()
    if args.json:
        payload = {
            "backbone": rec.backbone,
            "items": [
                {
                    "id": s.item.id,
                    "title": s.item.title,
                    "url": s.item.url,
                    "image": s.item.image_url,
                    "price": s.item.price,
                    "category": s.item.category,
                    "score": s.score,
                }
                for s in rec.items
            ],
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        print(recommendation_text(rec))
    return 0


async def cmd_about(args: argparse.Namespace, settings: Settings) -> int:
    from bot.render import about_text

    service = await _service(settings)
    try:
        print(about_text(await service.about()))
    finally:
        await service.close()
    return 0


async def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    service = await _service(settings)
    try:
        bar = _progress(None, "re-embedding")
        count = await service.reindex(progress=bar.update)
        bar.close()
        head = service.backbone.head
        model = service.backbone.name + (f" + head {head.fingerprint} ({head.dim}-d)" if head else "")
        print(f"Index rebuilt with {model}: {count} items.")
    finally:
        await service.close()
    return 0


async def cmd_trend(args: argparse.Namespace, settings: Settings) -> int:
    """``fashionbot trend TAG``: search the configured shops, one progress line per update, then
    the summary; without TAG, the recent trends."""
    from bot.render import trend_progress_text, trends_text
    from engine.types import UserRef

    service = await _service(settings)
    try:
        if not args.tag:
            print(trends_text(await service.trends()))
            return 0
        final = None
        async for progress in service.trend(" ".join(args.tag), UserRef("cli", "local")):
            if progress.done:
                final = progress
            else:
                print(trend_progress_text(progress).splitlines()[-1], flush=True)
        if final is None:  # not reached: the last snapshot is always done
            return 1
        print(trend_progress_text(final), flush=True)
        return 1 if final.error and not final.found else 0
    finally:
        await service.close()


async def _serve(settings: Settings, frontends_for) -> int:
    """Build the service once, run the front-ends ``frontends_for(service)`` returns."""
    from bot.app import run_frontends

    service = await _service(settings)
    try:
        return await run_frontends(frontends_for(service))
    finally:
        await service.close()


async def cmd_telegram(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import FrontEnd
    from bot.telegram_bot import run_telegram

    opts = {"webhook_url": args.webhook_url, "listen": args.listen, "port": args.port}
    if not (settings.telegram_bot_token and settings.telegram_bot_token.get_secret_value().strip()):
        print("No Telegram bot token: set TELEGRAM_BOT_TOKEN (from @BotFather).", file=sys.stderr)
        return 2
    return await _serve(settings, lambda svc: [FrontEnd("telegram", lambda: run_telegram(svc, settings, **opts))])


async def cmd_discord(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import FrontEnd
    from bot.discord_bot import run_discord

    if not (settings.discord_bot_token and settings.discord_bot_token.get_secret_value().strip()):
        print("No Discord bot token: set DISCORD_BOT_TOKEN.", file=sys.stderr)
        return 2
    return await _serve(settings, lambda svc: [FrontEnd("discord", lambda: run_discord(svc, settings))])


def _web_frontend(service, settings: Settings, host: str | None, port: int | None):
    from bot.app import FrontEnd
    from bot.web import run_web

    def ready(url: str) -> None:
        print(f"fashionbot web chat: {url}  (Ctrl-C stops)", flush=True)

    return FrontEnd("web", lambda: run_web(service, settings, host=host, port=port, on_ready=ready))


async def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    return await _serve(settings, lambda svc: [_web_frontend(svc, settings, args.host, args.port)])


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Every front-end whose token is set, in one process, on one service (plus the web
    chat with --web)."""
    from bot.app import configured_bots

    def frontends(svc):
        found = configured_bots(svc, settings)
        if args.web:
            found.append(_web_frontend(svc, settings, args.host, args.port))
        return found

    return await _serve(settings, frontends)


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bot.demo import run_demo

    return await run_demo(settings, full=args.full, limit=args.limit, host=args.host, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fashionbot", description="Visual fashion search: a photo in, similar items out.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="put products into the catalogue")
    isub = ingest.add_subparsers(dest="source", required=True)
    fm = isub.add_parser("fashion-mnist", help="Fashion-MNIST products (Debian's dataset-fashion-mnist)")
    fm.add_argument("--limit", type=int, default=None, help="only the first N images")
    fm.add_argument("--split", choices=["train", "test"], default="train")
    feed = isub.add_parser("feed", help="a product feed: Google Merchant CSV/JSONL, or a Kaggle styles.csv")
    feed.add_argument("file")

    rec = sub.add_parser("recommend", help="the 10 most similar items to a photo")
    rec.add_argument("photo")
    rec.add_argument("--json", action="store_true")
    rec.add_argument("-k", type=int, default=10)

    sub.add_parser("about", help="backbone, weights, catalogue and index state")
    sub.add_parser("reindex", help="re-embed (if the backbone changed) and rebuild the index")
    tg = sub.add_parser("telegram", help="run the Telegram bot (long polling, or a webhook)")
    tg.add_argument("--webhook-url", help="public https URL Telegram posts updates to (default: long polling)")
    tg.add_argument("--listen", default="127.0.0.1", help="address the webhook server listens on")
    tg.add_argument("--port", type=int, default=8443, help="port the webhook server listens on")
    sub.add_parser("discord", help="run the Discord bot")
    for name, text in (("web", "run the local web chat"), ("run", "run every bot whose token is set, on one service")):
        p = sub.add_parser(name, help=text)
        if name == "run":
            p.add_argument("--web", action="store_true", help="serve the web chat too")
        p.add_argument("--host", default=None, help="web chat address (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=None, help="web chat port (default 8080)")
    demo = sub.add_parser("demo", help="fill the catalogue, start a demo shop and the web chat (and bots with tokens)")
    demo.add_argument("--full", action="store_true", help="all 70,000 Fashion-MNIST images instead of a subset")
    demo.add_argument("--limit", type=int, default=None, help="how many Fashion-MNIST training images (default 5000)")
    demo.add_argument("--host", default=None, help="web chat address (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=None, help="web chat port (default 8080)")

    trend = sub.add_parser("trend", help="search the configured shops for a trend and add what they sell")
    trend.add_argument("tag", nargs="*", help="e.g. dress (none: list recent trends)")

    from bot import quality_cli

    quality_cli.add_parsers(sub)
    return parser


COMMANDS = {
    "ingest": cmd_ingest,
    "recommend": cmd_recommend,
    "about": cmd_about,
    "reindex": cmd_reindex,
    "trend": cmd_trend,
    "telegram": cmd_telegram,
    "discord": cmd_discord,
    "web": cmd_web,
    "run": cmd_run,
    "demo": cmd_demo,
    "eval": lambda args, settings: _quality("cmd_eval", args, settings),
    "train-head": lambda args, settings: _quality("cmd_train_head", args, settings),
}


def _quality(name: str, args: argparse.Namespace, settings: Settings):
    from bot import quality_cli

    return getattr(quality_cli, name)(args, settings)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings()
    except Exception as err:  # pydantic ValidationError: a bad environment variable
        print(f"Invalid settings: {err}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(COMMANDS[args.command](args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        from engine.vision.backbones import BackboneUnavailable

        if isinstance(err, BackboneUnavailable):  # missing weights, a bad or foreign head file
            print(f"Can't load the model: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
