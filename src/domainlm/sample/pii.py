"""Synthetic personal data for the noisy web copies, valid by the rules a real detector checks.

Written by hand because the rules are short public standards and no well-kept library generates
*valid* Chinese ID numbers: GB 11643 (ID check digit, ISO 7064 MOD 11-2) and Luhn (bank cards).
"""

from __future__ import annotations

import random

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# Real administrative division codes (province/city/district), so the first six digits look right.
_REGIONS = ("110105", "310115", "440305", "440106", "330106", "320106", "510107", "420103", "350203", "370202")


def id_check_digit(first17: str) -> str:
    """GB 11643-1999 check digit of the first 17 digits."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def valid_id_number(number: str) -> bool:
    return len(number) == 18 and number[:17].isdigit() and id_check_digit(number[:17]) == number[17].upper()


def id_number(rng: random.Random) -> str:
    first17 = (rng.choice(_REGIONS) + f"{rng.randint(1960, 2004)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
               + f"{rng.randint(0, 999):03d}")
    return first17 + id_check_digit(first17)


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass the Luhn check."""
    total = 0
    for i, d in enumerate(reversed(partial)):
        n = int(d)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return str((10 - total % 10) % 10)


def valid_luhn(number: str) -> bool:
    return number.isdigit() and len(number) >= 12 and luhn_check_digit(number[:-1]) == number[-1]


def bank_card(rng: random.Random) -> str:
    # 62xxxx is the UnionPay range; 16 or 19 digits like real Chinese debit/credit cards.
    length = rng.choice((16, 19))
    partial = "62" + "".join(str(rng.randint(0, 9)) for _ in range(length - 3))
    return partial + luhn_check_digit(partial)


def mobile(rng: random.Random) -> str:
    return "1" + rng.choice("3456789") + "".join(str(rng.randint(0, 9)) for _ in range(9))


_EMAIL_NAMES = ("wangfang", "lixiaoming", "zhangwei", "chenjing", "liuyang", "zhaolei", "sunli", "zhoujie", "harbor_fan",
                "money_talk", "amy.chen", "tom.wu")
_EMAIL_DOMAINS = ("example.com", "example.cn", "mail.example.org")


def email(rng: random.Random) -> str:
    return f"{rng.choice(_EMAIL_NAMES)}{rng.randint(1, 999)}@{rng.choice(_EMAIL_DOMAINS)}"


_ADDR_CITIES = (("广东省深圳市南山区", "粤海街道"), ("浙江省杭州市西湖区", "文三路"), ("上海市浦东新区", "张江路"),
                ("四川省成都市武侯区", "科华北路"), ("湖北省武汉市江汉区", "解放大道"), ("北京市朝阳区", "望京街"))


def address(rng: random.Random) -> str:
    city, street = rng.choice(_ADDR_CITIES)
    return f"{city}{street}{rng.randint(1, 300)}号{rng.randint(1, 30)}栋{rng.randint(101, 2508)}室"


GENERATORS = {"id_card": id_number, "mobile": mobile, "bank_card": bank_card, "email": email, "address": address}
