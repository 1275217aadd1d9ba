"""Deterministic, realistic wiki pages for the benchmark (standard library only).

Page i is always the same text: a front-matter block, an H1, H2/H3 sections of prose, bullet and
numbered lists, WikiLinks to other pages of the corpus (and a few to pages that don't exist),
inline code and fenced code blocks. Words are drawn from a fixed vocabulary with a Zipf-like
distribution, so full-text search sees common, medium and rare terms like in a real wiki.
"""

from __future__ import annotations

import functools
import itertools
import random

# The common words of technical English prose, most frequent first.
COMMON = """the of and to a in is that for it as with on be by this are or from at which an not
can have will if but all has when one they more use also their so out up some would there what
about into than other only then its each how first new after two these may any should over most
such where used time make like just need data way through because both while before same does
work set run each system page note part file value change first start case point test""".split()

# Domain words: robots, electronics, software, lab notebooks, project management.
DOMAIN = """robot arm servo motor gripper sensor lidar camera encoder torque bracket chassis wheel
battery charger voltage current resistor capacitor firmware driver controller microcontroller
board header connector cable harness solder wiring schematic layout footprint pinout bus serial
uart spi i2c can ethernet wifi bluetooth antenna signal noise filter kalman pid loop gain tuning
calibration offset drift odometry localization mapping slam path planner trajectory kinematics
inverse forward joint link frame transform quaternion euler matrix vector axis rotation velocity
acceleration jerk limit safety stop emergency watchdog timeout heartbeat telemetry logging metric
dashboard alert threshold sample rate buffer queue thread process scheduler priority interrupt
latency throughput bandwidth packet protocol message topic node launch parameter config yaml json
build compile linker library package dependency version release branch merge review commit patch
bug issue fix regression benchmark profile memory cache disk storage database index query schema
migration backup restore deploy server client token session user admin permission role owner
editor viewer wiki page link revision history diff search tag category template draft outline
meeting agenda decision action owner deadline milestone sprint backlog estimate risk budget
supplier order part stock inventory shipment invoice datasheet specification requirement design
prototype iteration experiment hypothesis result observation measurement error tolerance margin
printer filament nozzle bed extruder slicer gcode mill lathe drill tap thread bolt nut washer
spring bearing shaft gear pulley belt chain coupling mount plate panel enclosure fan heatsink
thermal temperature humidity pressure vibration shock load stress strain weight balance center
gravity friction damping stiffness resonance frequency amplitude phase spectrum waveform scope
multimeter supply bench station fixture jig clamp vise workshop lab inventory checklist procedure""".split()

# Rare, specific terms: project code names, part numbers, people, places.
RARE = """aurora basilisk cobalt dromedary ember falcon gossamer halcyon ibex juniper kestrel lumen
marigold nebula obsidian peregrine quartz rosalind sable tamarind umber vesper wisteria xylem
yarrow zephyr stm32f405 esp32s3 rp2040 tmc2209 drv8825 ina219 bno055 vl53l1x mg996r nema17
as5600 mcp2515 tja1050 lm2596 ams1117 ws2812 hc05 nrf24l01 sx1276 ublox gps rtk ntrip ros2
humble foxy gazebo rviz moveit nav2 colcon ament cmake ninja gdb openocd jlink stlink platformio
zephyrrtos freertos micropython circuitpython kicad freecad openscad fusion onshape blender octoprint
klipper marlin grbl linuxcnc candle bcnc alice bob carol dave erin frank grace heidi ivan judy
mallory niaj olivia peggy rupert sybil trent victor walter berlin lyon porto kyoto quito osaka""".split()

SECTIONS = ["Overview", "Goals", "Background", "Design", "Hardware", "Software", "Wiring", "Setup",
            "Calibration", "Testing", "Results", "Open Questions", "Decisions", "Next Steps",
            "Troubleshooting", "References", "Notes", "Parts", "Procedure", "Lessons Learned"]
AREAS = ["Projects", "Hardware", "Software", "Lab", "Meetings", "Procedures", "Parts", "Ideas", "People"]
CATEGORIES = ["project", "hardware", "software", "lab-notes", "meeting", "procedure", "reference"]
CODE = [
    ("python", "def {a}_{b}(value, gain={n}):\n    \"\"\"Scale a {a} reading.\"\"\"\n"
               "    return max(-{n}, min({n}, value * gain))\n\n\nprint({a}_{b}(0.{n}))"),
    ("bash", "colcon build --packages-select {a}_{b}\nsource install/setup.bash\n"
             "ros2 launch {a}_{b} bringup.launch.py rate:={n}"),
    ("yaml", "{a}:\n  {b}: {n}\n  enabled: true\n  topics:\n    - /{a}/state\n    - /{b}/cmd"),
    ("c", "static int {a}_{b}(int raw) {{\n    if (raw > {n}) return {n};\n    return raw * 2;\n}}"),
]

