"""The search page (``GET /``) in a real browser: Playwright driving Debian's Chromium against the real app on a
loopback port (uvicorn in a thread), over indexes built here with the fake embedder.

Needs ``chromium`` on PATH and the ``playwright`` package (nothing is downloaded):
``apt-get install chromium`` and ``pip install -e '.[dev,serve]'``. With ``SEMSEARCH_SCREENSHOTS=1`` one more test
remakes the docs' screenshots (``docs/serve-page*.png``) with ``benchmarks/screenshot_page.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

HOW = "apt-get install chromium and pip install -e '.[dev,serve]'"
CHROMIUM = shutil.which("chromium")
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover
    sync_playwright = None
if sync_playwright is None or CHROMIUM is None:
    pytest.skip(f"browser tests need Playwright and Chromium ({'no chromium on PATH' if CHROMIUM is None else 'playwright not importable'}): {HOW}",
                allow_module_level=True)
pytest.importorskip("fastapi", reason=f"the server needs the serve extra: {HOW}")
pytest.importorskip("uvicorn", reason=f"the server needs the serve extra: {HOW}")

from fakes import HashEmbedder  # noqa: E402
from serve_helpers import running_server  # noqa: E402

from semsearch import Document, Reranker, SearchEngine  # noqa: E402
from semsearch.serve.app import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KEY = "sekrit-key"

TOPICS = [
    ("Rivers", "A river carries fresh water from the hills down to the sea."),
    ("Tides", "The sea rises and falls twice a day with the pull of the moon."),
    ("Bread", "Bread is baked from flour, water and yeast in a hot oven."),
    ("Chess", "Chess is a board game for two players with kings, queens and pawns."),
    ("Pianos", "The piano is a musical instrument played by pressing its keys."),
    ("Volcanoes", "A volcano erupts molten lava, ash and gases from deep below."),
    ("Trains", "A train runs on rails between stations, pulled by a locomotive."),
    ("Snow", "Snow falls when clouds are cold enough for ice crystals to form."),
    ("Cats", "Cats are small furry pets that purr and chase mice."),
    ("Stars", "Stars are hot balls of gas that shine by nuclear fusion."),
    ("Bees", "Bees collect nectar from flowers and make honey in the hive."),
    ("Glaciers", "A glacier is a slow river of ice that carves deep valleys."),
]
KINDS = ["notes", "guide", "facts"]
MARKUP_TITLE = '<b>Bold</b> & <img src=x onerror="window.pwned=1">'


def corpus() -> list[Document]:
    docs = []
    for i, (title, text) in enumerate(TOPICS):
        for j, kind in enumerate(KINDS):
            docs.append(Document(f"{title.lower()}-{kind}", f"{text} These {kind} are part {j + 1} of {len(KINDS)}.",
                                 title=f"{title}: {kind}",
                                 metadata={"year": 2015 + (i * 3 + j) % 10, "lang": "de" if j == 1 else "en",
                                           "topic": title.lower()}))
    long = " ".join(f"Line {n} of the weather log notes wind and cloud." for n in range(40))
    docs.append(Document("long", f"{long} Then an aurora glowed green over the hills. {long}", title="A long log",
                         metadata={"year": 2016, "lang": "en"}))
    docs.append(Document("markup", 'River markup: <script>window.pwned = 1</script> and <i>tags</i> stay text.',
                         title=MARKUP_TITLE, metadata={"year": 2024, "lang": "en", "note": "<u>x</u>"}))
    docs.append(Document("emoji", "Zeppelins \U0001F680\U0001F680\U0001F680 drift over the bay at dawn.",
                         metadata={"year": 2024, "lang": "en"}))  # characters outside the BMP: 2 UTF-16 units each
    return docs


@pytest.fixture(scope="module")
def index_dirs(tmp_path_factory, tiny_cross_encoder) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-browser")
    with SearchEngine.build(corpus(), root / "docs", embedder=HashEmbedder(), progress=False) as engine:
        engine.set_default_reranker(Reranker(str(tiny_cross_encoder)))
    SearchEngine.build(corpus()[:12], root / "other", embedder=HashEmbedder(), lexical=False, progress=False).close()
    SearchEngine.build(corpus()[:12], root / "locked", embedder=HashEmbedder(), progress=False).close()
    return {"docs": root / "docs", "other": root / "other", "locked": root / "locked"}


@pytest.fixture(scope="module")
def server(index_dirs) -> str:
    app = create_app({"docs": index_dirs["docs"], "other": index_dirs["other"]},
                     embedders={"docs": HashEmbedder(), "other": HashEmbedder()})
    with running_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def locked_server(index_dirs) -> str:
    """One index, reads need the API key."""
    app = create_app({"locked": index_dirs["locked"]}, embedders={"locked": HashEmbedder()}, api_key=KEY,
                     api_key_reads=True)
    with running_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def _page(browser, **context):
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and "401" not in msg.text
            and "Failed to load resource" not in msg.text else None)
    return ctx, page, errors


@pytest.fixture()
def page(browser):
    """A fresh tab (own sessionStorage) at desktop width; fails the test on any script error in the page."""
    ctx, page, errors = _page(browser, viewport={"width": 1200, "height": 800})
    yield page
    ctx.close()
    assert not errors, errors


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready]", state="attached")


def _lexical_search(page, server: str, query: str) -> None:
    """Open the page, type ``query``, pick the lexical mode and press Enter."""
    _open(page, server)
    page.fill("#q", query)
    page.select_option("#mode", "lexical")
    page.press("#q", "Enter")


def _search_request(page):
    return page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/search"))


# --- searching ----------------------------------------------------------------------------------

def test_enter_searches_shows_hits_highlights_and_latency(page, server):
    _open(page, server)
    page.fill("#q", "river SEA")
    with _search_request(page) as request:
        page.press("#q", "Enter")
    body = request.value.post_data_json
    assert body == {"query": "river SEA", "k": 10, "filters": [], "rerank": False}  # mode left to the index
    hits = page.locator("#results .hit")
    expect(hits).to_have_count(10)
    ids = hits.evaluate_all("els => els.map(e => e.dataset.id)")
    assert len(set(ids)) == 10 and "rivers-notes" in ids and "tides-notes" in ids
    marks = page.locator("#results mark").all_inner_texts()
    assert marks and {m.lower() for m in marks} <= {"river", "sea"}, marks
    assert "rivers" not in {m.lower() for m in marks}  # whole words only
    first = hits.first
    assert first.locator(".hit-id").inner_text() == ids[0]
    assert len(first.locator(".score.first b").inner_text().split(".")[1]) == 3  # three decimals
    assert first.locator(".score.rerank").count() == 0
    assert "year: " in first.locator(".meta").inner_text()
    latency = page.locator("#latency")
    text = latency.inner_text()
    assert "10 hits" in text and "hybrid mode" in text and "on the server" in text and "round trip" in text, text
    assert "reranked" not in text
    assert float(latency.get_attribute("data-took-ms")) >= 0 and float(latency.get_attribute("data-round-trip-ms")) > 0
    expect(page.locator("#error")).to_be_hidden()
    query = parse_qs(urlparse(page.url).query)
    assert query["q"] == ["river SEA"] and query["k"] == ["10"] and query["index"] == ["docs"]
    assert "mode" not in query and "rerank" not in query


def test_search_button_and_lexical_mode(page, server):
    _open(page, server)
    page.fill("#q", "honey")
    page.select_option("#mode", "lexical")
    with _search_request(page) as request:
        page.click("#search")
    assert request.value.post_data_json["mode"] == "lexical"
    expect(page.locator("#latency")).to_have_attribute("data-mode", "lexical")
    assert "lexical mode" in page.locator("#latency").inner_text()
    ids = page.locator(".hit").evaluate_all("els => els.map(e => e.dataset.id)")
    assert ids and all(i.startswith("bees-") for i in ids), ids  # BM25: only documents with the word
    assert parse_qs(urlparse(page.url).query)["mode"] == ["lexical"]


def test_rerank_shows_rerank_scores(page, server):
    _open(page, server)
    page.fill("#q", "the moon and the stars")
    page.fill("#k", "5")
    page.check("#rerank")
    with _search_request(page) as request:
        page.press("#q", "Enter")
    assert request.value.post_data_json["rerank"] is True and request.value.post_data_json["k"] == 5
    hits = page.locator(".hit")
    expect(hits).to_have_count(5)
    expect(page.locator("#latency")).to_have_attribute("data-reranked", "true")
    assert "reranked" in page.locator("#latency").inner_text()
    scores = hits.locator(".score.rerank b").all_inner_texts()
    assert len(scores) == 5 and all(len(s.split(".")[1]) == 3 for s in scores), scores
    assert parse_qs(urlparse(page.url).query)["rerank"] == ["1"]


def test_filters_are_split_and_sent(page, server):
    _open(page, server)
    page.fill("#q", "water")
    page.fill("#filter", " year>=2020 ; lang in en,de ;")
    with _search_request(page) as request:
        page.press("#q", "Enter")
    assert request.value.post_data_json["filters"] == ["year>=2020", "lang in en,de"]
    expect(page.locator(".hit").first).to_be_visible()
    years = [int(chip.split(": ")[1]) for chip in page.locator(".chip").all_inner_texts() if chip.startswith("year")]
    assert years and min(years) >= 2020, years


def test_bad_filter_shows_the_servers_error_and_no_hits(page, server):
    _open(page, server)
    page.fill("#q", "river")
    page.press("#q", "Enter")
    expect(page.locator(".hit")).to_have_count(10)
    page.fill("#filter", "year>>2")
    page.press("#filter", "Enter")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_contain_text("filter on 'year': a value cannot start with '>'")
    expect(page.locator(".hit")).to_have_count(0)
    expect(page.locator("#latency")).to_have_text("")
    page.fill("#filter", "")  # fixed: the error goes, the hits come back
    page.press("#q", "Enter")
    expect(page.locator(".hit")).to_have_count(10)
    expect(error).to_be_hidden()


def test_no_hits_message(page, server):
    _lexical_search(page, server, "zebra")
    expect(page.locator("#results")).to_contain_text("No hits")
    expect(page.locator(".hit")).to_have_count(0)
    expect(page.locator("#latency")).to_contain_text("0 hits")


def test_html_in_documents_is_shown_as_text(page, server):
    _lexical_search(page, server, "markup")
    hit = page.locator('.hit[data-id="markup"]')
    expect(hit).to_have_count(1)
    assert hit.locator("h2").inner_text() == MARKUP_TITLE
    assert "<script>window.pwned = 1</script>" in hit.locator(".passage").inner_text()
    assert hit.locator("img, script, i, u").count() == 0
    assert hit.locator("h2 *").count() == 0 and hit.locator(".passage *:not(mark)").count() == 0
    assert "note: <u>x</u>" in hit.locator(".meta").inner_text()
    assert page.evaluate("window.pwned") is None
    assert hit.locator("mark").all_inner_texts() == ["markup"]


def test_a_whole_document_with_emoji_is_not_shown_as_a_part(page, server):
    _lexical_search(page, server, "zeppelins")
    passage = page.locator('.hit[data-id="emoji"] .passage')
    expect(passage).to_have_count(1)
    text = passage.inner_text()  # the document is its one passage: no "…" on either side
    assert text.startswith("Zeppelins") and text.endswith("dawn."), text


def test_a_long_passage_is_cut_around_the_query_and_opens_in_full(page, server):
    _lexical_search(page, server, "aurora")
    passage = page.locator('.hit[data-id="long"] .passage')
    expect(passage).to_have_count(1)
    short = passage.inner_text()
    assert short.startswith("… ") and "aurora" in short and len(short) < 700, short
    assert passage.locator("mark").all_inner_texts() == ["aurora"]
    passage.get_by_role("button", name="more").click()
    expect(passage.get_by_role("button", name="less")).to_be_visible()
    full = passage.inner_text()  # the whole best passage (a part of the document: "…" on both sides)
    assert len(full) > len(short) + 100 and full.startswith("… ") and full.endswith(" …less"), full
    passage.get_by_role("button", name="less").click()
    assert passage.inner_text() == short


# --- the URL --------------------------------------------------------------------------------------

def test_a_shared_url_fills_the_form_and_searches(page, server):
    with _search_request(page) as request:
        page.goto(f"{server}/?q=frozen+ice+valleys&mode=dense&k=3&filter=lang%3Den&index=docs")
    assert request.value.post_data_json == {"query": "frozen ice valleys", "k": 3, "mode": "dense",
                                            "filters": ["lang=en"], "rerank": False}
    expect(page.locator(".hit")).to_have_count(3)
    assert page.input_value("#q") == "frozen ice valleys"
    assert page.input_value("#mode") == "dense" and page.input_value("#k") == "3"
    assert page.input_value("#filter") == "lang=en" and not page.is_checked("#rerank")
    expect(page.locator("#latency")).to_have_attribute("data-mode", "dense")
    page.reload()  # the same URL again: the same search
    expect(page.locator(".hit")).to_have_count(3)
    assert page.input_value("#q") == "frozen ice valleys"


def test_back_button_returns_to_the_previous_search(page, server):
    _open(page, server)
    for query in ("bread", "chess"):
        page.fill("#q", query)
        page.press("#q", "Enter")
        expect(page.locator(".hit").first).to_have_attribute("data-id", re.compile(f"^{query}-"))
    with _search_request(page) as request:
        page.go_back()
    assert request.value.post_data_json["query"] == "bread"
    expect(page.locator("#q")).to_have_value("bread")
    expect(page.locator(".hit").first).to_have_attribute("data-id", re.compile("^bread-"))
    page.go_back()  # the page as it was opened: an empty form, no hits
    expect(page.locator("#q")).to_have_value("")
    expect(page.locator(".hit")).to_have_count(0)


# --- indexes --------------------------------------------------------------------------------------

def test_index_picker_and_what_each_index_offers(page, server):
    _open(page, server)
    picker = page.locator("#index")
    expect(picker).to_be_visible()
    assert picker.locator("option").all_inner_texts() == ["docs", "other"]
    assert page.is_enabled("#rerank")
    assert page.locator("#mode option[value=lexical]").is_enabled()
    page.select_option("#index", "other")  # dense only, no reranker
    expect(page.locator("#rerank")).to_be_disabled()
    assert "no default reranker" in page.get_attribute("#rerank", "title")
    assert "no default reranker" in page.get_attribute("#rerank-label", "title")
    assert page.locator("#mode option[value=lexical]").is_disabled()
    assert page.locator("#mode option[value=hybrid]").is_disabled()
    assert page.locator("#mode option[value='']").inner_text() == "index default (dense)"
    page.fill("#q", "cats")
    with _search_request(page) as request:
        page.press("#q", "Enter")
    assert request.value.url.endswith("/indexes/other/search")
    expect(page.locator(".hit")).to_have_count(10)
    assert parse_qs(urlparse(page.url).query)["index"] == ["other"]
    page.select_option("#index", "docs")
    expect(page.locator("#rerank")).to_be_enabled()
    assert page.locator("#mode option[value=lexical]").is_enabled()


def test_no_index_picker_with_one_index(page, server):
    def one_index(route):
        response = route.fetch()
        data = response.json()
        route.fulfill(response=response, json={"indexes": data["indexes"][:1]})

    page.route("**/indexes", one_index)
    _open(page, server)
    expect(page.locator("#index-field")).to_be_hidden()
    page.fill("#q", "cats")
    page.press("#q", "Enter")
    expect(page.locator(".hit")).to_have_count(10)
    assert "index" not in parse_qs(urlparse(page.url).query)


# --- health, errors, the API key ----------------------------------------------------------------

def test_loading_models_are_shown_and_retried(page, server):
    calls = []

    def loading(route):
        calls.append(1)
        if len(calls) <= 2:
            route.fulfill(status=503, json={"status": "loading", "error": "models are loading"})
        else:
            route.continue_()

    page.route("**/health", loading)
    page.goto(f"{server}/?q=river&k=4")
    status = page.locator("#status")
    expect(status).to_contain_text("models are loading")
    expect(page.locator("#search")).to_be_disabled()
    expect(page.locator("#q")).to_have_value("river")  # the shared search is shown while it waits
    expect(page.locator(".hit")).to_have_count(4, timeout=8_000)
    expect(status).to_be_hidden()
    assert len(calls) == 3


def test_failed_loading_is_an_error(page, server):
    page.route("**/health", lambda route: route.fulfill(
        status=503, json={"status": "failed", "error": "IndexNotFound: no index at /x"}))
    page.goto(server)
    expect(page.locator("#error")).to_contain_text("could not load its models: IndexNotFound: no index at /x")


def test_unreachable_server_is_said_in_words(page, server):
    _open(page, server)
    page.route("**/indexes/*/search", lambda route: route.abort("connectionrefused"))
    page.fill("#q", "river")
    page.press("#q", "Enter")
    expect(page.locator("#error")).to_contain_text("could not be reached")
    expect(page.locator(".hit")).to_have_count(0)


def test_api_key_is_asked_for_kept_and_sent(page, locked_server):
    page.goto(f"{locked_server}/?q=river&k=2")
    auth = page.locator("#auth")
    expect(auth).to_be_visible()
    expect(page.locator("#error")).to_contain_text("missing or wrong API key")
    page.fill("#apikey", "wrong")
    page.press("#apikey", "Enter")
    expect(page.locator("#error")).to_contain_text("missing or wrong API key")  # the real server said no again
    expect(auth).to_be_visible()
    with _search_request(page) as request:
        page.fill("#apikey", KEY)
        page.press("#apikey", "Enter")
    assert request.value.headers["authorization"] == f"Bearer {KEY}"
    expect(page.locator(".hit")).to_have_count(2)  # the URL's search ran once the key was given
    expect(auth).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('semsearch.apiKey')") == KEY
    expect(page.locator("#index-field")).to_be_hidden()  # one index
    page.reload()  # the key outlives a reload of the tab
    expect(page.locator(".hit")).to_have_count(2)
    expect(auth).to_be_hidden()


# --- layout ---------------------------------------------------------------------------------------

def test_phone_width_has_no_horizontal_scroll(browser, server):
    ctx, page, errors = _page(browser, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True,
                              device_scale_factor=2)
    try:
        page.goto(f"{server}/?q=river+sea+moon&k=10&rerank=1&filter=year%3E%3D2015%3B+lang+in+en%2Cde")
        expect(page.locator(".hit")).to_have_count(10)
        expect(page.locator("#index")).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, width
        assert page.evaluate("window.innerWidth") == 375  # the meta viewport is honoured
        for control in ("#q", "#search", "#mode", "#k", "#rerank", "#filter", "#index"):
            box = page.locator(control).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (control, box)
        page.fill("#filter", "year>>2")  # an error at that width too
        page.press("#filter", "Enter")
        expect(page.locator("#error")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        ctx.close()
    assert not errors, errors


def test_docs_link(page, server):
    _open(page, server)
    assert page.get_attribute("header a", "href") == "/docs"
    assert page.request.get(f"{server}/docs").ok


@pytest.mark.skipif(os.environ.get("SEMSEARCH_SCREENSHOTS") != "1",
                    reason="remakes docs/serve-page*.png; set SEMSEARCH_SCREENSHOTS=1 to run it")
def test_screenshots_for_the_docs():
    """The docs' screenshots, from benchmarks/screenshot_page.py (the embedded MiniLM over ~30 articles)."""
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "screenshot_page.py"), "--output", str(ROOT / "docs")],
                   check=True, timeout=600)
    assert (ROOT / "docs" / "serve-page.png").is_file() and (ROOT / "docs" / "serve-page-phone.png").is_file()
