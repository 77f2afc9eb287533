"""The one reader of user data (issue 17): every command reads the same files by the same
rules and fails with the same one-line errors; ``run`` streams CSV / .npy in chunks; the
Runtime chunks large batches; size and pixel caps are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from metaae_edge.errors import DataError, InputError, MetaAEError  # noqa: E402
from metaae_edge.runtime import readers  # noqa: E402
from metaae_edge.runtime.images import read_images  # noqa: E402
from metaae_edge.runtime.io import read_array  # noqa: E402
from metaae_edge.runtime.streaming import array_writer, open_rows  # noqa: E402
from metaae_edge.tasks.userdata import load_array, load_task  # noqa: E402

ROWS = np.round(np.random.default_rng(0).normal(size=(12, 3)), 4)


def _streamed(path: Path) -> np.ndarray:
    rows = open_rows(path)
    return np.concatenate([c for _, c in rows.chunks])


def _readers(path: Path) -> list[np.ndarray]:
    """The same file through run's reader, the streaming reader and the data-set loader."""
    return [read_array(path), _streamed(path), load_array(path).astype(np.float64)]


def _errors(path: Path) -> list[str]:
    """The one-line message of each reader for a bad file (the same words for all)."""
    msgs = []
    for read in (read_array, _streamed, load_array):
        with pytest.raises(MetaAEError) as info:
            read(path)
        assert "\n" not in str(info.value)
        msgs.append(str(info.value))
    return msgs


@pytest.mark.parametrize("sep", [",", ";", "\t"])
@pytest.mark.parametrize("header", [True, False])
def test_every_reader_reads_one_csv_dialect_the_same(tmp_path, sep, header):
    body = "\n".join(sep.join(f"{v:g}" for v in r) for r in ROWS)
    text = ("a b" + sep + "b" + sep + "c\n" if header else "") + "# a comment\n\n" + body
    path = tmp_path / "d.csv"
    path.write_text(text + "\n" + sep.join([""] * 3) + "\n")
    for got in _readers(path):
        np.testing.assert_allclose(got, ROWS.astype(np.float32), rtol=1e-6)


