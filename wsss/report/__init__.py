"""``results.json`` -> ``RUN/report.md`` + ``RUN/figures/*.png`` (``wsss report --run RUN``).

Matplotlib is imported only when a report is written, never by ``import wsss.report``.
"""

from wsss.report.report import write_report

__all__ = ["write_report"]
