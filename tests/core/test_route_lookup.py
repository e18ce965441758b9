"""RouteTable.lookup: the memoised answer every request asks for."""

from __future__ import annotations

from piimw.routes import Route, RouteTable


def table(*routes: Route) -> RouteTable:
    t = RouteTable()
    for r in routes:
        t.add(r)
    return t


def test_template_first_then_path() -> None:
    me = Route("GET", "/users/me")
    by_id = Route("GET", "/users/{id}")
    t = table(by_id, me)
    assert t.lookup("GET", "/users/{pk}", "/users/me") is by_id  # the framework's template
    assert t.lookup("GET", None, "/users/me") is me  # no template: the path
    # A template the table does not know never switches protection off: the path decides.
    assert t.lookup("GET", "/people/{slug:path}", "/users/7") is by_id
    assert t.lookup("POST", None, "/users/7") is None


def test_memo_agrees_with_the_unmemoised_lookups_and_forgets_on_add() -> None:
    t = table(Route("GET", "/a/{x}"))
    for _ in range(2):  # second round answers from the memo
        assert t.lookup("GET", None, "/a/1") is t.match("GET", "/a/1")
        assert t.lookup("GET", None, "/b") is None
    b = Route("GET", "/b")
    t.add(b)
    assert t.lookup("GET", None, "/b") is b


def test_memo_is_bounded() -> None:
    t = table(Route("GET", "/items/{id}"))
    for i in range(20_000):
        assert t.lookup("GET", None, f"/items/{i}") is not None
    assert len(t._memo) <= 8192
