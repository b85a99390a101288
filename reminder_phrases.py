"""A built-in phrase grammar that reads common reminder requests in Chinese and English, deterministically.

It serves when the model is not offered tools (`REMINDER_TOOLS=false`) or its tool call fails: "20分钟后提醒我喝水",
"每周五下午5点提醒我写周报", "remind me tomorrow at 8am to call mom", "every weekday at 9 remind me to stand up".

Why a grammar of our own rather than a library: `dateparser` 1.5 (tried on this issue's phrases) reads "20分钟后",
"in 20 minutes" and "tomorrow at 8am", but returns nothing for "明天早上8点", "今晚9点半", "后天下午3点" or
"周五下午5点", nor for any whole sentence ("明天早上8点提醒我喝水", "in 20 minutes remind me to call mom"), and it
knows no recurring schedules. `recurrent` (English only, RRULE output, last release 2021) and `jionlp` (a large
Chinese-only NLP toolkit) were not tried: each could serve one language at most, and the request words, the text
and the crontab fields would still be ours. The issue asks for this small grammar, so it is written out below.

A message is a reminder request when it holds a request word (提醒我, 叫我, 设个提醒, remind me, set a reminder) and
one schedule: a delay, a clock time with an optional day or weekday, a recurrence with a clock time, or an interval
that divides the hour or the day. Anything less, two of a kind ("明天8点提醒我9点开会"), or a date it cannot read
(1号, 12月1日, the 5th, this weekend) is not one: the caller leaves it to the model. The readings it chooses:
- a clock without am/pm and without a day is the first of 8:00 / 20:00 still ahead (today, else tomorrow);
- with a day named (今天, tomorrow, 这周一) a time already past is not a reminder; with none it is tomorrow's;
- a weekday alone is the coming one (today's if still ahead); 下周五 is next week's; "next friday" is refused
  when the coming Friday is still this week, since English speakers split on which one it means;
- 晚上12点 / midnight is the midnight ending that day; 中午12点 / 12pm is noon; 12am and 凌晨12点 are 00:00.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cron import CRONTAB_WEEKDAYS


@dataclass(frozen=True)
class ParsedReminder:
    """What to remind about and when: `at` (naive local, after now) for one-off, else `cron` (5 crontab fields)."""

    text: str
    at: datetime | None
    cron: str | None


class _NotOne(Exception):
    """The message is not a reminder request, or not an unambiguous one."""


_WIDE = str.maketrans("０１２３４５６７８９：　", "0123456789: ")
_CN_NUM = "[零〇一二两三四五六七八九十]+"
_NUM = rf"(?:\d+(?:\.\d+)?|{_CN_NUM})"
_CN_DIGITS = {digit: value for value, digit in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_EN_NUMBERS = {w: n for n, w in enumerate(["one", "two", "three", "four", "five", "six", "seven", "eight"], start=1)}
_EN_NUMBERS |= {"nine": 9, "ten": 10, "a": 1, "an": 1, "fifteen": 15, "twenty": 20, "thirty": 30, "forty-five": 45}
# Seconds per unit, keyed by its first character: 秒 分(钟) 刻钟 小时 钟头 天, s(econds) m(inutes) h(ours) d(ays).
_SECONDS = {"秒": 1, "分": 60, "刻": 900, "小": 3600, "钟": 3600, "天": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Weekdays as crontab numbers: Sunday is 0 (and 周7 is Sunday too).
_CN_DAYS = dict(zip("日一二三四五六", range(7), strict=True)) | {"天": 0, "7": 0} | {str(d): d for d in range(1, 7)}
_EN_DAYS = {name: number for number, name in enumerate(CRONTAB_WEEKDAYS)}
# Each part-of-day word and how it turns an hour into a 24-hour one (see _clock_minutes).
_PERIODS = dict.fromkeys(("凌晨", "半夜"), "small") | dict.fromkeys(("清晨", "早上", "早晨", "上午", "早"), "morning")
_PERIODS |= {"中午": "noon"} | dict.fromkeys(("午后", "下午", "傍晚"), "pm")
_PERIODS |= dict.fromkeys(("晚上", "夜里", "夜间", "晚"), "evening")
_PERIODS |= {"morning": "morning", "afternoon": "pm", "evening": "evening", "night": "evening", "am": "am", "pm": "pm"}


def _rx(pattern: str) -> re.Pattern[str]:
    """A pattern matched without regard to case (English words may come capitalised)."""
    return re.compile(pattern, re.IGNORECASE)


_EN_DAY = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_TRIGGER = _rx(
    r"(?:记得|请|帮我)?(?:提醒(?:一下|下)?我(?:一下|一声)?|叫我|喊我|设(?:置|定)?一?个提醒)|\bremind\s+me\b|\bset\s+an?\s+reminder(?:\s+for\b)?"
)
# Dates and schedules this grammar does not read (a day of the month, a month, a year, a week without a day):
# a message naming one is left to the model rather than read as if that part were not there.
_UNREAD = _rx(
    r"[\d零〇一二两三四五六七八九十]+\s*[月号]|\d+\s*日|每个?[月年]|下个?月|(?:这|下|本)个?(?:周|星期|礼拜)(?:末|$|[^一二三四五六日天1-7])"
    r"|\b(?:every|each|next|this)\s+(?:month|year|week)\b|\b(?:this|next)\s+weekend\b|\b(?:monthly|yearly|annually)\b|\b\d+(?:st|nd|rd|th)\b"
    r"|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d"
)
# A delay: its span (one or more amounts, then 后 / after 过 / after "in"), then each amount read on its own.
_CN_AMOUNT = (
    rf"(?:(?P<n>{_NUM})\s*个?\s*(?P<half>半)?|(?P<only_half>半))\s*个?\s*(?P<unit>秒钟?|分钟|分|小时|钟头|刻钟|天)"
)
_EN_AMOUNT = (
    rf"(?P<n>\d+(?:\.\d+)?|{'|'.join(sorted(_EN_NUMBERS, key=len, reverse=True))}"
    r"|(?P<only_half>half\s+an?))\s*(?P<unit>seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?)\b"
)
_CN_ANY = re.sub(r"\?P<\w+>", "?:", _CN_AMOUNT)
_EN_ANY = re.sub(r"\?P<\w+>", "?:", _EN_AMOUNT)
_DELAYS = [
    _rx(rf"(?:过\s*(?:{_CN_ANY}\s*)+(?:之后|以后|后)?|(?:{_CN_ANY}\s*)+(?:之后|以后|后))"),
    _rx(
        rf"\b(?:in|after)\s+{_EN_ANY}(?:\s*(?:and\s+)?{_EN_ANY})*|\b{_EN_ANY}(?:\s+{_EN_ANY})*\s+(?:from\s+now|later)\b"
    ),
]
_DAYS = _rx(
    r"(?:在\s*)?(?P<d>大后天|后天|明天|明日|今天|今日|今晚|明晚|今早|明早|今夜)的?"
    r"|\b(?P<e>the\s+day\s+after\s+tomorrow|tomorrow|today|tonight)(?:\s+(?P<p>morning|afternoon|evening|night))?\b"
    r"|\bthis\s+(?P<p2>morning|afternoon|evening)\b"
)
_RECURRENCES = [
    (
        _rx(r"(?:每个?|\b(?:every|each|on)\s+)?(?:工作日|(?:week|work|working\s+|business\s+)days?\b)|\bweekdays\b"),
        "1-5",
    ),
    (
        _rx(
            r"(?:每)?(?:周|星期|礼拜)一(?:到|至|-|~)(?:周|星期|礼拜)?五|\b(?:from\s+)?monday\s+(?:to|through|-)\s+friday\b"
        ),
        "1-5",
    ),
    (_rx(r"(?<![这下本上个])(?:每个?)?周末|\b(?:every|each|on)\s+weekends?\b|\bweekends\b"), "0,6"),
    (_rx(r"每天|每日|天天|\b(?:every\s*day|daily|each\s+day)\b"), "*"),
    (_rx(r"每(?P<p>晚)|\bevery\s+(?P<e>morning|afternoon|evening|night)\b"), "*"),
    (
        _rx(
            r"每个?(?:周|星期|礼拜)(?P<days>[一二三四五六日天1-7](?:\s*(?:[、,，和及与跟到至~-])?\s*(?:周|星期|礼拜)?[一二三四五六日天1-7])*)"
        ),
        "",
    ),
    (_rx(rf"\b(?:every|each)\s+(?P<days>(?:{_EN_DAY})(?:\s*(?:,|and|&|,\s*and)\s*(?:{_EN_DAY}))*)\b"), ""),
    (_rx(rf"\b(?:on\s+)?(?P<days>(?:{_EN_DAY})s(?:\s*(?:,|and|&|,\s*and)\s*(?:{_EN_DAY})s)*)\b"), ""),
]
_INTERVALS = _rx(
    rf"每(?:隔)?\s*(?P<n>{_NUM})?\s*个?\s*(?P<unit>分钟|小时|钟头)|\bevery\s+(?P<en>\d+\s*)?(?P<eu>minutes?|mins?|hours?|hrs?)\b"
)
_WEEKDAYS = _rx(
    r"(?:在\s*)?(?P<pre>下下个?|下个?|这个?|本)?(?:周|星期|礼拜)(?P<d>[一二三四五六日天1-7])"
    rf"|\b(?:on\s+)?(?:(?P<epre>this|next)\s+)?(?P<e>{_EN_DAY})\b|\bon\s+(?P<abbr>mon|tues?|wed|thu(?:rs?)?|fri|sat|sun)\b"
)
_PERIOD = "|".join(p for p in _PERIODS if not p.isascii())
_CLOCKS = [
    _rx(r"\b(?:at\s+|@\s*)?(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?\s*(?P<ap>a\.?m\.?|p\.?m\.?)(?![a-z])"),
    _rx(r"\b(?:at\s+)?(?P<h>\d{1,2}):(?P<m>\d{2})\b"),
    _rx(r"\bat\s+(?P<h>\d{1,2})(?:\s*o'?clock)?\b(?![:.]\d)"),
    _rx(r"\b(?:at\s+)?(?P<word>noon|midday|midnight)\b"),
    _rx(
        rf"(?:在\s*)?(?P<p>{_PERIOD})?\s*(?P<h>{_NUM})\s*(?::\s*(?P<m>\d{{1,2}})|[点时]钟?\s*"
        rf"(?:(?P<half>半)|(?P<q>[一三13])\s*刻|(?P<cm>{_NUM})\s*分?|整)?)"
    ),
]
_EN_PERIOD = _rx(r"\b(?:in\s+the\s+)?(?P<p>morning|afternoon|evening)\b|\bat\s+(?P<n>night)\b")
_LEADING_FILLER = _rx(r"^(?:(?:to|that|about|of|please)\b\s*|(?:要|去|该|记得|[,，:：、])\s*)+")
_TRAILING_FILLER = _rx(r"(?:[\s。．.！!？?，,、；;~～…]|吧|哦|喔|啊|呀|嘛|\bplease)+$")


class _Scan:
    """The message with each recognised part blanked out as it is taken, so what is left is the reminder text."""

    def __init__(self, message: str) -> None:
        self.rest = message

    def take(
        self, patterns: list[re.Pattern[str]], keep: Callable[[re.Match[str]], bool] = lambda match: True
    ) -> re.Match[str] | None:
        """The one match of any of `patterns` (blanked out); None if none; _NotOne if more than one."""
        found = []
        for pattern in patterns:
            for match in pattern.finditer(self.rest):
                if keep(match) and match.group(0).strip():
                    found.append(match)
                    # NUL, not a space: no later pattern's \s* may join the pieces on either side of a taken part.
                    self.rest = self.rest[: match.start()] + "\0" * len(match.group(0)) + self.rest[match.end() :]
        if len(found) > 1:
            raise _NotOne
        return found[0] if found else None


def parse_reminder(message: str, now: datetime) -> ParsedReminder | None:
    """A reminder request in plain Chinese or English, or None when the message is not one (or is ambiguous)."""
    scan = _Scan(" ".join(message.translate(_WIDE).split()))
    trigger = _TRIGGER.search(scan.rest)
    if trigger is None or _UNREAD.search(scan.rest):
        return None
    scan.take([_TRIGGER], keep=lambda match: match.start() == trigger.start())
    try:
        when = _schedule(scan, now)
    except (_NotOne, ValueError, OverflowError):
        return None
    return ParsedReminder(text=_reminder_text(scan.rest[trigger.end() :], message), **when)


def _schedule(scan: _Scan, now: datetime) -> dict:
    """`at` or `cron` from the parts of the message, taken in an order where no part can swallow another."""
    delay = scan.take(_DELAYS)
    day = scan.take([_DAYS])
    recurrence = None
    for pattern, weekdays in _RECURRENCES:
        if (match := scan.take([pattern])) is not None:
            if recurrence is not None:
                raise _NotOne
            recurrence = (match, weekdays or _weekday_list(match["days"]))
    interval = scan.take([_INTERVALS])
    weekday = scan.take([_WEEKDAYS])
    # "早一点" / "多一点" are not one o'clock.
    clock = scan.take(_CLOCKS, keep=lambda m: not re.fullmatch(r"在?[早晚]?一[点时]", m.group(0).strip()))
    en_period = scan.take([_EN_PERIOD])
    if sum(part is not None for part in (delay, day or weekday, recurrence, interval)) > 1 or (day and weekday):
        raise _NotOne
    if delay is not None or interval is not None:
        if clock is not None:
            raise _NotOne
        if interval is not None:
            return {"at": None, "cron": _interval_cron(interval)}
        at = now + _delay(delay.group(0))
        if at <= now:
            raise _NotOne
        return {"at": at, "cron": None}
    if clock is None:
        raise _NotOne
    period = _PERIODS[(en_period["p"] or en_period["n"]).lower()] if en_period else _implied_period(day, recurrence)
    minutes = _clock_minutes(clock, period)
    if recurrence is not None:
        return {"at": None, "cron": _cron(minutes[0], recurrence[1])}
    return {"at": _one_off(minutes, day, weekday, now), "cron": None}


def _implied_period(day: re.Match[str] | None, recurrence: tuple[re.Match[str], str] | None) -> str | None:
    """The part of day a day word carries: 今晚 / tonight / 每晚 / every evening / tomorrow morning."""
    if day is not None and day["d"]:
        return {"晚": "evening", "夜": "evening", "早": "morning"}.get(day["d"][-1])
    if day is not None:
        word = day["p"] or day["p2"] or ("night" if day["e"].lower() == "tonight" else None)
        return _PERIODS[word.lower()] if word else None
    if recurrence is not None:
        word = recurrence[0].groupdict().get("p") or recurrence[0].groupdict().get("e")
        return _PERIODS[word.lower()] if word else None
    return None


def _number(text: str) -> float:
    """A number written in digits, Chinese numerals (八, 十二, 三十, 两) or English words."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if text in _EN_NUMBERS:
        return _EN_NUMBERS[text]
    tens, ten, ones = text.partition("十")
    if len(tens) > 1 or len(ones) > 1 or not (ten or len(text) == 1) or not {tens, ones} <= {"", *_CN_DIGITS}:
        raise ValueError(f"{text!r} is not a number")
    if not ten:
        return _CN_DIGITS[text]
    return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0)


