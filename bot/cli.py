"""The ``fashionbot`` command. Each subcommand builds the service once and calls it."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from engine.config import Settings
from engine.types import Recommendation, ScoredItem

if TYPE_CHECKING:
    from engine.api import AdminAPI


def _scored_json(s: ScoredItem) -> dict[str, Any]:
    return {
        "rank": s.rank,
        "id": s.item.id,
        "title": s.item.title,
        "url": s.item.url,
        "image": s.item.image_url,
        "price": s.item.price,
        "currency": s.item.currency,
        "category": s.item.category,
        "shop": s.item.shop,
        "score": s.score,
    }


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    """``recommend --json``: the garments (boxes relative to the photo, 0..1), each with
    its items, and ``items``: what is shown first (the best garment's, or the whole photo's)."""
    return {
        "backbone": rec.backbone,
        "no_garment": rec.no_garment,
        "photo_size": list(rec.photo_size) if rec.photo_size else None,
        "garment": rec.garment,
        "garments": [
            {
                "number": g.number,
                "group": g.group,
                "label": g.label,
                "confidence": g.confidence,
                "box": {"x0": g.box.x0, "y0": g.box.y0, "x1": g.box.x1, "y1": g.box.y1},
                "items": [_scored_json(s) for s in g.items],
            }
            for g in rec.garments
        ],
        "items": [_scored_json(s) for s in rec.items],
    }


def _causes(err: BaseException) -> list[BaseException]:
    """The error and what it wraps (``__cause__``/``__context__``, SQLAlchemy's ``orig``)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]
    return seen


def storage_error_line(err: BaseException, settings: Settings) -> str | None:
    """One line for a data directory that can't be written (full, read-only, no
    permission), else None. Nothing was lost: the database commits whole batches and the
    index is replaced only by a complete new file."""
    import errno

    where = settings.data_dir
    try:  # SQLite says only "disk I/O error" when it can't even open its journal
        full = shutil.disk_usage(where).free < 1 << 20
    except OSError:
        full = False
    try:
        read_only = bool(os.statvfs(where).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    for e in _causes(err):
        text = str(e).lower()
        code = getattr(e, "errno", None)
        if code == errno.ENOSPC or "disk is full" in text or "no space left" in text or (full and "disk i/o" in text):
            return f"The data directory {where} is full (no space left on the device); nothing was lost. Free some space and run the command again."
        if (
            code == errno.EROFS
            or "readonly database" in text
            or "read-only file system" in text
            or (read_only and ("unable to open" in text or "disk i/o" in text))
        ):
            return f"The data directory {where} is read-only; nothing was changed. Make it writable and run the command again."
        if code == errno.EACCES or "permission denied" in text:
            return (
                f"No permission to write to the data directory {where}. Fix its permissions and run the command again."
            )
    return None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fashionbot")
    except PackageNotFoundError:
        return "unknown"


def _progress(total: int | None, desc: str, unit: str = "img") -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


async def _service(settings: Settings) -> AdminAPI:
    from engine.service import FashionService

    return await FashionService.create(settings)


async def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    if args.source == "feed" and not await asyncio.to_thread(Path(args.file).exists):
        print(f"No such feed: {args.file}", file=sys.stderr)
        return 2
    service = await _service(settings)
    try:
        if args.source == "fashion-mnist":
            bar = _progress(None, "embedding Fashion-MNIST")
            report = await service.ingest_fashion_mnist(split=args.split, limit=args.limit, progress=bar)
        else:
            path = Path(args.file)
            bar = _progress(None, f"ingesting {path.name}", unit="row")
            report = await service.ingest_feed(path, progress=bar)
        bar.close()
        for line, reason in report.bad_rows:
            print(f"line {line}: skipped: {reason}", file=sys.stderr)
        print(f"Ingest done: {report.summary()}. Catalogue: {await service.catalogue_size()} items.")
        return 0
    finally:
        await service.close()


async def cmd_recommend(args: argparse.Namespace, settings: Settings) -> int:
    from bot.render import recommendation_text
    from engine.errors import ServiceError

    path = Path(args.photo)
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as err:
        print(f"Can't read {path}: {err.strerror}", file=sys.stderr)
        return 2
    service = await _service(settings)
    try:
        rec = await service.recommend(data, k=args.k, whole_photo=args.whole)
    except (ServiceError, ValueError) as err:
        print(str(err), file=sys.stderr)
        return 1
    finally:
        await service.close()
    if args.json:
        print(json.dumps(recommendation_json(rec), ensure_ascii=False, indent=2))
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
        count = await service.reindex(progress=bar)
        bar.close()
        about = await service.about()
        model = about.backbone + (f" + head {about.head.split(' ', 1)[0]}" if about.head else "")
        print(f"Index rebuilt with {model}: {count} items.")
    finally:
        await service.close()
    return 0


async def cmd_trend(args: argparse.Namespace, settings: Settings) -> int:
    """``fashionbot trend TAG``: search the configured shops behind one progress bar (on
    stderr, like ``ingest``), then one summary on stdout; without TAG, the recent trends."""
    from bot.render import trend_progress_text, trends_text
    from engine.types import UserRef

    service = await _service(settings)
    try:
        if not args.tag:
            print(trends_text(await service.trends()))
            return 0
        final = None
        bar = _progress(None, f"trend {' '.join(args.tag)}", unit="product")
        async for progress in service.trend(" ".join(args.tag), UserRef("cli", "local")):
            bar.set_description_str(f"trend {progress.tag}", refresh=False)
            if progress.done:
                final = progress
                break
            bar.total = max(progress.found, bar.total or 0) or None
            bar.n = progress.indexed + progress.skipped
            bar.set_postfix_str(
                f"shops {progress.shops_searched}/{progress.shops_total}, indexed {progress.indexed}", refresh=True
            )
        bar.close()
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
    from bot.telegram import run_telegram

    opts = {"webhook_url": args.webhook_url, "listen": args.listen, "port": args.port}
    if not (settings.telegram_bot_token and settings.telegram_bot_token.get_secret_value().strip()):
        print("No Telegram bot token: set TELEGRAM_BOT_TOKEN (from @BotFather).", file=sys.stderr)
        return 2
    return await _serve(settings, lambda svc: [FrontEnd("telegram", lambda: run_telegram(svc, settings, **opts))])


async def cmd_discord(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import FrontEnd
    from bot.discord import run_discord

    if not (settings.discord_bot_token and settings.discord_bot_token.get_secret_value().strip()):
        print("No Discord bot token: set DISCORD_BOT_TOKEN.", file=sys.stderr)
        return 2
    if args.sync:
        settings.discord_sync = True
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
    parser = argparse.ArgumentParser(
        prog="fashionbot", description="Visual fashion search: a photo in, similar items out."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more: -v for progress (INFO), -vv for DEBUG"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="put products into the catalogue")
    isub = ingest.add_subparsers(dest="source", required=True)
    fm = isub.add_parser("fashion-mnist", help="Fashion-MNIST products (Debian's dataset-fashion-mnist)")
    fm.add_argument("--limit", type=int, default=None, help="only the first N images")
    fm.add_argument(
        "--split", choices=["train", "test"], default="train", help="which Fashion-MNIST split (default: train)"
    )
    feed = isub.add_parser("feed", help="a product feed: Google Merchant CSV/JSONL, or a Kaggle styles.csv")
    feed.add_argument(
        "file", help="the feed file (CSV or JSON lines with id,title,link,image_link,price,…) or a Kaggle styles.csv"
    )

    rec = sub.add_parser("recommend", help="the garments in a photo and the most similar items for each")
    rec.add_argument("photo", help="a JPEG, PNG, WebP, GIF or BMP file")
    rec.add_argument("--json", action="store_true", help="print JSON (garments with boxes, categories and items)")
    rec.add_argument(  # no default of its own: FASHIONBOT_TOP_K decides, as on every front-end
        "-k", type=int, default=None, metavar="K", help="items per garment (default: FASHIONBOT_TOP_K, 10)"
    )
    rec.add_argument("--whole", action="store_true", help="search the whole photo instead of each garment")

    sub.add_parser("about", help="backbone, weights, catalogue and index state")
    sub.add_parser("reindex", help="re-embed (if the backbone changed) and rebuild the index")
    tg = sub.add_parser("telegram", help="run the Telegram bot (long polling, or a webhook)")
    tg.add_argument("--webhook-url", help="public https URL Telegram posts updates to (default: long polling)")
    tg.add_argument("--listen", default="127.0.0.1", help="address the webhook server listens on")
    tg.add_argument("--port", type=int, default=8443, help="port the webhook server listens on")
    dc = sub.add_parser("discord", help="run the Discord bot")
    dc.add_argument("--sync", action="store_true", help="sync the slash commands now (default: only when they changed)")
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

    from engine.training import cli as quality_cli

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
    "train-crop-adapter": lambda args, settings: _quality("cmd_train_crop_adapter", args, settings),
}


def _quality(name: str, args: argparse.Namespace, settings: Settings):
    from engine.training import cli as quality_cli

    return getattr(quality_cli, name)(args, settings)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except ValidationError as err:  # a bad environment variable: one line each, named as it is set
        for problem in err.errors():
            name = "FASHIONBOT_" + "_".join(str(p) for p in problem["loc"]).upper()
            print(f"Invalid setting {name}: {problem['msg']}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(COMMANDS[args.command](args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        from engine.errors import BackboneUnavailable

        if isinstance(err, BackboneUnavailable):  # missing weights, a bad or foreign head file
            print(f"Can't load the model: {err}", file=sys.stderr)
            return 2
        line = storage_error_line(err, settings)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
