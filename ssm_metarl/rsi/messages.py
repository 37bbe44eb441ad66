"""What the rsi commands print: one row per cycle, and one line per failure.

A cycle's row shows the current model's validation score, the best candidate's
improvement with its interval, the decision and the test score. A failure is one line
that names the problem and, where there is one, the fix; a URL in it has its password
masked. Chapter 5.
"""

from __future__ import annotations

import errno

from .storage import check_journal, mask

__all__ = ["row", "header", "one_line", "damaged", "interrupted"]

_ROW = (
    "{cycle:>5}  {validation:>7.1f}  {best:>22}  {decision:<8}  {test:>7.1f}  "
    "{seconds:>5.0f}"
)


def row(report) -> str:
    """One cycle's row of the table `rsi` prints (chapter 5)."""
    scored = [c for c in report.candidates if c.get("improvement")]
    best = max(scored, key=lambda c: c["improvement"]["mean"], default=None)
    text = (
        "none scored"
        if best is None
        else "{mean:+.1f} [{low:+.1f}, {high:+.1f}]".format(**best["improvement"])
    )
    return _ROW.format(
        cycle=report.cycle,
        validation=report.validation["mean"],
        best=text,
        decision="accepted" if report.accepted is not None else "kept",
        test=report.test["mean"],
        seconds=report.seconds,
    )


def header() -> str:
    """The table's header (chapter 5)."""
    return (
        _ROW.replace(":>7.1f", ":>7")
        .replace(":>5.0f", ":>5")
        .format(
            cycle="cycle",
            validation="valid.",
            best="best improvement [CI]",
            decision="decision",
            test="test",
            seconds="sec",
        )
    )


def one_line(exc: BaseException) -> str:
    """An error as one line, password masked; a full disk says so, whatever layer
    noticed it (torch says only "unexpected pos"). Chapter 5."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if getattr(exc, "errno", None) == errno.ENOSPC or "unexpected pos" in text:
        text = f"no space left on device ({text[:100]})"
    return mask(text)


def damaged(where, exc) -> str:
    """What is wrong with a journal that stopped parsing mid-run, in the words of the
    journal check (chapter 5)."""
    if where is not None and where.kind == "journal":
        try:
            check_journal(where.path)
        except RuntimeError as found:
            return str(found)
    return f"the storage returned a record that is not JSON ({exc.msg})"


def interrupted(agent) -> str:
    """The line Ctrl-C or SIGTERM ends `rsi` with: what the run kept (chapter 5)."""
    if agent is None:
        return "interrupted before the run started: nothing was written"
    return (
        f"interrupted: the run in {agent.run_dir} keeps its {len(agent.history)} "
        "complete cycle(s); run the same command again to resume it"
    )
