"""The one exception type users see: the CLI prints its message on one line and exits 2."""


class KenpruneError(Exception):
    """A problem with the user's input or environment, described in one line with the fix."""


def describe(exc: BaseException, limit: int = 160) -> str:
    """`Type: message` on one line (whitespace collapsed, cut at `limit`): a library's error inside ours."""
    text = " ".join(str(exc).split())[:limit]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
