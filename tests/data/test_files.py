from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lightly_train.data.files import IMAGE_EXTENSIONS, list_image_files
from lightly_train.data.names import Names, large_strings
from lightly_train.errors import LightlyTrainError
from tests.images import (
    TREE_NUM_HIDDEN,
    TREE_NUM_IGNORED,
    make_image_tree,
    write_image,
    write_not_an_image,
)


def test_list_image_files__tree(tmp_path: Path) -> None:
    status = make_image_tree(tmp_path)
    files = list_image_files(tmp_path)
    assert files.filenames == sorted(status)
    assert len(files) == len(status)
    assert files.num_ignored == TREE_NUM_IGNORED
    assert files.num_hidden == TREE_NUM_HIDDEN
    # Every path is the file its filename names, relative to the data directory.
    for filename, path in zip(files.filenames, files.paths, strict=True):
        assert Path(path) == tmp_path / filename


def test_list_image_files__nested_names_are_relative_posix(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "b" / "c.png")
    write_image(tmp_path / "top.png")
    files = list_image_files(str(tmp_path))
    assert files.filenames == ["a/b/c.png", "top.png"]
    assert files.paths == [str(tmp_path / "a/b/c.png"), str(tmp_path / "top.png")]


def test_list_image_files__sorted_by_filename(tmp_path: Path) -> None:
    for name in ["b.png", "B.png", "a/z.png", "a.png", "a_/x.png", "10.png", "9.png"]:
        write_image(tmp_path / name)
    files = list_image_files(tmp_path)
    assert files.filenames == [
        "10.png",
        "9.png",
        "B.png",
        "a.png",
        "a/z.png",
        "a_/x.png",
        "b.png",
    ]


def test_list_image_files__extensions_in_any_case(tmp_path: Path) -> None:
    names = ["a.JPG", "b.Jpeg", "c.PNG", "d.TIF", "e.TiFF", "f.WEBP", "g.BMP"]
    for name in names:
        write_image(tmp_path / name)
    write_image(tmp_path / "h.PGM", mode="L")
    write_image(tmp_path / "i.PPM")
    assert list_image_files(tmp_path).filenames == [*names, "h.PGM", "i.PPM"]


@pytest.mark.parametrize("extension", IMAGE_EXTENSIONS)
def test_list_image_files__every_supported_extension(
    tmp_path: Path, extension: str
) -> None:
    # Listing goes by name only, so the content need not match the extension.
    write_not_an_image(tmp_path / f"image{extension}")
    assert list_image_files(tmp_path).filenames == [f"image{extension}"]


def test_list_image_files__hidden_and_other_files_are_skipped(tmp_path: Path) -> None:
    write_image(tmp_path / "visible.png")
    write_image(tmp_path / ".hidden.png")
    write_image(tmp_path / "sub" / ".also_hidden.jpg")
    write_image(tmp_path / ".hidden_dir" / "a.png")
    write_image(tmp_path / ".hidden_dir" / "b.png")
    write_image(tmp_path / "sub" / ".hidden_dir" / "c.png")
    (tmp_path / "notes.txt").write_text("text")
    (tmp_path / "sub" / "labels.json").write_text("{}")
    (tmp_path / "sub" / "archive.png.zip").write_bytes(b"zip")
    files = list_image_files(tmp_path)
    assert files.filenames == ["visible.png"]
    # A hidden directory counts once, whatever it holds.
    assert files.num_hidden == 4
    assert files.num_ignored == 3


def test_list_image_files__logs_what_was_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_image(tmp_path / "a.png")
    write_image(tmp_path / ".b.png")
    (tmp_path / "c.txt").write_text("text")
    with caplog.at_level(logging.INFO, logger="lightly_train.data.files"):
        list_image_files(tmp_path)
    assert "Ignored 1 files with other extensions and 1 hidden" in caplog.text


def test_list_image_files__directory_with_image_extension(tmp_path: Path) -> None:
    write_image(tmp_path / "album.jpg" / "photo.png")
    assert list_image_files(tmp_path).filenames == ["album.jpg/photo.png"]


def test_list_image_files__list_of_dirs_and_files(tmp_path: Path) -> None:
    write_image(tmp_path / "dir1" / "a.png")
    write_image(tmp_path / "dir1" / "sub" / "b.png")
    write_image(tmp_path / "dir2" / "c.jpg")
    write_image(tmp_path / "loose" / "d.bmp")
    data = [str(tmp_path / "dir1"), tmp_path / "dir2", str(tmp_path / "loose/d.bmp")]
    files = list_image_files(data)
    # Files in a directory are named relative to it, a file given directly by its name.
    assert files.filenames == ["a.png", "c.jpg", "d.bmp", "sub/b.png"]
    assert files.paths == [
        str(tmp_path / "dir1/a.png"),
        str(tmp_path / "dir2/c.jpg"),
        str(tmp_path / "loose/d.bmp"),
        str(tmp_path / "dir1/sub/b.png"),
    ]