def _whole(text: str) -> int:
    """A whole number (hours, minutes, counts), ValueError for 1.5."""
    number = _number(text)
    if number != int(number):
        raise ValueError(f"{text!r} is not a whole number")
    return int(number)


def _delay(span: str) -> timedelta:
    """The total of the amounts in a delay span, e.g. "1小时30分钟后" or "in an hour and a half"."""
    seconds = 0.0
    for amount in re.finditer(_CN_AMOUNT if re.search("[\u4e00-\u9fff]", span) else _EN_AMOUNT, span, re.I):
        value = 0.5 if amount["only_half"] else _number(amount["n"]) + (0.5 if amount.groupdict().get("half") else 0)
        seconds += value * _SECONDS[amount["unit"][0].lower()]
    return timedelta(seconds=round(seconds))


def _weekday_list(days: str) -> str:
    """A crontab weekday list from "一三五", "二、四", "一到五", "monday and thursdays"."""
    names = re.findall(r"[一二三四五六日天1-7]|到|至|~|-|mon|tue|wed|thu|fri|sat|sun", days.lower())
    numbers: list[int] = []
    for i, name in enumerate(names):
        if name in "到至~-":
            first, last = numbers[-1], _CN_DAYS[names[i + 1]] or 7
            numbers += list(range(first + 1, last))
        else:
            numbers.append(_EN_DAYS.get(name, _CN_DAYS.get(name, 0)))
    return _day_field({n % 7 for n in numbers})


