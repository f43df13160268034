"""What the synthetic text says: English words, numbers, dates, times, prices, short codes.

Only characters the PP-OCRv4 recognizer can output (ASCII letters, digits, common punctuation, space) are used,
and easily confused rarities (`|`, `_`, `~`, backslash, braces) are left out so labels are fair to any OCR model.
"""

from __future__ import annotations

import numpy as np

WORDS = """
about above account across action address after again against agent air all almost along already also always
amount and animal annual another answer any apple area around arrival art ask autumn available away back bank
base basket battery beach before begin best better between bicycle black blue board boat body book both bottle
box branch bread break bridge bright bring brown build business busy buy cable call camera can capital car card
care carry case cash center chair change charge check chicken child city class clean clear clock close cloud
coast coffee cold color come common company complete control cook corner cost count country course cover cream
credit cross customer daily dark data date day dear deliver design desk detail direct dinner discount distance
doctor door double down draw dream drink drive early east easy edge energy engine enter entry even evening event
every exact example exit express extra factory fall family farm fast field file final find fine fire first fish
floor flower follow food forest form forward free fresh friday front fruit full garden gate general glass gold
good great green ground group guide half hall hand happy harbor heavy hello help high hill history holiday home
hope hotel hour house idea image import inside island item join journey juice just keep kitchen label lake land
large last late later learn left lemon level library light limit line list little local long lunch machine main
make manager map market meeting member menu metal middle milk minute model monday money month morning mountain
music name near network never new news next night north note number ocean offer office often old online only
open orange order orient other outside page paper park part party pass path people pepper phone photo piece
place plan plant plate please point police port post power press price print private program public quick quiet
radio rain ready receipt record red region rent report rest return rice right river road room round route rule
safe sale salt sample saturday school sea season seat second secure select send service seven share ship shop
short show side sign silver simple single size sky small smart snow soft south space special speed spring square
staff stage standard start station stock stone store street strong studio style summer sunday supply support
table take team test thank thing ticket time today total tower town track trade train travel tree trip tuesday
under union unit until update urban valley value van view village visit voice wait walk wall warm watch water
wave way weather week welcome west white wide window winter wood world yellow young zone
""".split()

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
UNITS = ["kg", "g", "km", "m", "cm", "mm", "ml", "L", "min", "h", "pcs", "GB", "MB", "V", "W"]
CURRENCIES = ["$", "USD ", "EUR ", "GBP "]
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def _word(rng: np.random.Generator) -> str:
    word = WORDS[rng.integers(len(WORDS))]
    case = rng.random()
    if case < 0.35:
        return word.capitalize()
    if case < 0.45:
        return word.upper()
    return word


def _number(rng: np.random.Generator) -> str:
    kind = rng.integers(5)
    if kind == 0:
        return str(rng.integers(1, 100))
    if kind == 1:
        return str(rng.integers(100, 100000))
    if kind == 2:
        return f"{rng.integers(1, 10000):,}"
    if kind == 3:
        return f"{rng.integers(1, 100)}{UNITS[rng.integers(len(UNITS))]}"
    return f"{rng.integers(1, 100)}%"


def _date(rng: np.random.Generator) -> str:
    year, month, day = int(rng.integers(1990, 2031)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    kind = rng.integers(4)
    if kind == 0:
        return f"{year}-{month:02d}-{day:02d}"
    if kind == 1:
        return f"{day:02d}/{month:02d}/{year}"
    if kind == 2:
        return f"{MONTHS[month - 1]} {day}, {year}"
    return f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"


def _price(rng: np.random.Generator) -> str:
    value = f"{rng.integers(0, 1000)}.{rng.integers(0, 100):02d}"
    currency = CURRENCIES[rng.integers(len(CURRENCIES))]
    return f"{currency}{value}" if rng.random() < 0.8 else f"{value} {currency.strip() or 'USD'}"


def _code(rng: np.random.Generator) -> str:
    letters = "".join(LETTERS[i] for i in rng.integers(len(LETTERS), size=int(rng.integers(1, 4))))
    digits = "".join(str(d) for d in rng.integers(10, size=int(rng.integers(2, 6))))
    kind = rng.integers(4)
    if kind == 0:
        return f"{letters}-{digits}"
    if kind == 1:
        return f"#{letters}{digits}"
    if kind == 2:
        return f"No. {digits}"
    return f"{letters}{digits}"


def _phrase(rng: np.random.Generator, n_words: int) -> str:
    words = [_word(rng) for _ in range(n_words)]
    text = " ".join(words)
    end = rng.random()
    if end < 0.08:
        text += "."
    elif end < 0.12:
        text += "!"
    elif end < 0.15:
        text += "?"
    elif end < 0.2 and n_words > 2:
        i = int(rng.integers(1, n_words))
        text = " ".join(words[:i]) + ", " + " ".join(words[i:])
    return text


def _labelled(rng: np.random.Generator) -> str:
    label = _word(rng).capitalize()
    value = [_number, _date, _price, _code][rng.integers(4)](rng)
    return f"{label}: {value}"


def random_line(rng: np.random.Generator, *, max_words: int = 5) -> str:
    """One line of text: a short phrase, a labelled value ('Total: $12.99'), or a phrase with a number."""
    kind = rng.random()
    if kind < 0.45:
        return _phrase(rng, int(rng.integers(1, max_words + 1)))
    if kind < 0.7:
        return _labelled(rng)
    if kind < 0.85:
        extra = [_number, _date, _price, _code][rng.integers(4)](rng)
        return f"{_phrase(rng, int(rng.integers(1, max(2, max_words - 1))))} {extra}"
    return [_number, _date, _price, _code][rng.integers(4)](rng)
