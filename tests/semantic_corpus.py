"""Pages and paraphrase queries for the semantic search tests: 24 notes of a team wiki, each with
a question asked in other words (so that search_notes, which needs every word, finds nothing),
six near-topic distractors, and filler pages cut from the standard library's docstrings."""

from __future__ import annotations

import importlib
import inspect
import warnings

# (path, content, a question about it in other words)
TARGETS = [
    ("Ops/Release Freeze", "No deploys to production between December 20 and January 5. Only security patches "
     "approved by two engineers go out during that period.", "when are we not allowed to ship code over the holidays"),
    ("Office/Parking", "Visitors park in the north lot, in the spaces marked with a green sign. Staff must leave "
     "those spaces free.", "where should guests leave their cars"),
    ("HR/Vacation Policy", "Each employee gets 25 days of paid leave per year. Unused days carry over until March "
     "of the following year.", "how much time off do workers get annually"),
    ("Garden/Tomatoes", "Water the tomato plants every morning, feed them with compost tea once a week, and stake "
     "them when they reach knee height.", "care instructions for vegetables growing outside"),
    ("IT/Wifi", "The guest wireless network is called Lobby. Its password changes every Monday; ask reception for "
     "it.", "how can a visitor get internet access"),
    ("Kitchen/Coffee Machine", "Descale the espresso maker monthly with citric acid and empty the grounds drawer "
     "every day.", "cleaning routine for the appliance that brews our morning drinks"),
    ("Finance/Expenses", "Submit receipts within 30 days through the reimbursement form. Meals abroad are covered "
     "up to 60 euros per day.", "getting money back for business trip costs"),
    ("Security/Passwords", "Use a password manager and passphrases of at least 14 characters. Two-factor "
     "authentication is required for email.", "rules for keeping our accounts safe from hackers"),
    ("Ops/On-call", "The on-call engineer carries the pager for a week; handover is on Tuesday at 10. Escalate to "
     "the team lead after 30 minutes.", "who responds to production incidents at night"),
    ("Events/Summer Party", "The summer party is held at the lake house on the last Friday of July. Bring swimwear; "
     "the barbecue is provided.", "annual celebration outdoors in warm weather"),
    ("Projects/Robot Arm", "The arm uses six servo motors controlled by an Arduino over a serial line; the "
     "calibration script is in the tools folder.", "mechanical manipulator hardware and its electronics"),
    ("Pets/Office Dog", "Biscuit the beagle visits on Wednesdays. Don't feed him chocolate; his bed is under the "
     "stairs.", "rules about the animal that comes to work"),
    ("Travel/Train Booking", "Book rail tickets two weeks ahead through the travel desk. First class is allowed for "
     "trips over four hours.", "how to reserve a seat for long journeys across the country"),
    ("Health/First Aid", "The first aid kit is in the kitchen cupboard above the sink. Our trained first aiders are "
     "Ana and Tom.", "where are the bandages if someone gets hurt"),
    ("Recipes/Sourdough", "Feed the starter twice a day, let the dough rise overnight in the fridge, and bake at 250 "
     "degrees in a Dutch oven.", "making bread with natural yeast"),
    ("Infra/Backups", "Databases are copied every night at 2 am to the offsite bucket, and restores are tested every "
     "quarter.", "how do we make sure we never lose data"),
    ("Onboarding/First Day", "New hires get a laptop, a badge and a buddy. The first morning is a tour of the "
     "building.", "what happens when someone joins the company"),
    ("Legal/Open Source Licenses", "We may use MIT and Apache licensed libraries freely; GPL code needs approval "
     "from legal.", "which third party code are we permitted to include in our product"),
    ("Facilities/Heating", "The thermostat is set to 21 degrees in winter and the boiler is serviced every "
     "October.", "keeping the building warm in cold months"),
    ("Music/Band Practice", "The band rehearses on Thursday evenings in the basement. Bring your own drumsticks "
     "and earplugs.", "when does the group play instruments together"),
    ("Climbing/Safety", "Always check your partner's harness knot and belay device before climbing, and wear "
     "helmets outdoors.", "precautions before going up a rock wall"),
    ("Books/Reading Club", "This month we read a novel about a lighthouse keeper. We meet at the library on the "
     "first Monday.", "literature discussion group schedule"),
    ("Cycling/Commute", "Bike racks are in the courtyard and showers are on the second floor. Lock your bicycle "
     "with a U-lock.", "facilities for people who pedal to the office"),
    ("Weather/Storm Plan", "If a storm warning is issued, close the windows, bring the patio furniture inside and "
     "work from home.", "what to do when bad weather is forecast"),
]

DISTRACTORS = [
    ("Ops/Deploy Guide", "To deploy, merge to main, wait for the build, then run the release script. Roll back "
     "with the previous tag."),
    ("HR/Sick Leave", "Report sickness to your manager before 9 am; a doctor's note is needed after three days."),
    ("Garden/Roses", "Prune roses in late winter above an outward facing bud and mulch them in spring."),
    ("IT/Printers", "The printer on the third floor prints double-sided by default; scan to email from its touch "
     "screen."),
    ("Finance/Invoices", "Supplier invoices are paid on the 15th; send them to the accounts mailbox with the "
     "purchase order number."),
    ("Kitchen/Fridge", "Label your food with your name and date; the fridge is emptied every Friday afternoon."),
]

FILLER_MODULES = (
    "argparse", "array", "ast", "asyncio", "base64", "bisect", "calendar", "codecs", "collections", "colorsys",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email.message",
    "enum", "fnmatch", "fractions", "functools", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html.parser",
    "http.client", "inspect", "io", "ipaddress", "itertools", "json", "locale", "logging", "lzma", "math",
    "mimetypes", "operator", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched", "secrets", "selectors",
    "shlex", "shutil", "socket", "sqlite3", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "tokenize", "traceback", "typing", "unittest", "urllib.parse", "uuid",
    "warnings", "weakref", "zipfile", "zlib",
)


def docstring_paragraphs(min_words: int = 25) -> list[str]:
    """Paragraphs of the standard library's docstrings, in a fixed order, without repeats."""
    seen: dict[str, None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # typing.io and friends, on some Pythons
        return _paragraphs(seen, min_words)


def _paragraphs(seen: dict[str, None], min_words: int) -> list[str]:
    for name in FILLER_MODULES:
        module = importlib.import_module(name)
        for obj in [module, *(getattr(module, attr) for attr in sorted(dir(module)) if not attr.startswith("_"))]:
            for paragraph in (inspect.getdoc(obj) or "").split("\n\n"):
                text = " ".join(paragraph.split())
                if len(text.split()) >= min_words:
                    seen.setdefault(text)
    return list(seen)


def fillers(count: int) -> list[tuple[str, str]]:
    """`count` pages of reference text on programming, two paragraphs each."""
    paragraphs = docstring_paragraphs()
    return [(f"Reference/Note {i + 1}", "\n\n".join(paragraphs[2 * i:2 * i + 2])) for i in range(count)]
