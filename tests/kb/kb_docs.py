"""The hand-written corpus the knowledge-base tests share (zh, en, a table, traditional characters), and a
wait the kill -9 tests share."""

import subprocess
import time
from pathlib import Path

DOCS = [
    {
        "id": "deposit",
        "source": "deposit.md",
        "meta": {"title": "活期存款"},
        "text": (
            "# 海港银行活期存款\n\n## 利率\n海港银行活期存款年利率为0.35%。按季结息，每季末月20日为结息日。\n\n"
            "## 费用\n| 项目 | 费用 |\n|---|---|\n| 开户 | 免费 |\n| 小额账户管理费 | 每月3元 |\n"
        ),
    },
    {
        "id": "card",
        "source": "card.md",
        "meta": {},
        "text": "# 白金信用卡\n\n海港银行白金信用卡年费为800元，每年刷卡满12次免次年年费。取现手续费为取现金额的1%。",
    },
    {
        "id": "mortgage",
        "source": "mortgage.txt",
        "meta": {"title": "Harbor Bank Mortgage"},
        "text": "# Fixed-rate mortgage\n\nThe Harbor fixed-rate mortgage has a term of up to 30 years. The arrangement fee is CNY 500.",
    },
    {
        "id": "gold",
        "source": "gold.md",
        "meta": {},
        "text": "# 積存金\n\n海港積存金每克買入價以上海黃金交易所價格為準，起存量為1克。",
    },
]


def wait_for_shards(child: subprocess.Popen, shards: Path, count: int = 2, timeout: float = 300) -> None:
    """Until the building ``child`` has written ``count`` embedding checkpoint shards under ``shards``."""
    deadline = time.monotonic() + timeout
    while len(list(shards.glob("*/shard-*.npz"))) < count:
        assert child.poll() is None, f"the build ended before it could be killed: {child.communicate()}"
        assert time.monotonic() < deadline, f"no checkpoint within {timeout:.0f} s"
        time.sleep(0.05)