def _day_field(days: set[int]) -> str:
    """Crontab numbers as a field: a run of three or more as a range (1-5), else a list (0,6)."""
    ordered = sorted(days)
    if len(ordered) == 7:
        return "*"
    if len(ordered) >= 3 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(map(str, ordered))


def _interval_cron(match: re.Match[str]) -> str:
    """Every n minutes or hours, when n divides the hour or the day evenly (else crontab could not say it)."""
    count = _whole(match["n"] or match["en"] or "1")
    minutes = (match["unit"] or match["eu"]).lower().startswith(("分", "m"))
    if count < 1 or (60 if minutes else 24) % count:
        raise _NotOne
    step = "*" if count == 1 else f"*/{count}"
    return f"{step} * * * *" if minutes else f"0 {step} * * *"


def _clock_minutes(clock: re.Match[str], implied: str | None) -> list[int]:
    """Minutes after the day's midnight (1440 and more are the next day); two candidates when am/pm is unsaid."""
    groups = clock.groupdict()
    if groups.get("word"):
        return [720 if groups["word"].lower() in ("noon", "midday") else 1440]
    hour = _whole(clock["h"])
    minute = 30 if groups.get("half") else 15 * _whole(groups["q"]) if groups.get("q") else 0
    if groups.get("m") or groups.get("cm"):
        minute = _whole(groups.get("m") or groups["cm"])
    marker = groups.get("p") or (groups.get("ap") or "").replace(".", "")
    period = _PERIODS[marker.lower()] if marker else implied
    if minute > 59 or hour * 60 + minute > 1440 or (hour > 12 and period in ("small", "morning", "am")):
        raise _NotOne
    if period is None or hour > 12:
        # 8 o'clock unsaid: 08:00 or 20:00, whichever comes first; 12 is noon or midnight.
        return [hour * 60 + minute] + ([(hour + 12) * 60 + minute] if 1 <= hour <= 12 and period is None else [])
    half_day = hour % 12
    hour = {
        "morning": hour,
        "small": half_day,
        "am": half_day,
        "noon": hour if 6 <= hour <= 11 else half_day + 12,
        "pm": half_day + 12,
        # 晚上12点 is the midnight that ends the evening, 晚上1点 the small hours after it.
        "evening": half_day + (24 if hour <= 4 or hour == 12 else 12),
    }[period]
    return [hour * 60 + minute]


