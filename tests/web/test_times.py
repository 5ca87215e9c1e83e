"""Times as pages show them: relative words, the exact second in UTC on hover and in
``<time datetime>``, never microseconds."""

import re
from datetime import UTC, datetime, timedelta

from host.web.helpers import relative, when

NOW = datetime(2026, 12, 8, 12, 0, 0, tzinfo=UTC)


def test_relative_words():
    cases = [(timedelta(seconds=10), "just now"), (timedelta(seconds=100), "2 min ago"),
             (timedelta(minutes=59), "59 min ago"), (timedelta(hours=3), "3 h ago"),
             (timedelta(hours=30), "30 h ago"), (timedelta(days=6), "6 days ago"),
             (timedelta(days=40), "29 Oct 2026"), (-timedelta(minutes=5), "in 5 min")]
    assert [relative(NOW - delta, NOW) for delta, _ in cases] == [words for _, words in cases]


def test_the_exact_time_is_to_the_second_in_utc():
    moment = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=3)
    shown = str(when(moment))
    exact = moment.replace(microsecond=0)
    assert shown == (f'<time datetime="{exact.isoformat().replace("+00:00", "Z")}" '
                     f'title="{exact.strftime("%Y-%m-%d %H:%M:%S")} UTC">3 min ago</time>')
    assert str(when(exact.isoformat())) == shown  # an ISO string reads the same
    assert str(when(None)) == "never"


def test_pages_show_no_microseconds(hosted):
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")
    for path in ("/account", "/audit", "/installations"):
        page = client.get(path).get_data(as_text=True)
        assert not re.search(r"\d\d:\d\d:\d\d\.\d", page), path
        assert "just now</time>" in page or path == "/installations", path
