#!/usr/bin/env python3
"""Renders every picture of the docs (docs/img/*.svg) with rsvg-convert and checks
that nothing is cut off or drawn over: no ink past the canvas, no text past the box
it sits in, no line through a text.

    tests/pictures_check.py [SVG...]     prints `test NAME ... ok/FAILED` and "N passed, N failed"

Three tests a picture:

- `<picture>_stays_on_its_canvas`: the picture is rendered as it is, then once more
  with its canvas grown by MARGIN on every side (the root's width, height and
  viewBox, in a temporary copy). Whatever the enlarged render draws outside the
  original area (a text, a line, a box) would be cut off in the docs.
- `<picture>_texts_stay_in_their_boxes`: each `<text>` is rendered alone (every
  other drawing element taken out, its groups and their fonts kept), on the
  canvas grown by MARGIN. Its box is the smallest `<rect>` that holds the middle
  of its first line, inside the rect's border line, or the canvas when no rect
  does. Any of its ink outside the box runs past the box's edge.
- `<picture>_texts_are_not_crossed`: no line, arrow or box edge is drawn over a
  text, and no two texts run into each other. The lines that show are where the
  picture without its texts differs from its boxes alone (a line under a box's
  fill does not show); the edges are the boxes drawn unfilled.

The ink is read from the PNG rsvg-convert writes, decoded here with zlib alone,
so the check needs nothing but rsvg-convert (Debian's librsvg2-bin; `make deps`
installs it).
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
import xml.etree.ElementTree as ElementTree
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from enum import Enum
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in tests/

ROOT = Path(__file__).resolve().parent.parent
PICTURES = ROOT / "docs" / "img"
SVG = "http://www.w3.org/2000/svg"
ElementTree.register_namespace("", SVG)
# User units added on every side of a canvas: ink this far past an edge shows.
MARGIN = 60
# How opaque a pixel of a lone text must be to count as its ink: anti-aliasing
# paints a faint fringe a pixel beyond a glyph that ends right at an edge.
TEXT_INK_ALPHA = 64
# The elements that draw; groups, defs (markers, patterns) and the title stay.
DRAWING = {"rect", "line", "path", "polyline", "polygon", "circle", "ellipse", "text", "image", "use"}


def tag(element):
    """The element's name without its namespace."""
    return element.tag.rsplit("}", 1)[-1]


def number(text, what):
    """A length in user units: "760" or "760px"; anything else is refused."""
    value = text.strip().removesuffix("px")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{what} is {text!r}: the check reads plain user units only") from None


class Layer(Enum):
    """What of a picture without its texts is drawn."""

    # Boxes, lines, arrows, paths: the picture as it is, but its texts.
    EVERYTHING = "everything"
    # The boxes alone, filled as they are: what the lines are drawn over.
    BOXES = "boxes"
    # The boxes' edges alone, unfilled.
    EDGES = "edges"


class Box:
    """A rectangle in user units."""

    def __init__(self, left, top, width, height, name):
        self.left, self.top, self.width, self.height, self.name = left, top, width, height, name

    @property
    def right(self):
        return self.left + self.width

    @property
    def bottom(self):
        return self.top + self.height

    def holds(self, x, y):
        return self.left <= x <= self.right and self.top <= y <= self.bottom

    def grown(self, margin):
        return Box(self.left - margin, self.top - margin, self.width + 2 * margin, self.height + 2 * margin, self.name)