WORDS = COMMON + DOMAIN + RARE
# Cumulative Zipf-like weights (1/rank^0.9), common words first, rare last.
CUM_WEIGHTS = list(itertools.accumulate(1.0 / (rank + 1) ** 0.9 for rank in range(len(WORDS))))


@functools.lru_cache(maxsize=None)
def page_path(i: int) -> str:
    """Page i's path: a folder by area, then a readable name ("Projects/Arm Servo 00042")."""
    rnd = random.Random(i)
    area = AREAS[i % len(AREAS)]
    return f"{area}/{rnd.choice(DOMAIN).title()} {rnd.choice(DOMAIN).title()} {i:05d}"


def _sentence(rnd: random.Random, words, weights, n_pages: int) -> str:
    chosen = rnd.choices(words, cum_weights=weights, k=rnd.randint(8, 18))
    chosen[0] = chosen[0].capitalize()
    text = " ".join(chosen)
    roll = rnd.random()
    if roll < 0.08:
        text += f" (see [[{page_path(rnd.randrange(n_pages))}]])"
    elif roll < 0.12:
        target = page_path(rnd.randrange(n_pages))
        text += f", as in [[{target}|{target.rsplit(' ', 1)[0].split('/')[-1].lower()}]]"
    elif roll < 0.16:
        text += f" with `{rnd.choice(DOMAIN)}_{rnd.choice(DOMAIN)}`"
    return text + "."


def page_text(i: int, n_pages: int, target_bytes: int = 5000) -> str:
    """Page i of an n_pages corpus, about target_bytes of Markdown (UTF-8)."""
    words, weights = WORDS, CUM_WEIGHTS
    rnd = random.Random(1_000_000 + i)
    title = page_path(i).rsplit("/", 1)[-1]
    tags = sorted(set(rnd.choices(DOMAIN[:80], k=3)))
    parts = [f"---\ntitle: {title}\ncategory: {rnd.choice(CATEGORIES)}\ntags: [{', '.join(tags)}]\n---\n",
             f"# {title}\n", " ".join(_sentence(rnd, words, weights, n_pages) for _ in range(3)) + "\n"]
    size = sum(len(p) for p in parts)
    sections = rnd.sample(SECTIONS, len(SECTIONS))
    s = 0
    while size < target_bytes:
        block = _block(rnd, words, weights, n_pages, sections[s % len(sections)], s)
        parts.append(block)
        size += len(block)
        s += 1
    return "\n".join(parts)


def _block(rnd, words, weights, n_pages, heading, s) -> str:
    kind = s % 4
    level = "###" if s % 3 == 2 else "##"
    lines = [f"{level} {heading}{'' if s < len(SECTIONS) else f' {s}'}", ""]
    lines.append(" ".join(_sentence(rnd, words, weights, n_pages) for _ in range(rnd.randint(2, 5))))
    lines.append("")
    if kind == 1:
        lines += [f"- {_sentence(rnd, words, weights, n_pages)}" for _ in range(rnd.randint(3, 6))]
    elif kind == 2:
        lines += [f"{n}. {_sentence(rnd, words, weights, n_pages)}" for n in range(1, rnd.randint(3, 6))]
    elif kind == 3:
        lang, template = rnd.choice(CODE)
        code = template.format(a=rnd.choice(DOMAIN), b=rnd.choice(DOMAIN), n=rnd.randint(2, 999))
        lines += [f"```{lang}", code, "```"]
    else:
        lines += [f"Related: [[{page_path(rnd.randrange(n_pages))}]], [[{page_path(rnd.randrange(n_pages))}]]"
                  + (f" and [[Ideas/Unwritten {rnd.choice(RARE).title()}]]" if rnd.random() < 0.3 else "")]
    lines.append("")
    return "\n".join(lines)


# Searches an agent would type: one rare term, a domain word, two or three words (ANDed), a
# phrase, a prefix. Fixed, so every run and every server sees the same mix.
SEARCH_QUERIES = [
    "kestrel", "servo calibration", "stm32f405 firmware", "\"emergency stop\"", "lidar", "odometry drift",
    "torque", "bno055", "path planner trajectory", "robo*", "battery voltage", "klipper", "pid tuning",
    "gazebo", "wiring harness connector", "quaternion", "backup restore", "milestone deadline",
    "obsidian", "heatsink thermal", "kinematics", "tmc2209 driver", "meeting decision", "encoder",
    "nav2 localization", "calib*", "datasheet", "\"safety stop\"", "rosalind", "ws2812",
]
