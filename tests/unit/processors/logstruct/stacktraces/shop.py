"""Generates python_logging.log (logger.exception with chained exceptions, through the
standard logging module) and python_uncaught.txt (an uncaught, chained traceback on
stderr). Run by generate.sh with the real interpreter."""

import logging
import sys

logging.basicConfig(
    stream=sys.stdout,
    format="%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s",
    level=logging.INFO)
log = logging.getLogger("shop.checkout")


class PaymentError(Exception):
    pass


def charge(cart: dict[str, int]) -> int:
    return cart["total"]


def checkout(cart: dict[str, int]) -> int:
    try:
        return charge(cart)
    except KeyError as exc:
        raise PaymentError("cannot charge cart 42") from exc


def parse(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        defaults: dict[str, int] = {}
        return defaults["fallback"]  # a bug while handling: implicit chaining


def group() -> None:
    """An exception group (Python 3.11+), logged."""
    errors = []
    for raw in ("x", "y"):
        try:
            parse(raw)
        except KeyError as exc:
            errors.append(exc)
    try:
        raise ExceptionGroup("2 lines failed", errors)
    except ExceptionGroup:
        log.exception("batch import failed")


if __name__ == "__main__":
    if sys.argv[1:] == ["uncaught"]:
        parse("abc")
    if sys.argv[1:] == ["group"]:
        group()
        sys.exit(0)
    log.info("order received: id=42")
    try:
        checkout({})
    except PaymentError:
        log.exception("checkout failed for order 42")
    log.warning("retrying order 42")
    try:
        parse("x1")
    except KeyError:
        log.exception("cannot parse quantity")
    log.info("order 42 done")