class Picture:
    """One SVG file, parsed."""

    def __init__(self, path):
        self.path = Path(path)
        self.source = self.path.read_bytes()
        self.tree = ElementTree.ElementTree(ElementTree.fromstring(self.source))
        root = self.tree.getroot()
        for element in root.iter():
            if "transform" in element.attrib:
                raise ValueError(f"<{tag(element)}> has a transform: the check places boxes and texts untransformed")
        self.scale = 1.0
        if "viewBox" in root.attrib:
            left, top, width, height = (number(part, "viewBox") for part in root.get("viewBox").replace(",", " ").split())
            if "width" in root.attrib:
                self.scale = number(root.get("width"), "width") / width
        else:
            left, top = 0.0, 0.0
            width, height = number(root.get("width"), "width"), number(root.get("height"), "height")
        self.canvas = Box(left, top, width, height, "the canvas")

    def copy_showing(self, area, keep=None):
        """A copy of the picture whose canvas is `area` (same scale); with `keep`
        (a `<text>` of this picture, by its place in document order), every other
        drawing element is left out."""
        root = ElementTree.fromstring(self.source)
        root.set("viewBox", f"{area.left} {area.top} {area.width} {area.height}")
        root.set("width", str(area.width * self.scale))
        root.set("height", str(area.height * self.scale))
        if keep is not None:
            target = list(root.iter(f"{{{SVG}}}text"))[keep]
            parents = {child: parent for parent in root.iter() for child in parent}
            ancestors = set()
            element = target
            while element in parents:
                element = parents[element]
                ancestors.add(element)
            prune(root, target, ancestors)
        return ElementTree.tostring(root)

    def copy_without_texts(self, area, layer):
        """A copy of the picture whose canvas is `area`, without its texts, and
        with only the drawing `layer` names."""
        root = ElementTree.fromstring(self.copy_showing(area))
        for parent in list(root.iter()):
            for child in list(parent):
                if tag(child) == "text" or (layer != Layer.EVERYTHING and tag(child) in DRAWING - {"rect"}):
                    parent.remove(child)
                elif tag(child) == "rect" and layer == Layer.EDGES:
                    child.set("fill", "none")
        return ElementTree.tostring(root)

    def boxes(self):
        """Every `<rect>`, as the box inside its border: a text on the border
        line runs past it as much as one beyond it."""
        root = self.tree.getroot()
        parents = {child: parent for parent in root.iter() for child in parent}
        found = []
        for rect in root.iter(f"{{{SVG}}}rect"):
            border = 0.0
            if inherited(rect, parents, "stroke", "none") != "none":
                border = number(inherited(rect, parents, "stroke-width", "1"), "stroke-width") / 2
            left, top = number(rect.get("x", "0"), "a rect's x"), number(rect.get("y", "0"), "a rect's y")
            width, height = number(rect.get("width", "0"), "a rect's width"), number(rect.get("height", "0"), "a rect's height")
            canvas = self.canvas
            if (left, top, width, height) == (canvas.left, canvas.top, canvas.width, canvas.height) and not border:
                # The background: the canvas itself.
                found.append(canvas)
                continue
            found.append(Box(left + border, top + border, width - 2 * border, height - 2 * border, "its box"))
        return found

    def texts(self):
        """(index, words, x, y of the middle of its first line, font size) of every `<text>`."""
        root = self.tree.getroot()
        parents = {child: parent for parent in root.iter() for child in parent}
        found = []
        for index, text in enumerate(root.iter(f"{{{SVG}}}text")):
            size = inherited(text, parents, "font-size", "16")
            size = number(size, "font-size")
            x = number(text.get("x", "0").split()[0], "a text's x")
            baseline = number(text.get("y", "0").split()[0], "a text's y")
            words = " ".join("".join(text.itertext()).split())
            found.append((index, words, x, baseline - 0.35 * size, size))
        return found


def inherited(element, parents, attribute, default):
    """An attribute's value on the element or its nearest ancestor that has it."""
    while element is not None:
        if attribute in element.attrib:
            return element.get(attribute)
        element = parents.get(element)
    return default


def prune(element, target, ancestors):
    """Takes every drawing element but `target` out of `element`, keeping the
    groups on the way to it (their fonts and fills are the text's)."""
    for child in list(element):
        if child is target:
            continue
        if child in ancestors:
            prune(child, target, ancestors)
        elif tag(child) in DRAWING or tag(child) == "g":
            element.remove(child)


def render(svg, scratch, name):
    """rsvg-convert's PNG of `svg` (bytes), decoded: (width, height, RGBA rows)."""
    return decode_png(render_png(svg, scratch, name))


def alphas(rows):
    """The alpha of every pixel of RGBA rows (None stays None: all transparent)."""
    return [None if row is None else row[3::4] for row in rows]


