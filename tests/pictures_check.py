#!/usr/bin/env python3
"""Renders every picture of the docs (docs/img/*.svg) with rsvg-convert and checks
that nothing is cut off: no ink past the canvas, and no text past the box it sits in.

    tests/pictures_check.py [SVG...]     prints `test NAME ... ok/FAILED` and "N passed, N failed"

Two tests a picture:

- `<picture>_stays_on_its_canvas`: the picture is rendered as it is, then once more
  with its canvas grown by MARGIN on every side (the root's width, height and
  viewBox, in a temporary copy). Whatever the enlarged render draws outside the
  original area (a text, a line, a box) would be cut off in the docs.
- `<picture>_texts_stay_in_their_boxes`: each `<text>` is rendered alone (every
  other drawing element taken out, its groups and their fonts kept), on a canvas
  that is its box grown by MARGIN. Its box is the smallest `<rect>` that holds
  the middle of its first line, or the canvas when no rect does. Any of its ink
  outside the box runs past the box's edge.

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
    """rsvg-convert's PNG of `svg` (bytes), decoded: (width, height, alpha rows)."""
    source = os.path.join(scratch, name + ".svg")
    target = os.path.join(scratch, name + ".png")
    with open(source, "wb") as file:
        file.write(svg)
    result = subprocess.run(["rsvg-convert", source, "-o", target], capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"rsvg-convert failed ({result.returncode}): {result.stderr.strip()}")
    with open(target, "rb") as file:
        return decode_png(file.read())


def decode_png(data):
    """The alpha of every pixel of an 8-bit RGB or RGBA PNG (what cairo writes):
    (width, height, rows), a row a bytes of alphas; None for a row all transparent."""
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
            rows.append(b"\xff" * width)
        else:
            rows.append(bytes(line[3::4]))
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
            round(area.left + value / scale) if index % 2 == 0 else round(area.top + value / scale)
            for index, value in enumerate(extent)
        )
        for side, extent in sides.items()
    }


def describe(sides, inner):
    """One line a side: how far the ink runs past that edge, and where."""
    lines = []
    edges = {"left": inner.left, "right": inner.right, "top": inner.top, "bottom": inner.bottom}
    for side, (left, top, right, bottom) in sorted(sides.items()):
        past = {"left": edges["left"] - left, "right": right - edges["right"],
                "top": edges["top"] - top, "bottom": bottom - edges["bottom"]}[side]
        lines.append(f"ink {past:g} past {inner.name}'s {side} edge ({edges[side]:g}): x {left}..{right}, y {top}..{bottom}")
    return lines


def check_canvas(picture, scratch):
    """The picture renders, and the enlarged render draws nothing outside the canvas."""
    canvas = picture.canvas
    width, height, _ = render(picture.source, scratch, "as-is")
    expected = (round(canvas.width * picture.scale), round(canvas.height * picture.scale))
    if (width, height) != expected:
        raise AssertionError(f"rendered {width}x{height}, the picture says {expected[0]}x{expected[1]}")
    area = canvas.grown(MARGIN)
    _, _, rows = render(picture.copy_showing(area), scratch, "enlarged")
    problems = describe(ink_outside(rows, area, canvas, picture.scale, 1), canvas)
    if problems:
        raise AssertionError(f"{picture.path.name}: drawn past the canvas ({canvas.width:g}x{canvas.height:g}):\n  "
                             + "\n  ".join(problems))


def box_of(picture, x, y):
    """The smallest rect that holds (x, y), or the canvas."""
    holding = [box for box in picture.boxes() if box.holds(x, y)]
    if not holding:
        return picture.canvas
    return min(holding, key=lambda box: box.width * box.height)


def check_texts(picture, scratch):
    """Every text, rendered alone, stays inside its box."""
    problems = []
    for index, words, x, y, _ in picture.texts():
        box = box_of(picture, x, y)
        area = box.grown(MARGIN)
        _, _, rows = render(picture.copy_showing(area, keep=index), scratch, f"text-{index}")
        sides = ink_outside(rows, area, box, picture.scale, TEXT_INK_ALPHA)
        if sides:
            where = f"x {box.left:g}..{box.right:g}, y {box.top:g}..{box.bottom:g}"
            problems.append(f'"{words}" runs past {box.name} ({where}):')
            problems.extend("    " + line for line in describe(sides, box))
    if problems:
        raise AssertionError(f"{picture.path.name}:\n  " + "\n  ".join(problems))


def tests_for(paths):
    """(name, function) of every test, two a picture."""
    tests = []
    for path in paths:
        stem = Path(path).stem.replace("-", "_")
        tests.append((f"picture_{stem}_stays_on_its_canvas", lambda path=path: run(check_canvas, path)))
        tests.append((f"picture_{stem}_texts_stay_in_their_boxes", lambda path=path: run(check_texts, path)))
    return tests


def run(check, path):
    with tempfile.TemporaryDirectory() as scratch:
        check(Picture(path), scratch)


def main(arguments):
    paths = arguments or sorted(str(path) for path in PICTURES.glob("*.svg"))
    if shutil.which("rsvg-convert") is None:
        print("test pictures_render ... FAILED")
        print("rsvg-convert is missing. Install it with:\n    sudo apt-get install -y librsvg2-bin")
        print("0 passed, 1 failed")
        return 1
    tests = tests_for(paths)
    failed = 0
    for name, function in tests:
        try:
            function()
            print(f"test {name} ... ok")
        except AssertionError as failure:
            failed += 1
            print(f"test {name} ... FAILED")
            print(failure)
        except Exception:
            failed += 1
            print(f"test {name} ... FAILED")
            traceback.print_exc()
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