def test_a_first_line_of_numbers_is_data_for_every_reader(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("\n".join(",".join(f"{v:g}" for v in r) for r in ROWS[:9]))
    assert all(len(got) == 9 for got in _readers(path))


@pytest.mark.parametrize("text, words", [
    ("a,b\n1,2\n3,x\n" + "5,6\n" * 8, "line 3, column 2 ('b') is not a number: 'x'"),
    ("1,2\n3\n" + "5,6\n" * 8, "line 2 has 1 columns, expected 2 columns"),
    ("1,2\n" + "5,nan\n" * 8, "NaN/Inf at row 1, column 1 (0-based; a NaN, file line 2"),
    ("a,b\n", "has a header row but no data rows"),
    ("# nothing\n\n", "is empty: no data rows"),
])
def test_every_reader_gives_the_same_one_line_error(tmp_path, text, words):
    path = tmp_path / "d.csv"
    path.write_text(text)
    msgs = _errors(path)
    assert msgs[0] == msgs[1] == msgs[2] and words in msgs[0], msgs


def test_not_utf8_and_empty_files(tmp_path):
    (tmp_path / "b.csv").write_bytes(b"1,2\n" + bytes(range(128, 256)))
    assert all("not UTF-8" in m for m in _errors(tmp_path / "b.csv"))
    (tmp_path / "e.npy").write_bytes(b"")
    assert all("is empty (0 bytes)" in m for m in _errors(tmp_path / "e.npy"))


def test_one_npz_rule(tmp_path):
    x = np.arange(30.0).reshape(10, 3)
    np.savez(tmp_path / "one.npz", samples=x)
    np.savez(tmp_path / "lab.npz", samples=x, labels=np.zeros(10))
    np.savez(tmp_path / "x.npz", x=x, other=np.ones(4))
    for name in ("one", "lab", "x"):
        for got in _readers(tmp_path / f"{name}.npz"):
            np.testing.assert_array_equal(got, x)
    np.savez(tmp_path / "two.npz", a=x, b=x)
    np.savez(tmp_path / "both.npz", x=x, images=x)
    assert all("several arrays" in m and "a, b" in m for m in _errors(tmp_path / "two.npz"))
    assert all("x, images" in m for m in _errors(tmp_path / "both.npz"))
    imgs = np.zeros((2, 4, 4), np.uint8)
    np.savez(tmp_path / "i2.npz", a=imgs, b=imgs)
    with pytest.raises(DataError, match="several arrays"):  # image stacks: the same rule
        read_images(tmp_path / "i2.npz")
    np.savez(tmp_path / "i1.npz", images=imgs, y=np.zeros(2))
    assert read_images(tmp_path / "i1.npz")[0].shape == (2, 1, 4, 4)


def test_size_cap_is_one_line_for_every_reader(tmp_path, monkeypatch):
    path = tmp_path / "d.csv"
    path.write_text("1,2\n" * 500)
    np.savez_compressed(tmp_path / "z.npz", x=np.zeros((100, 10)))  # small file, big array
    assert (tmp_path / "z.npz").stat().st_size < 1000
    monkeypatch.setenv("METAAE_EDGE_MAX_INPUT_BYTES", "1000")
    assert all("holds 2,000 bytes, above the 1,000 bytes cap" in m
               and "METAAE_EDGE_MAX_INPUT_BYTES" in m for m in _errors(path))
    with pytest.raises(InputError, match=r"z.npz\['x'\]: the array holds"):
        read_array(tmp_path / "z.npz")
    with pytest.raises(DataError, match="cap on input files"):
        load_task(tmp_path / "z.npz")


def test_csv_streams_in_chunks_naming_global_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK_ROWS", 4)
    x = np.arange(40.0).reshape(20, 2)
    path = tmp_path / "d.csv"
    lines = ["a,b"] + [f"{r[0]:g},{r[1]:g}" for r in x]
    path.write_text("\n".join(lines))
    rows = open_rows(path)
    got = list(rows.chunks)
    assert rows.n is None and [s for s, _ in got] == [0, 4, 8, 12, 16]
    np.testing.assert_array_equal(np.concatenate([c for _, c in got]), x)
    lines[15] = "28,inf"
    path.write_text("\n".join(lines))
    with pytest.raises(InputError, match="row 14, column 1 .*file line 16"):
        list(open_rows(path).chunks)


def test_npy_is_memory_mapped_and_checked_per_chunk(tmp_path, monkeypatch):
    from metaae_edge.runtime import streaming

    monkeypatch.setattr(streaming, "CHUNK_BYTES", 3 * 8 * 5)  # 5 rows per chunk
    x = np.random.default_rng(1).normal(size=(23, 3))
    x[17, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    rows = open_rows(tmp_path / "x.npy")
    assert rows.n == 23
    first = next(rows.chunks)[1]
    assert first.shape == (5, 3) and not isinstance(first, np.memmap)
    with pytest.raises(InputError, match="NaN/Inf at row 17, column 2"):
        list(rows.chunks)


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_array_writer_streams_atomically(tmp_path, suffix):
    parts = [np.arange(6, dtype=np.float32).reshape(3, 2) + i for i in range(3)]
    out = tmp_path / f"o{suffix}"
    with array_writer(out) as write:
        for p in parts:
            write(p)
    want = np.concatenate(parts)
    got = np.load(out) if suffix == ".npy" else np.loadtxt(out, delimiter=",")
    np.testing.assert_array_equal(got, want)
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(out, mmap_mode="r"), want)
    with pytest.raises(RuntimeError), array_writer(tmp_path / f"f{suffix}") as write:
        write(parts[0])
        raise RuntimeError("killed half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