def render_png(svg, scratch, name):
    """rsvg-convert's PNG of `svg` (bytes), as it wrote it."""
    source = os.path.join(scratch, name + ".svg")
    target = os.path.join(scratch, name + ".png")
    with open(source, "wb") as file:
        file.write(svg)
    result = subprocess.run(["rsvg-convert", source, "-o", target], capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"rsvg-convert failed ({result.returncode}): {result.stderr.strip()}")
    with open(target, "rb") as file:
        return file.read()


def png_size(data):
    """(width, height) of a PNG, from its header."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise AssertionError("rsvg-convert wrote something that is not a PNG")
    return struct.unpack(">II", data[16:24])


def decode_png(data):
    """The pixels of an 8-bit RGB or RGBA PNG (what cairo writes): (width, height,
    rows), a row a bytes of RGBA; None for a row all transparent."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError("rsvg-convert wrote something that is not a PNG")
    position, chunks, header = 8, [], None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
    width, height, depth, color, _, _, interlace = header
    if depth != 8 or color not in (2, 6) or interlace != 0:
        raise AssertionError(f"a PNG of depth {depth}, colour type {color}, interlace {interlace}: not read here")
    pixel = 3 if color == 2 else 4
    stride = width * pixel
    raw = zlib.decompress(b"".join(chunks))
    nothing = bytes(stride)
    previous, previous_blank, rows = bytearray(stride), True, []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], raw[start + 1 : start + 1 + stride]
        # Above a blank row, every filter predicts 0: a filtered row of zeros is blank.
        if color == 6 and previous_blank and line == nothing:
            rows.append(None)
            continue
        line = unfilter(kind, bytearray(line), previous, pixel)
        if color == 2:
            # Cairo leaves out the alpha of a picture all opaque.
            opaque = bytearray(b"\xff" * (width * 4))
            for channel in range(3):
                opaque[channel::4] = line[channel::3]
            rows.append(bytes(opaque))
        else:
            rows.append(bytes(line))
        previous, previous_blank = line, color == 6 and not any(line)
    return width, height, rows