def _cron(minutes: int, weekdays: str) -> str:
    """Crontab fields for a time of day on some weekdays; a time past midnight moves the weekdays on by one."""
    if minutes >= 1440 and weekdays != "*":
        weekdays = _day_field({(int(d) + 1) % 7 for d in _expand(weekdays)})
    return f"{minutes % 60} {minutes // 60 % 24} * * {weekdays}"


def _expand(field: str) -> list[int]:
    """The numbers of a field made by _day_field."""
    if "-" in field:
        first, last = map(int, field.split("-"))
        return list(range(first, last + 1))
    return [int(d) for d in field.split(",")]


def _one_off(minutes: list[int], day: re.Match | None, weekday: re.Match | None, now: datetime) -> datetime:
    """The first candidate after now on the day named (none after it: not a reminder), else today or the next day."""
    today = datetime(now.year, now.month, now.day)
    if day is not None:
        bases = [today + timedelta(days=_day_offset(day))]
    elif weekday is not None:
        bases = _weekday_dates(weekday, today)
    else:
        bases = [today, today + timedelta(days=1)]
    upcoming = [moment for base in bases for m in minutes if (moment := base + timedelta(minutes=m)) > now]
    if not upcoming:
        raise _NotOne
    return min(upcoming)


def _day_offset(day: re.Match[str]) -> int:
    """Days from today for 今天 / 明天 / 后天 / 大后天, today / tonight / tomorrow / the day after tomorrow."""
    if day["d"]:
        return {"今": 0, "明": 1, "后": 2, "大": 3}[day["d"][0]]
    word = (day["e"] or "today").lower()
    return 2 if word.startswith("the") else 1 if word == "tomorrow" else 0