def test_list_image_files__tuple_and_pathlike(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    assert list_image_files(tmp_path).filenames == ["a.png"]
    assert list_image_files((str(tmp_path),)).filenames == ["a.png"]


def test_list_image_files__duplicate_names(tmp_path: Path) -> None:
    write_image(tmp_path / "dir1" / "x" / "a.png")
    write_image(tmp_path / "dir2" / "x" / "a.png")
    with pytest.raises(LightlyTrainError) as ex:
        list_image_files([tmp_path / "dir1", tmp_path / "dir2"])
    message = str(ex.value)
    assert "'x/a.png'" in message
    assert str(tmp_path / "dir1" / "x" / "a.png") in message
    assert str(tmp_path / "dir2" / "x" / "a.png") in message


def test_list_image_files__file_given_twice(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    with pytest.raises(LightlyTrainError, match="Two images are both named 'a.png'"):
        list_image_files([tmp_path, tmp_path / "a.png"])


def test_list_image_files__missing_path(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    missing = tmp_path / "missing"
    with pytest.raises(LightlyTrainError) as ex:
        list_image_files([tmp_path, missing])
    assert f"'{missing}' does not exist" in str(ex.value)


@pytest.mark.parametrize("data", [["empty"], ["empty", "only_hidden"], []])
def test_list_image_files__no_images(tmp_path: Path, data: list[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("text")
    write_image(tmp_path / "only_hidden" / ".a.png")
    with pytest.raises(LightlyTrainError) as ex:
        list_image_files([tmp_path / d for d in data])
    message = str(ex.value)
    assert "No images found" in message
    _assert_lists_extensions(message)


def test_list_image_files__file_that_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("text")
    with pytest.raises(LightlyTrainError) as ex:
        list_image_files([tmp_path / "notes.txt"])
    message = str(ex.value)
    assert f"'{tmp_path / 'notes.txt'}' is not an image" in message
    _assert_lists_extensions(message)


def _assert_lists_extensions(message: str) -> None:
    supported = message.split("Supported extensions")[1]
    for extension in ["jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp", "ppm", "pgm"]:
        assert f" {extension}," in supported or f" {extension}." in supported


def test_manifest_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(LightlyTrainError, match="lists no images"):
        list_image_files(empty)
    twice = tmp_path / "twice.txt"
    twice.write_text("a.jpg\nb.jpg\na.jpg\n")
    with pytest.raises(LightlyTrainError, match=r"twice: \['a.jpg'\]"):
        list_image_files(twice)
    columns = tmp_path / "cols.parquet"
    pq.write_table(pa.table({"x": ["a.jpg"], "y": ["b.jpg"]}), columns)
    with pytest.raises(LightlyTrainError, match="needs a 'path' column"):
        list_image_files(columns)


def test_a_manifest_that_is_not_utf8_names_its_entry(tmp_path: Path) -> None:
    text = tmp_path / "latin1.txt"
    text.write_bytes(b"a.jpg\r\ncaf\xe9.jpg\n")
    table = tmp_path / "latin1.parquet"
    paths = pa.array([b"a.jpg", None, b"b.jpg", b"caf\xe9.jpg"], pa.binary())
    pq.write_table(pa.table({"path": paths}), table)
    for manifest, entry in ((text, 2), (table, 3)):  # nulls are not entries
        with pytest.raises(LightlyTrainError) as error:
            list_image_files(manifest)
        assert str(error.value) == (
            f"Manifest '{manifest}' is not UTF-8 text (entry {entry}). Save it as "
            "UTF-8, with file names that are UTF-8."
        )


def test_manifest_keeps_names_and_uris_as_given(tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("s3://bucket/x.jpg\nsub/b.png\n/abs/a.png\n")
    files = list_image_files(manifest)
    assert files.filenames == ["/abs/a.png", "s3://bucket/x.jpg", "sub/b.png"]
    assert files.paths == [
        "/abs/a.png",
        "s3://bucket/x.jpg",
        str(tmp_path / "sub/b.png"),
    ]


def test_names_read_like_a_list_of_strings() -> None:
    names = Names(f"{i:05d}.png" for i in range(70_000))  # more than one chunk
    assert len(names) == 70_000
    assert names[0] == "00000.png" and names[-1] == "69999.png"
    assert names[65_535:65_537] == ["65535.png", "65536.png"]
    assert list(names)[65_536] == "65536.png"
    assert names.take(np.array([3, 1])) == ["00003.png", "00001.png"]
    assert names == Names(list(names)) and names != ["00000.png"]


@pytest.mark.parametrize(
    "strings", [[], [""], ["a.png", "", "b/c.jpg"], ["ünï/cödé.png", "日本.jpg", "x"]]
)
def test_large_strings_equal_arrows_conversion(strings: list[str]) -> None:
    built = large_strings(strings)
    built.validate(full=True)
    assert built.equals(pa.array(strings, pa.large_string()))


def test_a_file_name_that_is_not_utf8_is_named_with_the_fix(tmp_path: Path) -> None:
    # os.scandir gives the undecodable byte as a surrogate, which has no UTF-8.
    write_image(tmp_path / "ok.png")
    write_image(tmp_path / os.fsdecode(b"caf\xe9.png"))
    with pytest.raises(LightlyTrainError) as error:
        list_image_files(tmp_path)
    message = str(error.value)
    assert "b'caf\\xe9.png' is not valid UTF-8" in message
    assert "Rename it" in message and "\n" not in message


@pytest.mark.parametrize("source", ["directory", "manifest"])
def test_a_listing_holds_no_python_object_per_file(tmp_path: Path, source: str) -> None:
    """Python objects allocated by listing 2k vs 40k files: a list of names and
    paths would add two strings per file; Arrow arrays add none."""

    def objects_kept(n: int) -> int:
        root = tmp_path / f"{source}{n}"
        root.mkdir()
        names = [f"d{i % 7}/{i:06d}.png" for i in range(n)]
        if source == "directory":
            for d in range(7):
                (root / f"d{d}").mkdir()
            for name in names:
                os.close(os.open(root / name, os.O_CREAT))
            data = root
        else:
            data = root / "manifest.parquet"
            pq.write_table(pa.table({"path": names}), data)
        del names
        gc.collect()
        before = sys.getallocatedblocks()
        files = list_image_files(data)
        gc.collect()
        kept = sys.getallocatedblocks() - before
        assert len(files) == n and files.filenames[0] == "d0/000000.png"
        return kept

    small, large = objects_kept(2_000), objects_kept(40_000)
    assert large - small < 1_000, (small, large)