def unfilter(kind, line, previous, pixel):
    """Undoes one row's PNG filter (None, Sub, Up, Average, Paeth)."""
    if kind == 1:
        for i in range(pixel, len(line)):
            line[i] = (line[i] + line[i - pixel]) & 0xFF
    elif kind == 2:
        for i in range(len(line)):
            line[i] = (line[i] + previous[i]) & 0xFF
    elif kind == 3:
        for i in range(len(line)):
            left = line[i - pixel] if i >= pixel else 0
            line[i] = (line[i] + (left + previous[i]) // 2) & 0xFF
    elif kind == 4:
        for i in range(len(line)):
            left = line[i - pixel] if i >= pixel else 0
            up, corner = previous[i], previous[i - pixel] if i >= pixel else 0
            guess = left + up - corner
            to_left, to_up, to_corner = abs(guess - left), abs(guess - up), abs(guess - corner)
            if to_left <= to_up and to_left <= to_corner:
                line[i] = (line[i] + left) & 0xFF
            elif to_up <= to_corner:
                line[i] = (line[i] + up) & 0xFF
            else:
                line[i] = (line[i] + corner) & 0xFF
    elif kind != 0:
        raise AssertionError(f"unknown PNG filter {kind}")
    return line


def ink_outside(rows, area, inner, scale, threshold):
    """The extent, in user units, of ink (alpha >= threshold) of a render of `area`
    that lies wholly outside `inner`, per side: {side: (left, top, right, bottom)}."""
    # Pixels that overlap `inner` may hold its own ink (an edge that falls inside one).
    first_column = int((inner.left - area.left) * scale)
    last_column = -int(-(inner.right - area.left) * scale) - 1
    first_row = int((inner.top - area.top) * scale)
    last_row = -int(-(inner.bottom - area.top) * scale) - 1
    sides = {}
    for y, row in enumerate(rows):
        if row is None:
            continue
        for x, alpha in enumerate(row):
            if alpha < threshold:
                continue
            if y < first_row:
                side = "top"
            elif y > last_row:
                side = "bottom"
            elif x < first_column:
                side = "left"
            elif x > last_column:
                side = "right"
            else:
                continue
            left, top, right, bottom = sides.get(side, (x, y, x, y))
            sides[side] = (min(left, x), min(top, y), max(right, x + 1), max(bottom, y + 1))
    return {
        side: tuple(
            area.left + value / scale if index % 2 == 0 else area.top + value / scale
            for index, value in enumerate(extent)
        )
        for side, extent in sides.items()
    }


def describe(sides, inner, area):
    """One line a side: how far the ink runs past that edge, and where (ink that
    reaches the end of the rendered area may run further)."""
    lines = []
    edges = {"left": inner.left, "right": inner.right, "top": inner.top, "bottom": inner.bottom}
    for side, (left, top, right, bottom) in sorted(sides.items()):
        past, at_the_end = {
            "left": (edges["left"] - left, left <= area.left),
            "right": (right - edges["right"], right >= area.right),
            "top": (edges["top"] - top, top <= area.top),
            "bottom": (bottom - edges["bottom"], bottom >= area.bottom),
        }[side]
        amount = f"{past:g} or more" if at_the_end else f"{past:g}"
        lines.append(
            f"ink {amount} past {inner.name}'s {side} edge ({edges[side]:g}): x {left:g}..{right:g}, y {top:g}..{bottom:g}"
        )
    return lines


def check_canvas(picture, scratch):
    """The picture renders, and the enlarged render draws nothing outside the canvas."""
    canvas = picture.canvas
    width, height = png_size(render_png(picture.source, scratch, "as-is"))
    expected = (round(canvas.width * picture.scale), round(canvas.height * picture.scale))
    if (width, height) != expected:
        raise AssertionError(f"rendered {width}x{height}, the picture says {expected[0]}x{expected[1]}")
    area = canvas.grown(MARGIN)
    _, _, rows = render(picture.copy_showing(area), scratch, "enlarged")
    problems = describe(ink_outside(alphas(rows), area, canvas, picture.scale, 1), canvas, area)
    if problems:
        raise AssertionError(f"{picture.path.name}: drawn past the canvas ({canvas.width:g}x{canvas.height:g}):\n  "
                             + "\n  ".join(problems))


def box_of(picture, x, y):
    """The smallest rect that holds (x, y), or the canvas."""
    holding = [box for box in picture.boxes() if box.holds(x, y)]
    if not holding:
        return picture.canvas
    return min(holding, key=lambda box: box.width * box.height)


class LoneText:
    """One `<text>` rendered alone on the enlarged canvas."""

    def __init__(self, index, words, x, y, rows):
        self.index, self.words, self.x, self.y, self.rows = index, words, x, y, rows

    def ink(self):
        """Its pixels of TEXT_INK_ALPHA or more, as (column, row)."""
        return ink_pixels(self.rows)


def ink_pixels(rows):
    """(column, row) of every pixel of TEXT_INK_ALPHA or more."""
    return {
        (x, y)
        for y, row in enumerate(rows)
        if row is not None
        for x, alpha in enumerate(row)
        if alpha >= TEXT_INK_ALPHA
    }


LONE_TEXTS = {}


def lone_texts(picture):
    """Every text of the picture rendered alone on its canvas grown by MARGIN
    (once a picture: two tests read them). rsvg-convert runs two at a time."""
    if picture.path not in LONE_TEXTS:
        area = picture.canvas.grown(MARGIN)
        texts = picture.texts()
        with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(max_workers=2) as pool:
            pngs = pool.map(
                lambda text: render_png(picture.copy_showing(area, keep=text[0]), scratch, f"text-{text[0]}"), texts
            )
            LONE_TEXTS[picture.path] = [
                LoneText(index, words, x, y, alphas(decode_png(png)[2])) for (index, words, x, y, _), png in zip(texts, pngs)
            ]
    return LONE_TEXTS[picture.path]


def check_texts(picture, _scratch):
    """Every text, rendered alone, stays inside its box."""
    area = picture.canvas.grown(MARGIN)
    problems = []
    for text in lone_texts(picture):
        box = box_of(picture, text.x, text.y)
        sides = ink_outside(text.rows, area, box, picture.scale, TEXT_INK_ALPHA)
        if sides:
            where = f"x {box.left:g}..{box.right:g}, y {box.top:g}..{box.bottom:g}"
            problems.append(f'"{text.words}" runs past {box.name} ({where}):')
            problems.extend("    " + line for line in describe(sides, box, area))
    if problems:
        raise AssertionError(f"{picture.path.name}:\n  " + "\n  ".join(problems))


def check_crossings(picture, scratch):
    """No line, arrow, box edge or other text draws over a text's ink."""
    area = picture.canvas.grown(MARGIN)
    drawn = visible_lines(picture, area, scratch) | ink_pixels(alphas(render(
        picture.copy_without_texts(area, Layer.EDGES), scratch, "edges")[2]))
    owner, problems = {}, []
    for text in lone_texts(picture):
        ink = text.ink()
        crossed = ink & drawn
        if crossed:
            at = where(crossed, area, picture.scale)
            problems.append(f'"{text.words}" is crossed by a line, an arrow or a box\'s edge at {at}')
        for pixel in ink:
            other = owner.setdefault(pixel, text)
            if other is not text:
                problems.append(f'"{text.words}" runs into "{other.words}" at {where({pixel}, area, picture.scale)}')
                break
    if problems:
        raise AssertionError(f"{picture.path.name}:\n  " + "\n  ".join(problems))


def visible_lines(picture, area, scratch):
    """The pixels where lines, arrows and paths show: where the picture without
    its texts differs from its boxes alone (a line a box covers does not show)."""
    _, _, everything = render(picture.copy_without_texts(area, Layer.EVERYTHING), scratch, "everything")
    _, _, boxes = render(picture.copy_without_texts(area, Layer.BOXES), scratch, "boxes")
    pixels = set()
    for y, (drawn, under) in enumerate(zip(everything, boxes)):
        if drawn == under:
            continue
        drawn, under = drawn or bytes(len(under)), under or bytes(len(drawn))
        for x in range(len(drawn) // 4):
            if max(abs(a - b) for a, b in zip(drawn[4 * x : 4 * x + 4], under[4 * x : 4 * x + 4])) >= TEXT_INK_ALPHA:
                pixels.add((x, y))
    return pixels


def where(pixels, area, scale):
    """The extent of some pixels, in user units."""
    columns = [x for x, _ in pixels]
    rows = [y for _, y in pixels]
    left, right = area.left + min(columns) / scale, area.left + (max(columns) + 1) / scale
    top, bottom = area.top + min(rows) / scale, area.top + (max(rows) + 1) / scale
    return f"x {left:g}..{right:g}, y {top:g}..{bottom:g}"


CHECKS = [
    ("stays_on_its_canvas", check_canvas),
    ("texts_stay_in_their_boxes", check_texts),
    ("texts_are_not_crossed", check_crossings),
]


def check_picture(path):
    """Runs every check on one picture: [(test name, None or what failed)]."""
    stem = Path(path).stem.replace("-", "_")
    results = []
    for check_name, check in CHECKS:
        name = f"picture_{stem}_{check_name}"
        try:
            with tempfile.TemporaryDirectory() as scratch:
                check(Picture(path), scratch)
            results.append((name, None))
        except AssertionError as failure:
            results.append((name, str(failure)))
        except Exception:
            results.append((name, traceback.format_exc().rstrip()))
    return results


def main(arguments):
    paths = arguments or sorted(str(path) for path in PICTURES.glob("*.svg"))
    if shutil.which("rsvg-convert") is None:
        print("test pictures_render ... FAILED")
        print("rsvg-convert is missing. Install it with:\n    sudo apt-get install -y librsvg2-bin")
        print("0 passed, 1 failed")
        return 1
    passed = failed = 0
    # The decoding is pure Python: one picture a core.
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        for results in pool.map(check_picture, paths):
            for name, failure in results:
                if failure is None:
                    passed += 1
                    print(f"test {name} ... ok")
                else:
                    failed += 1
                    print(f"test {name} ... FAILED")
                    print(failure)
            sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