def _weekday_dates(weekday: re.Match[str], today: datetime) -> list[datetime]:
    """The dates a weekday may mean: this week's or next week's when said so, else the coming one or the one after."""
    wanted = _CN_DAYS[weekday["d"]] if weekday["d"] else _EN_DAYS[(weekday["e"] or weekday["abbr"]).lower()[:3]]
    monday = today - timedelta(days=today.weekday())
    prefix = (weekday["pre"] or weekday["epre"] or "").lower()
    if prefix.startswith("下"):
        return [monday + timedelta(days=7 * (2 if prefix.startswith("下下") else 1) + (wanted - 1) % 7)]
    if prefix.startswith(("这", "本", "this")):
        return [monday + timedelta(days=(wanted - 1) % 7)]
    ahead = (wanted - (today.weekday() + 1)) % 7
    if prefix == "next" and today.weekday() + ahead <= 6:
        raise _NotOne  # "next friday" on a Wednesday: this week's or next week's? The model may ask.
    return [today + timedelta(days=ahead), today + timedelta(days=ahead + 7)]


def _reminder_text(after_trigger: str, message: str) -> str:
    """What follows the request word, without times, filler and end punctuation; a default when nothing is left."""
    text = " ".join(after_trigger.replace("\0", " ").split())
    text = re.sub(r"(?<=[\u4e00-\u9fff]) (?=[\u4e00-\u9fff])", "", text)
    text = _TRAILING_FILLER.sub("", _LEADING_FILLER.sub("", text)).strip()
    if text:
        return text
    return "提醒" if re.search("[\u4e00-\u9fff]", message) else "Reminder"
