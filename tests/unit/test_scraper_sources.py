"""Shop configs: templates, selectors, loading from TOML/JSON, and the platforms we refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scraper.sources import ForbiddenSource, Shop, ShopConfigError, check_platform, load_shops


def test_search_url_encodes_the_query() -> None:
    shop = Shop("A", "https://shop.test/search?q={query}&sort=new")
    assert shop.search_url_for(" summer dress ") == "https://shop.test/search?q=summer%20dress&sort=new"
    assert shop.search_url_for("a&b=c/#d") == "https://shop.test/search?q=a%26b%3Dc%2F%23d&sort=new"
    assert (
        Shop("B", "https://shop.test/s/{query}/").search_url_for("t-shirt ü") == "https://shop.test/s/t-shirt%20%C3%BC/"
    )
    assert shop.host == "shop.test"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "search_url": "https://a.test/?q={query}"}, "needs a name"),
        ({"name": "A", "search_url": "https://a.test/"}, "must contain {query}"),
        ({"name": "A", "search_url": "ftp://a.test/{query}"}, "http"),
        ({"name": "A", "search_url": "/relative/{query}"}, "http"),
        (
            {"name": "A", "search_url": "https://a.test/{query}", "selectors": {"titel": "h1"}},
            "unknown selector 'titel'",
        ),
        (
            {"name": "A", "search_url": "https://a.test/{query}", "selectors": {"title": "h1[["}},
            "bad CSS selector 'title'",
        ),
    ],
)
def test_bad_shops_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ShopConfigError, match=message.replace("{", r"\{").replace("}", r"\}").replace("[", r"\[")):
        Shop(**kwargs)


@pytest.mark.parametrize(
    "host",
    ["instagram.com", "www.instagram.com", "m.facebook.com", "fb.com", "www.tiktok.com", "pinterest.com",
     "de.pinterest.co.uk", "pin.it", "x.com", "twitter.com", "threads.net", "www.linkedin.com"],
)  # fmt: skip
def test_login_walled_platforms_are_refused(host: str) -> None:
    with pytest.raises(ForbiddenSource, match="requires a login and its terms forbid automated collection"):
        Shop("Social", f"https://{host}/search?q={{query}}")


@pytest.mark.parametrize("host", ["shop.test", "threadsandco.test", "box.com", "pinstripe.test", "facebookish.test"])
def test_ordinary_shops_are_not_mistaken_for_platforms(host: str) -> None:
    check_platform(host)  # no exception


def test_shop_is_hashable_and_selectors_are_read_only() -> None:
    shop = Shop("A", "https://a.test/{query}", selectors={"title": "h1"})
    assert hash(shop) == hash(Shop("A", "https://a.test/{query}", selectors={"title": "h2"}))
    with pytest.raises(TypeError):
        shop.selectors["title"] = "h2"  # type: ignore[index]


def test_load_toml(tmp_path: Path) -> None:
    path = tmp_path / "shops.toml"
    path.write_text(
        """
[[shops]]
name = "Shop A"
search_url = "https://a.test/search?q={query}"

[[shops]]
name = "Shop B"
search_url = "https://b.test/find/{query}"
enabled = false
[shops.selectors]
product_link = "div.tile a.go"
price = ".cost"
""",
        encoding="utf-8",
    )
    shops = load_shops(path)
    assert [(s.name, s.enabled, dict(s.selectors)) for s in shops] == [
        ("Shop A", True, {}),
        ("Shop B", False, {"product_link": "div.tile a.go", "price": ".cost"}),
    ]


def test_load_json_both_shapes(tmp_path: Path) -> None:
    entry = {"name": "J", "search_url": "https://j.test/?q={query}"}
    (tmp_path / "a.json").write_text(json.dumps({"shops": [entry]}))
    (tmp_path / "b.json").write_text(json.dumps([entry]))
    assert (
        load_shops(tmp_path / "a.json") == load_shops(tmp_path / "b.json") == [Shop("J", "https://j.test/?q={query}")]
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[[shops]]\nname = "A"\nsearch_url = "https://a.test/{query}"\nselector = {}\n',
            r"shop #1: unknown keys \['selector'\]",
        ),
        (
            '[[shops]]\nname = "A"\nsearch_url = "https://a.test/{query}"\n'
            '[[shops]]\nname = "a"\nsearch_url = "https://b.test/{query}"\n',
            "shop #2: duplicate shop name 'a'",
        ),
        (
            '[[shops]]\nname = "Insta"\nsearch_url = "https://instagram.com/explore/tags/{query}"\n',
            "shop #1: shop 'Insta': instagram.com",
        ),
        ("shops = 3\n", "expected a list of shops"),
        ("[[shops]\n", "shops.toml"),
    ],
)
def test_load_errors_name_the_entry(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "shops.toml"
    path.write_text(content)
    with pytest.raises(ShopConfigError, match=message):
        load_shops(path)


def test_load_refuses_other_formats_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "shops.yaml").write_text("shops: []")
    with pytest.raises(ShopConfigError, match="use a .toml or .json file"):
        load_shops(tmp_path / "shops.yaml")
    with pytest.raises(ShopConfigError, match="cannot read"):
        load_shops(tmp_path / "missing.toml")


def test_forbidden_source_is_a_config_error() -> None:
    assert issubclass(ForbiddenSource, ShopConfigError)


def test_shops_file_scopes_allow_hosts_and_knows_the_next_selector(tmp_path: Path) -> None:
    path = tmp_path / "shops.toml"
    path.write_text(
        '[[shops]]\nname = "LAN"\nsearch_url = "http://shop.lan:8080/s?q={query}"\nallow_hosts = ["shop.lan:8080"]\n'
        '[shops.selectors]\nnext = "nav a.more"\n'
        '[[shops]]\nname = "Web"\nsearch_url = "https://web.test/s?q={query}"\n'
    )
    lan, web = load_shops(path)
    assert lan.allow_hosts == ("shop.lan:8080",) and web.allow_hosts == ()
    assert dict(lan.selectors) == {"next": "nav a.more"}


@pytest.mark.parametrize(
    ("value", "message"),
    [('["shop.lan"]', "needs a port"), ('"shop.lan:8080"', "must be a list"), ("[8080]", "must be a list")],
)
def test_bad_allow_hosts_name_the_entry(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "shops.toml"
    path.write_text(
        f'[[shops]]\nname = "LAN"\nsearch_url = "http://shop.lan:8080/s?q={{query}}"\nallow_hosts = {value}\n'
    )
    with pytest.raises(ShopConfigError, match=f"shop #1: .*{message}"):
        load_shops(path)
