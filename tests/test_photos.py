"""Real-photo extraction: the .rcc and .edj readers and the curated list, without the packages."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image

from captioner.scenes import photos as photos_mod
from captioner.scenes import rcc as rcc_mod
from captioner.scenes.photos import (
    PhotoInfo,
    PhotoList,
    Source,
    extract_photos,
    find_jpegs,
    largest_embedded_jpeg,
    load_photo_list,
    output_name,
)
from captioner.scenes.rcc import RccArchive, RccError, read_rcc

# -- a minimal Qt resource archive writer (the layout rcc -binary produces) ----------------------


def make_rcc(files: dict[str, tuple[bytes, int]], version: int = 3) -> bytes:
    """An .rcc holding `files`: path -> (bytes, flags), flags 0 raw, 1 zlib, 4 zstd (left as is)."""
    tree: dict = {}
    for path, content in files.items():
        node = tree
        *dirs, name = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = content

    names, data = bytearray(), bytearray()
    name_offsets: dict[str, int] = {}

    def name_offset(name: str) -> int:
        if name not in name_offsets:
            name_offsets[name] = len(names)
            encoded = name.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(name), zlib.crc32(encoded)) + encoded)
        return name_offsets[name]

    # breadth first, so the children of every directory are consecutive nodes
    nodes: list[list] = [["", tree]]
    queue = [0]
    entries: dict[int, tuple] = {}
    while queue:
        index = queue.pop(0)
        name, content = nodes[index]
        if isinstance(content, dict):
            first = len(nodes)
            for child in sorted(content):
                nodes.append([child, content[child]])
                queue.append(len(nodes) - 1)
            entries[index] = ("dir", len(content), first)
        else:
            blob, flags = content
            stored = struct.pack(">I", len(blob)) + zlib.compress(blob) if flags == 1 else blob
            entries[index] = ("file", flags, len(data))
            data.extend(struct.pack(">I", len(stored)) + stored)

    tree_bytes = bytearray()
    for index, (name, _) in enumerate(nodes):
        kind, a, b = entries[index]
        offset = name_offset(name) if index else 0
        if kind == "dir":
            tree_bytes += struct.pack(">IHII", offset, 2, a, b)
        else:
            tree_bytes += struct.pack(">IHHHI", offset, a, 0, 1, b)
        if version >= 2:
            tree_bytes += struct.pack(">Q", 0)
    header_size = 24 if version >= 3 else 20
    names_offset = header_size
    data_offset = names_offset + len(names)
    tree_offset = data_offset + len(data)
    header = b"qres" + struct.pack(">IIII", version, tree_offset, data_offset, names_offset)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + bytes(names) + bytes(data) + bytes(tree_bytes)


PAYLOAD_Z = b"compressed " * 50
PAYLOAD_RAW = b"\x00\x01raw bytes\xff"


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_reads_zlib_and_raw_files_in_a_subfolder(tmp_path, version):
    blob = make_rcc(
        {"top.txt": (b"hello", 0), "sub/a.bin": (PAYLOAD_Z, 1), "sub/b.txt": (PAYLOAD_RAW, 0)},
        version,
    )
    path = tmp_path / "test.rcc"
    path.write_bytes(blob)
    got = dict(read_rcc(path))
    assert got == {"top.txt": b"hello", "sub/a.bin": PAYLOAD_Z, "sub/b.txt": PAYLOAD_RAW}
    archive = RccArchive(blob)
    assert archive.version == version
    assert sorted(archive.paths()) == ["sub/a.bin", "sub/b.txt", "top.txt"]
    assert archive.read("sub/a.bin") == PAYLOAD_Z
    with pytest.raises(KeyError):
        archive.read("sub/missing")
    # a filter reads only what it wants
    assert [p for p, _ in archive.files(lambda p: p.endswith(".txt"))] == ["top.txt", "sub/b.txt"]


def test_rcc_names_are_utf16():
    blob = make_rcc({"caf\u00e9/\u00e9t\u00e9.txt": (b"x", 0)})
    assert RccArchive(blob).paths() == ["caf\u00e9/\u00e9t\u00e9.txt"]


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"qres",
        b"not an archive at all, just bytes" * 3,
        b"qres" + struct.pack(">IIII", 9, 0, 0, 0) + b"\0" * 8,
        b"qres" + struct.pack(">IIII", 3, 10_000, 10_000, 10_000) + b"\0" * 8,
    ],
)
def test_rcc_garbage_raises_a_clear_value_error(blob):
    with pytest.raises(ValueError) as info:
        RccArchive(blob, name="junk.rcc")
    assert "junk.rcc" in str(info.value)
    assert isinstance(info.value, RccError)


def test_rcc_truncated_archive_raises_value_error():
    blob = make_rcc({"sub/a.bin": (PAYLOAD_Z, 1), "sub/b.txt": (PAYLOAD_RAW * 100, 0)})
    archive = RccArchive(blob)
    data_start = archive.data_offset
    # cut inside the data: the header and tree offsets now point past the end
    with pytest.raises(ValueError, match="truncated|past the end"):
        list(RccArchive(blob[: data_start + 30]).files())
    # cut at the very end: the last node of the tree is gone
    with pytest.raises(ValueError, match="damaged"):
        RccArchive(blob[:-5]).paths()


def test_rcc_damaged_data_and_tree_raise_value_error():
    blob = bytearray(make_rcc({"a.bin": (PAYLOAD_Z, 1)}))
    archive = RccArchive(bytes(blob))
    start = archive.data_offset + 4 + 4  # past the length and the uncompressed size
    blob[start : start + 6] = b"garbag"
    with pytest.raises(ValueError, match="zlib"):
        dict(RccArchive(bytes(blob)).files())
    # a directory claiming more children than there are nodes
    blob = bytearray(make_rcc({"a.bin": (b"x", 0)}))
    tree = RccArchive(bytes(blob)).tree_offset
    struct.pack_into(">I", blob, tree + 6, 1000)
    with pytest.raises(ValueError, match="children"):
        RccArchive(bytes(blob)).paths()


def test_rcc_zstd_without_a_module_is_skipped_with_a_message(monkeypatch):
    blob = make_rcc({"z.bin": (b"\x28\xb5\x2f\xfdnot really zstd", 4), "plain.txt": (b"ok", 0)})
    monkeypatch.setattr(rcc_mod, "_zstd_decompressor", lambda: None)
    with pytest.warns(UserWarning, match="zstd"):
        got = dict(RccArchive(blob).files())
    assert got == {"plain.txt": b"ok"}
    with pytest.raises(rcc_mod.RccUnsupported, match="zstandard"):
        dict(RccArchive(blob).files(skip_unsupported=False))


# -- JPEG streams inside .edj files ---------------------------------------------------------------


def jpeg_bytes(size: tuple[int, int], colour=(200, 30, 30), exif_thumbnail: bool = False) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, colour)
    if exif_thumbnail:  # an APP1 segment whose payload holds a complete small JPEG
        thumb = io.BytesIO()
        Image.new("RGB", (4, 4)).save(thumb, "JPEG")
        app1 = b"Exif\0\0" + thumb.getvalue()
        raw = io.BytesIO()
        image.save(raw, "JPEG", quality=80)
        data = raw.getvalue()
        return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def test_edj_keeps_the_larger_of_two_embedded_jpegs():
    small, large = jpeg_bytes((16, 8)), jpeg_bytes((64, 48), (20, 120, 220))
    blob = (
        b"EET\x1e\xe7"
        + b"\x00junk\xff" * 10
        + small
        + b"\x12\x34" * 7
        + large
        + b"\xff\xd8\xff tail"
    )
    assert len(find_jpegs(blob)) == 2
    assert largest_embedded_jpeg(blob) == large
    with Image.open(io.BytesIO(largest_embedded_jpeg(blob))) as image:
        assert image.size == (64, 48)
    assert largest_embedded_jpeg(b"no jpeg here") is None


def test_edj_scanner_skips_an_exif_thumbnail_inside_a_jpeg():
    outer = jpeg_bytes((40, 30), exif_thumbnail=True)
    spans = find_jpegs(b"xx" + outer + b"yy")
    assert spans == [(2, 2 + len(outer))]


# -- the curated list ----------------------------------------------------------------------------

BASIC = {
    "fish",
    "bird",
    "dog",
    "cat",
    "tower",
    "building",
    "monument",
    "fruit",
    "tool",
    "planet",
    "hand",
    "flower",
    "leaves",
    "seeds",
    "beans",
    "nuts",
    "insect",
    "vegetables",
}


def test_curated_photo_list_loads_and_every_record_is_complete():
    photo_list = load_photo_list()
    assert len(photo_list.photos) > 500
    for p in photo_list.photos:
        assert p.label and p.label == p.label.lower()
        assert p.names and (p.label in p.names or BASIC & set(p.names))
        assert p.role in ("object", "scene")
        assert p.split in ("train", "test")
        assert p.licence
        if p.role == "scene":
            assert p.places and p.split == "train"
        if p.source == "gcompris-qt-data" and p.role == "object":
            assert p.split == "test"
        else:
            assert p.split == "train"
    tests = [p for p in photo_list.photos if p.split == "test"]
    assert len(tests) >= 150
    assert all(p.role == "object" for p in tests)
    # held out by source: no test photo's package contributes train objects
    assert {p.source for p in tests}.isdisjoint(
        {p.source for p in photo_list.photos if p.split == "train" and p.role == "object"}
    )
    # written file names never collide
    names = [output_name(p) for p in photo_list.photos]
    assert len(names) == len(set(names))
    assert all(entry.get("reason") for entry in photo_list.left_out)


def test_curated_list_rejects_a_label_missing_from_its_names(tmp_path):
    data = json.loads(photos_mod.default_photo_list_path().read_text(encoding="utf-8"))
    data["photos"] = [dict(data["photos"][0], names=["something else"])]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="names"):
        load_photo_list(path)


# -- extraction ------------------------------------------------------------------------------------


def test_extraction_with_no_package_installed_writes_an_empty_manifest(tmp_path, capsys):
    photo_list = load_photo_list()
    roots = {name: tmp_path / "absent" / str(i) for i, name in enumerate(photo_list.sources)}
    records, reports = extract_photos(tmp_path / "out", photo_list, roots=roots, node_modules=[])
    printed = capsys.readouterr().out
    assert records == []
    assert json.loads((tmp_path / "out" / "photos.json").read_text()) == []
    for source in photo_list.sources.values():
        assert f"{source.name}: not installed (install with `{source.install}`)" in printed
    assert "apt-get install gcompris-qt-data" in printed
    assert not any(r.installed for r in reports)


def test_cli_with_no_package_installed_exits_cleanly(tmp_path, capsys):
    photo_list = load_photo_list()
    argv = ["--out", str(tmp_path / "out"), "--node-modules", str(tmp_path / "nm")]
    for name in photo_list.sources:
        argv += ["--root", f"{name}={tmp_path / 'absent'}"]
    args = photos_mod.get_args_parser().parse_args(argv)
    assert photos_mod.main(args) == 0
    assert "not installed" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "photos.json").read_text()) == []


def test_extraction_from_fake_packages(tmp_path, capsys):
    rgba = Image.new("RGBA", (900, 300), (0, 0, 0, 0))
    rgba.paste((10, 200, 10, 255), (100, 50, 400, 250))
    png = io.BytesIO()
    rgba.save(png, "PNG")
    gc = tmp_path / "gc"
    gc.mkdir()
    (gc / "zoo.rcc").write_bytes(
        make_rcc({"gcompris/src/activities/zoo/cat.png": (png.getvalue(), 1)})
    )
    edj = tmp_path / "edj"
    edj.mkdir()
    (edj / "Hill.edj").write_bytes(
        b"junk" + jpeg_bytes((80, 60)) + b"more" + jpeg_bytes((1600, 1200)) + b"end"
    )
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    sources = {
        "gc": Source("gc", "rcc", str(gc), "apt-get install gc", "x"),
        "edj": Source("edj", "edj", str(edj), "apt-get install edj", "x"),
        "plain": Source("plain", "file", str(plain), "apt-get install plain", "x"),
    }
    photo_list = PhotoList(
        sources,
        [
            PhotoInfo(
                "gc",
                "zoo.rcc",
                "cat",
                ("cat",),
                "object",
                "test",
                "CC0-1.0",
                member="gcompris/src/activities/zoo/cat.png",
            ),
            PhotoInfo(
                "gc",
                "zoo.rcc",
                "dog",
                ("dog",),
                "object",
                "test",
                "CC0-1.0",
                member="gcompris/src/activities/zoo/dog.png",
            ),
            PhotoInfo(
                "edj",
                "Hill.edj",
                "hill",
                ("hill",),
                "scene",
                "train",
                "BSD-2-clause",
                places=("on a hill",),
            ),
            PhotoInfo(
                "plain", "broken.jpg", "rock", ("rock",), "object", "train", "GPL-2.0-or-later"
            ),
        ],
    )
    records, reports = extract_photos(tmp_path / "out", photo_list, node_modules=[])
    printed = capsys.readouterr().out
    assert [r["label"] for r in records] == ["cat", "hill"]
    assert "gc: found 1 of 2 listed photos" in printed and "1 unreadable" in printed
    assert "plain: found 0 of 1" in printed
    cat, hill = records
    assert cat["split"] == "test" and cat["licence"] == "CC0-1.0" and cat["role"] == "object"
    assert "places" not in cat and hill["places"] == ["on a hill"]
    for record in records:
        with Image.open(tmp_path / "out" / record["file"]) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert max(image.size) <= 640
            assert (image.width, image.height) == (record["width"], record["height"])
    with Image.open(tmp_path / "out" / cat["file"]) as image:
        assert image.size == (640, 213)
        assert image.getpixel((5, 5))[0] > 240  # transparent corner laid on white
    with Image.open(tmp_path / "out" / hill["file"]) as image:
        assert image.size == (640, 480)  # the larger of the two embedded JPEGs
    manifest = json.loads((tmp_path / "out" / "photos.json").read_text())
    assert manifest == records
