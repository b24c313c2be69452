"""Screenshots of the search page for the docs: the embedded MiniLM over ~30 short articles, served as
``semsearch serve`` serves it (uvicorn on a loopback port), one search, shot at desktop and at phone width.

    python benchmarks/screenshot_page.py [--output docs] [--reranker models/scifact-reranker] [--query ...]

Writes ``serve-page.png`` (1200x800) and ``serve-page-phone.png`` (375 px wide, 2x) to ``--output``. With a
reranker folder (default: ``models/scifact-reranker`` when it is there) the index gets it as its default, so
the page offers reranking (``--rerank`` uses it in the search shot). Needs Playwright and Debian's Chromium
(``apt-get install chromium``); nothing is downloaded. ``tests/test_serve_browser.py`` runs this with ``SEMSEARCH_SCREENSHOTS=1``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/serve_helpers.py: uvicorn in a thread, ready on /health
from serve_helpers import running_server  # noqa: E402

from semsearch import Document, Reranker, SearchEngine  # noqa: E402
from semsearch.serve.app import create_app  # noqa: E402

ARTICLES = [
    ("glaciers", "How glaciers carve valleys", "earth", 2021,
     ("A valley glacier moves downhill under its own weight, a few metres to several hundred metres a year. Rock "
      "frozen into its base scrapes the bed like sandpaper, and meltwater freezing in cracks plucks out blocks. "
      "Over many thousands of years this turns a narrow V-shaped river valley into a broad U-shaped trough with "
      "steep walls, hanging side valleys and, where the ice once reached the sea, a fjord.")),
    ("rivers", "Rivers and the shape of the land", "earth", 2019,
     ("Rivers wear their beds down by abrasion, carrying sand and pebbles that grind the rock beneath. Meanders "
      "form where the outer bank erodes faster than the inner one; floods build levees and spread fertile silt "
      "across the plain. Most of the sediment reaching the oceans travels by river.")),
    ("tectonics", "Plate tectonics in brief", "earth", 2017,
     ("The Earth's outer shell is broken into plates that drift a few centimetres a year over the hotter mantle. "
      "Where plates collide, mountain ranges rise and one plate may sink beneath another; where they part, new "
      "crust forms at mid-ocean ridges. Earthquakes and most volcanoes trace the plate boundaries.")),
    ("volcanoes", "Why some volcanoes explode", "earth", 2022,
     ("Magma rich in silica is thick and traps gas; when pressure drops near the surface the gas expands violently "
      "and shatters the melt into ash. Runny basaltic magma lets gas escape, so volcanoes like those of Hawaii "
      "pour out lava flows instead of exploding.")),
    ("permafrost", "Thawing permafrost", "earth", 2023,
     ("Permafrost is ground that stays frozen for at least two years in a row. As the Arctic warms, it thaws from "
      "the top down, releasing carbon stored in old plant matter and making the ground sink and slump under roads "
      "and buildings.")),
    ("coral", "Coral reefs under heat stress", "life", 2020,
     ("Reef-building corals live with algae that feed them through photosynthesis. When the water stays too warm "
      "for weeks, the corals expel the algae and turn white; if the heat lasts, they starve. Mass bleaching events "
      "have become more frequent since the 1980s.")),
    ("photosynthesis", "Photosynthesis, step by step", "life", 2016,
     ("Plants capture light with chlorophyll and use its energy to split water, releasing oxygen. The energy is "
      "stored in ATP and NADPH, which the Calvin cycle then uses to fix carbon dioxide from the air into sugars.")),
    ("bees", "How honeybees share directions", "life", 2018,
     ("A forager returning to the hive performs a waggle dance: the angle of the dance against vertical gives the "
      "direction of the food relative to the sun, and the length of the waggle run tells the distance.")),
    ("monarchs", "The monarch butterfly migration", "life", 2021,
     ("Each autumn, monarch butterflies from eastern North America fly up to 4,000 km to a few mountain forests in "
      "central Mexico. No single butterfly makes the round trip: it takes several generations to return north.")),
    ("sleep", "Sleep and memory", "health", 2022,
     ("During deep sleep, the hippocampus replays the day's experiences and the cortex stores them for the long "
      "term. People who sleep after learning remember word lists and motor skills better than those kept awake.")),
    ("vaccines", "How vaccines train the immune system", "health", 2021,
     ("A vaccine shows the immune system a harmless piece or copy of a pathogen. B cells learn to make antibodies "
      "against it and memory cells remain for years, so a later infection is met quickly.")),
    ("antibiotics", "Antibiotic resistance", "health", 2019,
     ("Bacteria that survive a course of antibiotics pass on the genes that protected them, sometimes to other "
      "species. Overuse in medicine and farming speeds this up; some infections no longer respond to any drug.")),
    ("crispr", "CRISPR gene editing", "life", 2020,
     ("CRISPR-Cas9 uses a guide RNA to lead the Cas9 enzyme to a matching DNA sequence, where it cuts both strands. "
      "The cell's repair of the cut can disable a gene or, given a template, write in a new sequence.")),
    ("blackholes", "What a black hole is", "space", 2019,
     ("A black hole is a region where gravity is so strong that nothing, not even light, escapes from inside its "
      "event horizon. Stellar black holes form when massive stars collapse; supermassive ones sit at the centres "
      "of galaxies.")),
    ("exoplanets", "Finding planets around other stars", "space", 2023,
     ("Most known exoplanets were found by the transit method: a planet passing in front of its star dims it "
      "slightly and regularly. The radial-velocity method instead measures the star's wobble as the planet tugs it.")),
    ("moon", "The Moon and the tides", "space", 2015,
     ("The Moon's gravity pulls the oceans into two bulges, one facing it and one on the far side, so most coasts "
      "see two high tides a day. When Sun and Moon line up, their pulls add and spring tides are highest.")),
    ("apollo", "Apollo 11", "history", 2019,
     ("On 20 July 1969, Neil Armstrong and Buzz Aldrin landed the lunar module Eagle in the Sea of Tranquillity "
      "while Michael Collins orbited above. They spent about two and a half hours walking on the surface.")),
    ("printing", "The printing press", "history", 2016,
     ("Around 1450 Johannes Gutenberg combined movable metal type, oil-based ink and a screw press. Books became "
      "cheaper and far more numerous, and within fifty years presses were running in hundreds of European towns.")),
    ("aqueducts", "Roman aqueducts", "history", 2018,
     ("Roman engineers brought water to cities over tens of kilometres using gravity alone, with gradients as "
      "gentle as a few centimetres per hundred metres. Most of the channels ran underground; the famous arched "
      "bridges carried them across valleys.")),
    ("silkroad", "The Silk Road", "history", 2017,
     ("The Silk Road was a web of trade routes linking China with Central Asia, Persia and the Mediterranean. "
      "Besides silk and spices it carried paper-making, religions and, in the fourteenth century, the plague.")),
    ("steam", "The steam engine", "technology", 2015,
     ("James Watt's separate condenser, patented in 1769, let the cylinder stay hot while the steam condensed "
      "elsewhere, cutting fuel use by about three quarters and making steam power practical for mills and mines.")),
    ("transistor", "The transistor", "technology", 2017,
     ("Built at Bell Labs in 1947, the transistor is a semiconductor switch and amplifier. Billions of them, each "
      "a few nanometres across, now sit on a single chip.")),
    ("tcp", "How TCP delivers data reliably", "technology", 2020,
     ("TCP numbers every byte it sends; the receiver acknowledges what arrived, and anything unacknowledged is "
      "sent again. Congestion control shrinks the sending window when packets are lost, sharing the network fairly.")),
    ("crypto", "Public-key cryptography", "technology", 2018,
     ("In public-key cryptography each party has a key pair: anyone may encrypt with the public key, but only the "
      "private key decrypts. RSA rests on the difficulty of factoring the product of two large primes.")),
    ("batteries", "Inside a lithium-ion battery", "technology", 2022,
     ("While charging, lithium ions move from the cathode through the electrolyte into the graphite anode; "
      "discharging reverses the flow. Capacity fades as side reactions consume lithium over many cycles.")),
    ("wind", "Wind power", "technology", 2023,
     ("A wind turbine's power grows with the cube of wind speed, which is why turbines are built ever taller, "
      "into steadier and faster winds. Offshore sites have stronger winds but cost more to build and maintain.")),
    ("heatislands", "Urban heat islands", "earth", 2021,
     ("Cities are often several degrees warmer than the countryside around them, most of all at night: asphalt "
      "and brick store the day's heat, and there is little vegetation to cool the air by evaporation.")),
    ("sourdough", "The science of sourdough", "culture", 2020,
     ("A sourdough starter is a culture of wild yeasts and lactic acid bacteria. The yeasts make the gas that "
      "raises the bread; the bacteria make the acids that give its sour taste and help it keep.")),
    ("coffee", "What roasting does to coffee", "culture", 2019,
     ("Green coffee beans taste grassy. Roasting drives the Maillard reaction and caramelisation, creating "
      "hundreds of aroma compounds; darker roasts lose acidity and gain bitterness.")),
    ("jazz", "The origins of jazz", "culture", 2016,
     ("Jazz grew up in New Orleans in the early twentieth century from blues, ragtime and brass-band music, with "
      "improvisation and swing rhythms at its heart.")),
    ("chess", "How chess engines think", "technology", 2024,
     ("Classical chess engines search millions of positions a second, pruning bad lines and scoring the rest with "
      "an evaluation function; newer ones learn that evaluation with neural networks trained by self-play.")),
]
SOURCES = ["field notes", "encyclopedia", "lecture notes", "review"]
QUERY = "how do glaciers shape valleys"


def documents() -> list[Document]:
    return [Document(slug, text, title=title, metadata={"topic": topic, "year": year, "source": SOURCES[i % 4]})
            for i, (slug, title, topic, year, text) in enumerate(ARTICLES)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs")
    default_reranker = ROOT / "models" / "scifact-reranker"
    parser.add_argument("--reranker", type=Path, default=default_reranker if default_reranker.is_dir() else None)
    parser.add_argument("--query", default=QUERY)
    parser.add_argument("--mode", default="dense", help="the search's mode (default dense: on 31 short articles,"
                        " BM25's matches on words like 'how' and 'do' make hybrid's lower ranks noisy)")
    parser.add_argument("--rerank", action="store_true", help="rerank the search (the default reranker is trained"
                        " on SciFact claims, not on articles like these)")
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("no chromium on PATH: apt-get install chromium")
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        folder = Path(tmp) / "articles"
        with SearchEngine.build(documents(), folder, progress=False) as engine:  # the embedded MiniLM
            if args.reranker:
                engine.set_default_reranker(Reranker(str(args.reranker)))
        print(f"built the index in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        params = {"q": args.query, "mode": args.mode, "k": args.k, **({"rerank": 1} if args.rerank else {})}
        with running_server(create_app({"articles": folder})) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            shots = {"serve-page.png": {"viewport": {"width": 1200, "height": 800}},
                     "serve-page-phone.png": {"viewport": {"width": 375, "height": 812}, "is_mobile": True,
                                                  "has_touch": True, "device_scale_factor": 2}}
            for name, context in shots.items():
                page = browser.new_context(**context, color_scheme="light").new_page()
                page.goto(f"{base}/?{urlencode(params)}")
                page.wait_for_selector("#results .hit")
                page.evaluate("document.activeElement.blur()")  # no focus ring in the picture
                page.screenshot(path=str(args.output / name))
                print(f"wrote {args.output / name}", file=sys.stderr)
            browser.close()


if __name__ == "__main__":
    main()
